//! attack.json: what an attack did, enough to re-create its trigger and to report it.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::motif::Motif;
use super::placement::PlacementKind;
use super::poison::AttackParams;
use super::trigger::Trigger;
use crate::{Error, Result};

pub const ATTACK_FORMAT: &str = "gcleaner.attack/v1";

/// The four attacks, named as on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttackKind {
    /// Sub-BA: a random Erdos-Renyi subgraph at random nodes.
    Subgraph,
    /// Exp-BA: the same subgraph at the most important nodes by GNNExplainer.
    Exp,
    /// Motif-BA: the rarest motif at the most central nodes.
    Motif,
    /// GTA: a generated trigger per graph.
    Gta,
}

impl AttackKind {
    pub const ALL: [AttackKind; 4] = [AttackKind::Subgraph, AttackKind::Exp, AttackKind::Motif, AttackKind::Gta];

    /// The command-line name (`subgraph`, `exp`, `motif`, `gta`).
    pub fn as_str(self) -> &'static str {
        match self {
            AttackKind::Subgraph => "subgraph",
            AttackKind::Exp => "exp",
            AttackKind::Motif => "motif",
            AttackKind::Gta => "gta",
        }
    }

    /// The name the literature uses.
    pub fn paper_name(self) -> &'static str {
        match self {
            AttackKind::Subgraph => "Sub-BA",
            AttackKind::Exp => "Exp-BA",
            AttackKind::Motif => "Motif-BA",
            AttackKind::Gta => "GTA",
        }
    }
}

impl fmt::Display for AttackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AttackKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<AttackKind> {
        AttackKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s) || k.paper_name().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::invalid(format!("unknown attack {s:?}; expected subgraph, exp, motif or gta")))
    }
}

/// The trigger of an attack: one subgraph for all graphs, or one per graph (GTA).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TriggerDescription {
    Fixed(Trigger),
    PerGraph { num_nodes: usize, graphs: Vec<GraphTrigger> },
}

impl TriggerDescription {
    pub fn num_nodes(&self) -> usize {
        match self {
            TriggerDescription::Fixed(t) => t.num_nodes,
            TriggerDescription::PerGraph { num_nodes, .. } => *num_nodes,
        }
    }
}

/// The trigger generated for one graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphTrigger {
    /// Index of the graph in the dataset.
    pub graph_index: usize,
    /// The graph's nodes that carry the trigger.
    pub positions: Vec<usize>,
    /// The trigger's edges among `positions`, in the graph's node numbering, canonical.
    pub edges: Vec<(u32, u32)>,
    /// Trigger node attributes (row-major, one row per position) when the attack sets them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_attributes: Option<Vec<f32>>,
    /// Trigger node labels (one per position) when the attack sets them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_labels: Option<Vec<u32>>,
}

/// Contents of attack.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackDescription {
    /// Always [`ATTACK_FORMAT`].
    pub format: String,
    pub attack: AttackKind,
    /// The literature's name (Sub-BA, Exp-BA, Motif-BA, GTA), for people reading the file.
    pub name: String,
    pub params: AttackParams,
    /// The target as the dataset file labels it (`params.target_class` is its class index).
    pub target_label: i64,
    pub placement: PlacementKind,
    /// Edge probability of an Erdos-Renyi trigger (Sub-BA, Exp-BA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub density: Option<f64>,
    /// The motif used (Motif-BA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub motif: Option<Motif>,
    pub trigger: TriggerDescription,
    /// Seed of the train/held-out split the attack was trained on.
    pub split_seed: u64,
    /// Dataset indices of the poisoned training graphs.
    pub poisoned_indices: Vec<usize>,
    /// Name of the attacked dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// Dataset indices of the defender's clean sample (defender_clean.json, in this order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub defender_indices: Vec<usize>,
    /// Dataset indices of the clean evaluation graphs (eval_clean.json, in this order); the
    /// triggered set holds those of them whose class is not the target, in the same order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub eval_indices: Vec<usize>,
}

impl AttackDescription {
    pub fn new(
        attack: AttackKind,
        params: AttackParams,
        target_label: i64,
        placement: PlacementKind,
        trigger: TriggerDescription,
        split_seed: u64,
        poisoned_indices: Vec<usize>,
    ) -> AttackDescription {
        AttackDescription {
            format: ATTACK_FORMAT.to_string(),
            attack,
            name: attack.paper_name().to_string(),
            params,
            target_label,
            placement,
            density: None,
            motif: None,
            trigger,
            split_seed,
            poisoned_indices,
            dataset: None,
            defender_indices: Vec::new(),
            eval_indices: Vec::new(),
        }
    }

    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::invalid(format!("cannot serialise attack description: {e}")))
    }

    pub fn from_json(text: &str, path: &Path) -> Result<AttackDescription> {
        let description: AttackDescription =
            serde_json::from_str(text).map_err(|e| Error::parse(path, e.line(), format!("not an attack description: {e}")))?;
        if description.format != ATTACK_FORMAT {
            return Err(Error::file(path, format!("format {:?} is not {ATTACK_FORMAT:?}", description.format)));
        }
        Ok(description)
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_json()? + "\n").map_err(|e| Error::io(path, e))
    }

    pub fn read(path: &Path) -> Result<AttackDescription> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        AttackDescription::from_json(&text, path)
    }
}
