//! Poisoning the training split (a share of non-target graphs get the trigger and the target
//! label) and building the triggered evaluation set (the trigger, true labels kept).

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::inject::inject;
use super::placement::Placement;
use super::trigger::Trigger;
use crate::data::{Dataset, Graph};
use crate::rng::rng_for;
use crate::{Error, Result};

pub const DEFAULT_TARGET_LABEL: i64 = 1;
pub const DEFAULT_INJECTION_RATIO: f64 = 0.05;
pub const DEFAULT_TRIGGER_RATIO: f64 = 0.2;
/// The smallest trigger a ratio can ask for (see [`AttackParams::trigger_size`]).
pub const MIN_TRIGGER_NODES: usize = 3;

/// The parameters every poisoning attack shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackParams {
    /// Class index (into `Dataset::class_labels`) the trigger should force.
    pub target_class: usize,
    /// Share of the training split to poison, in (0, 1].
    pub injection_ratio: f64,
    /// Trigger size as a share of the average graph size, in (0, 1].
    pub trigger_ratio: f64,
    pub seed: u64,
}

impl AttackParams {
    /// Checks the ratios and the target class against `ds`.
    pub fn validate(&self, ds: &Dataset) -> Result<()> {
        check_ratio("injection ratio", self.injection_ratio)?;
        check_ratio("trigger ratio", self.trigger_ratio)?;
        if self.target_class >= ds.num_classes() {
            return Err(Error::invalid(format!(
                "target class {} is not a class of dataset {:?}, which has {} classes \
                 (labels {:?})",
                self.target_class,
                ds.name,
                ds.num_classes(),
                ds.class_labels
            )));
        }
        Ok(())
    }

    /// Trigger size `n = max(3, round(avg_nodes * trigger_ratio))` for `ds`, checked to fit
    /// (see [`check_trigger_fits`]). The floor is 3 because a 2-node trigger is one edge, a
    /// pattern every graph with an edge already holds (on Fingerprint, whose graphs average 8
    /// nodes, 20% gave 2 and the attacks stalled near 50% ASR).
    pub fn trigger_size(&self, ds: &Dataset) -> Result<usize> {
        check_ratio("trigger ratio", self.trigger_ratio)?;
        let n = ((ds.avg_nodes() * self.trigger_ratio).round() as usize).max(MIN_TRIGGER_NODES);
        check_trigger_fits(ds, n)?;
        Ok(n)
    }
}

/// The class index of the original label `label` (as the dataset file wrote it, e.g. -1 or 1 on
/// MUTAG).
pub fn resolve_target_class(ds: &Dataset, label: i64) -> Result<usize> {
    ds.class_labels.iter().position(|&l| l == label).ok_or_else(|| {
        Error::invalid(format!(
            "target label {label} is not a class of dataset {:?}; its labels are {:?}",
            ds.name, ds.class_labels
        ))
    })
}

/// A ratio parameter must lie in (0, 1].
pub fn check_ratio(name: &str, value: f64) -> Result<()> {
    if value > 0.0 && value <= 1.0 {
        Ok(())
    } else {
        Err(Error::invalid(format!("{name} must be in (0, 1], got {value}")))
    }
}

/// A trigger of `n` nodes is an error when `n` exceeds the node count of every graph in `ds`
/// (it could then never be planted without adding nodes to every graph). A trigger larger
/// than only some graphs is fine: those graphs grow to `n` nodes on injection.
pub fn check_trigger_fits(ds: &Dataset, n: usize) -> Result<()> {
    let largest = ds.graphs.iter().map(|g| g.num_nodes).max().unwrap_or(0);
    if n > largest {
        return Err(Error::invalid(format!(
            "a {n}-node trigger is larger than the largest graph of dataset {:?} ({largest} nodes)",
            ds.name
        )));
    }
    Ok(())
}

/// One graph with a trigger planted in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InjectedGraph {
    /// Index of the original graph in its dataset.
    pub index: usize,
    pub graph: Graph,
    /// Where trigger node `i` went (`positions[i]`).
    pub positions: Vec<usize>,
}

/// The poisoned dataset and a record of what was poisoned.
#[derive(Debug, Clone)]
pub struct Poisoning {
    /// The whole dataset, with every poisoned graph replaced by its triggered, relabelled copy
    /// (train on the same training indices as before).
    pub dataset: Dataset,
    /// The poisoned graphs, in increasing dataset index.
    pub poisoned: Vec<InjectedGraph>,
}

impl Poisoning {
    pub fn poisoned_indices(&self) -> Vec<usize> {
        self.poisoned.iter().map(|p| p.index).collect()
    }
}

/// Which training graphs to poison: `max(1, round(injection_ratio * |train|))` graphs drawn
/// (seeded) among the training graphs whose class is not the target, returned sorted.
pub fn select_poisoned(
    ds: &Dataset,
    train: &[usize],
    target_class: usize,
    injection_ratio: f64,
    seed: u64,
) -> Result<Vec<usize>> {
    check_ratio("injection ratio", injection_ratio)?;
    check_indices(ds, train, "training")?;
    let mut candidates: Vec<usize> = train.iter().copied().filter(|&i| ds.graphs[i].label != target_class).collect();
    if candidates.is_empty() {
        return Err(Error::invalid(format!(
            "no training graph of dataset {:?} has a class other than the target class {} \
             ({} training graphs): nothing to poison",
            ds.name,
            target_class,
            train.len()
        )));
    }
    let wanted = ((injection_ratio * train.len() as f64).round() as usize).max(1);
    if wanted > candidates.len() {
        return Err(Error::invalid(format!(
            "injection ratio {injection_ratio} asks for {wanted} poisoned graphs, but only {} of \
             the {} training graphs have a class other than the target class {target_class}",
            candidates.len(),
            train.len()
        )));
    }
    candidates.sort_unstable();
    candidates.dedup();
    candidates.shuffle(&mut rng_for(seed, "attack/poison-selection"));
    candidates.truncate(wanted);
    candidates.sort_unstable();
    Ok(candidates)
}

/// Poisons the training split: selects graphs with [`select_poisoned`], plants `trigger` in
/// each at the positions `placement` chooses, and relabels them to the target class.
pub fn poison_training_set(
    ds: &Dataset,
    train: &[usize],
    trigger: &Trigger,
    placement: Placement<'_>,
    params: &AttackParams,
) -> Result<Poisoning> {
    params.validate(ds)?;
    check_trigger_fits(ds, trigger.num_nodes)?;
    let selected = select_poisoned(ds, train, params.target_class, params.injection_ratio, params.seed)?;
    let mut dataset = ds.clone();
    let mut poisoned = Vec::with_capacity(selected.len());
    for index in selected {
        let mut injected = plant(ds, index, trigger, placement, params.seed)?;
        injected.graph.label = params.target_class;
        dataset.graphs[index] = injected.graph.clone();
        poisoned.push(injected);
    }
    Ok(Poisoning { dataset, poisoned })
}

/// The triggered evaluation set: every graph of `indices` whose class is not `target_class`,
/// with the trigger planted and its true label kept (ASR is the share predicted as the target).
pub fn triggered_eval_set(
    ds: &Dataset,
    indices: &[usize],
    target_class: usize,
    trigger: &Trigger,
    placement: Placement<'_>,
    seed: u64,
) -> Result<Vec<InjectedGraph>> {
    if target_class >= ds.num_classes() {
        return Err(Error::invalid(format!(
            "target class {target_class} is not a class of dataset {:?} ({} classes)",
            ds.name,
            ds.num_classes()
        )));
    }
    check_indices(ds, indices, "evaluation")?;
    check_trigger_fits(ds, trigger.num_nodes)?;
    indices
        .iter()
        .copied()
        .filter(|&i| ds.graphs[i].label != target_class)
        .map(|i| plant(ds, i, trigger, placement, seed))
        .collect()
}

/// Plants `trigger` in dataset graph `index`, label unchanged.
pub fn plant(ds: &Dataset, index: usize, trigger: &Trigger, placement: Placement<'_>, seed: u64) -> Result<InjectedGraph> {
    let graph =
        ds.graphs.get(index).ok_or_else(|| Error::invalid(format!("graph index {index} is outside dataset {:?}", ds.name)))?;
    let positions = placement.positions(index, graph, trigger.num_nodes, seed)?;
    let graph = inject(graph, trigger, &positions)?;
    Ok(InjectedGraph { index, graph, positions })
}

fn check_indices(ds: &Dataset, indices: &[usize], what: &str) -> Result<()> {
    if let Some(&bad) = indices.iter().find(|&&i| i >= ds.len()) {
        return Err(Error::invalid(format!("{what} index {bad} is outside dataset {:?} ({} graphs)", ds.name, ds.len())));
    }
    Ok(())
}
