//! The `gcleaner.model/v2` spec: a model built from PyTorch Geometric's own classes, a
//! `BasicGNN` (`torch_geometric.nn.models.GIN`, `GCN`, `GAT`, `GraphSAGE`), global pooling and a
//! `torch_geometric.nn.MLP` or `torch.nn.Linear` head, written with the keyword arguments the
//! PyG constructors take so that a spec can be checked against the Python code line by line.
//!
//! In memory a v2 spec is a [`ModelSpec`] whose `arch`, `hidden`, `num_layers` and `pooling`
//! come from the `gnn` and `pool` entries and whose [`ModelSpec::pyg`] holds everything else.

use serde::{Deserialize, Serialize};

use super::spec::{Arch, ModelSpec, Pooling};
use crate::data::FeatureSpec;

pub const SPEC_FORMAT_V2: &str = "gcleaner.model/v2";

/// Most attention heads a GAT may have.
pub const MAX_HEADS: usize = 64;

/// The normalisation layer a `BasicGNN` or `MLP` puts after its linear maps. Only PyG's
/// `BatchNorm` (a `torch.nn.BatchNorm1d` named `module`) is supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Norm {
    #[serde(rename = "batch_norm", alias = "BatchNorm", alias = "batchnorm")]
    BatchNorm,
}

/// `BasicGNN`'s `jk` argument ("lstm" has an LSTM and is not supported).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JumpingKnowledge {
    Last,
    Cat,
    Max,
}

/// What a PyG model has beyond the fields it shares with a v1 spec.
#[derive(Debug, Clone, PartialEq)]
pub struct PygOptions {
    /// `BasicGNN(out_channels=...)`: the width of the last conv (without `jk`) or of the final
    /// `lin` (with `jk`); `None` means `hidden_channels`.
    pub out_channels: Option<usize>,
    pub norm: Option<Norm>,
    pub jk: Option<JumpingKnowledge>,
    pub act_first: bool,
    /// Recorded so the spec round-trips; dropout is the identity at inference and gcleaner
    /// trains without it.
    pub dropout: f64,
    /// GIN: `GINConv(train_eps=...)`, whether eps is a trained parameter or a buffer.
    pub train_eps: bool,
    /// GAT: attention heads and whether their outputs are concatenated (else averaged).
    pub heads: usize,
    pub concat: bool,
    pub head: PygHead,
}

impl PygOptions {
    /// Width of the node features the `BasicGNN` returns (the pooled embedding's width).
    pub fn gnn_out(&self, hidden: usize) -> usize {
        self.out_channels.unwrap_or(hidden)
    }
}

/// The classifier after pooling.
#[derive(Debug, Clone, PartialEq)]
pub enum PygHead {
    /// `torch_geometric.nn.MLP`, keys `head.lins.{i}.*`, `head.norms.{i}.module.*`.
    Mlp(MlpSpec),
    /// `torch.nn.Linear(gnn_out, num_classes, bias)`, keys `head.weight`, `head.bias`.
    Linear { bias: bool },
}

/// `torch_geometric.nn.MLP(channel_list, norm, plain_last, act_first, dropout, bias)`.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpSpec {
    pub channel_list: Vec<usize>,
    pub norm: Option<Norm>,
    pub plain_last: bool,
    pub act_first: bool,
    pub dropout: f64,
    pub bias: bool,
}

impl MlpSpec {
    pub fn layout(&self) -> super::mlp::MlpLayout<'_> {
        super::mlp::MlpLayout {
            channels: &self.channel_list,
            norm: self.norm,
            plain_last: self.plain_last,
            act_first: self.act_first,
            bias: self.bias,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum GnnClass {
    #[serde(rename = "GIN")]
    Gin,
    #[serde(rename = "GCN")]
    Gcn,
    #[serde(rename = "GAT")]
    Gat,
    #[serde(rename = "GraphSAGE")]
    GraphSage,
}

impl GnnClass {
    fn arch(self) -> Arch {
        match self {
            GnnClass::Gin => Arch::Gin,
            GnnClass::Gcn => Arch::Gcn,
            GnnClass::Gat => Arch::Gat,
            GnnClass::GraphSage => Arch::Sage,
        }
    }

    fn of(arch: Arch) -> GnnClass {
        match arch {
            Arch::Gin => GnnClass::Gin,
            Arch::Gcn => GnnClass::Gcn,
            Arch::Gat => GnnClass::Gat,
            Arch::Sage => GnnClass::GraphSage,
        }
    }
}

/// Global pooling by the name of PyG's `global_{add,mean,max}_pool`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum PoolName {
    #[serde(alias = "sum")]
    Add,
    Mean,
    Max,
}

fn relu() -> String {
    "relu".to_string()
}

fn yes() -> bool {
    true
}

fn batch_norm() -> Option<Norm> {
    Some(Norm::BatchNorm)
}

/// The `gnn` entry: `BasicGNN`'s keyword arguments, plus the conv's (`train_eps` for GIN,
/// `heads` and `concat` for GAT).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GnnDocument {
    class: GnnClass,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    in_channels: Option<usize>,
    hidden_channels: usize,
    num_layers: usize,
    #[serde(default)]
    out_channels: Option<usize>,
    #[serde(default)]
    dropout: f64,
    #[serde(default = "relu")]
    act: String,
    #[serde(default)]
    act_first: bool,
    #[serde(default)]
    norm: Option<Norm>,
    #[serde(default)]
    jk: Option<JumpingKnowledge>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    train_eps: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    heads: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    concat: Option<bool>,
}

/// The `head` entry. Defaults are PyG's: an `MLP` has batch norm unless `"norm": null`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "class", deny_unknown_fields)]
enum HeadDocument {
    #[serde(rename = "MLP")]
    Mlp {
        channel_list: Vec<usize>,
        #[serde(default = "batch_norm")]
        norm: Option<Norm>,
        #[serde(default = "yes")]
        plain_last: bool,
        #[serde(default = "relu")]
        act: String,
        #[serde(default)]
        act_first: bool,
        #[serde(default)]
        dropout: f64,
        #[serde(default = "yes")]
        bias: bool,
    },
    #[serde(rename = "Linear")]
    Linear {
        #[serde(default)]
        in_features: Option<usize>,
        #[serde(default)]
        out_features: Option<usize>,
        #[serde(default = "yes")]
        bias: bool,
    },
}

/// A whole v2 spec as written in JSON.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct V2Document {
    format: String,
    in_features: usize,
    num_classes: usize,
    features: FeatureSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    class_labels: Option<Vec<i64>>,
    gnn: GnnDocument,
    pool: PoolName,
    head: HeadDocument,
}

fn check_act(field: &str, act: &str) -> Result<(), String> {
    if act.eq_ignore_ascii_case("relu") {
        Ok(())
    } else {
        Err(format!("{field} {act:?} is not supported (gcleaner runs \"relu\" only)"))
    }
}

impl V2Document {
    /// The in-memory spec. Conv arguments given for the wrong class and activations other than
    /// ReLU are errors here; ranges and widths are checked by [`ModelSpec::validate`].
    pub(super) fn into_spec(self) -> Result<ModelSpec, String> {
        let gnn = self.gnn;
        let arch = gnn.class.arch();
        check_act("gnn.act", &gnn.act)?;
        if let Some(c) = gnn.in_channels {
            if c != self.in_features {
                return Err(format!("gnn.in_channels is {c} but in_features is {}", self.in_features));
            }
        }
        let class = serde_json::to_string(&gnn.class).unwrap_or_default();
        if gnn.train_eps.is_some() && arch != Arch::Gin {
            return Err(format!("gnn.train_eps is a GINConv argument, not one of {class}"));
        }
        if (gnn.heads.is_some() || gnn.concat.is_some()) && arch != Arch::Gat {
            return Err(format!("gnn.heads and gnn.concat are GATConv arguments, not ones of {class}"));
        }
        let out = gnn.out_channels.unwrap_or(gnn.hidden_channels);
        let head = match self.head {
            HeadDocument::Mlp { channel_list, norm, plain_last, act, act_first, dropout, bias } => {
                check_act("head.act", &act)?;
                PygHead::Mlp(MlpSpec { channel_list, norm, plain_last, act_first, dropout, bias })
            }
            HeadDocument::Linear { in_features, out_features, bias } => {
                if in_features.is_some_and(|d| d != out) {
                    return Err(format!(
                        "head.in_features is {} but the gnn returns {out} channels",
                        in_features.unwrap_or_default()
                    ));
                }
                if out_features.is_some_and(|d| d != self.num_classes) {
                    return Err(format!(
                        "head.out_features is {} but num_classes is {}",
                        out_features.unwrap_or_default(),
                        self.num_classes
                    ));
                }
                PygHead::Linear { bias }
            }
        };
        Ok(ModelSpec {
            format: self.format,
            arch,
            in_features: self.in_features,
            hidden: gnn.hidden_channels,
            num_classes: self.num_classes,
            num_layers: gnn.num_layers,
            pooling: match self.pool {
                PoolName::Add => Pooling::Sum,
                PoolName::Mean => Pooling::Mean,
                PoolName::Max => Pooling::Max,
            },
            features: self.features,
            class_labels: self.class_labels,
            pyg: Some(PygOptions {
                out_channels: gnn.out_channels,
                norm: gnn.norm,
                jk: gnn.jk,
                act_first: gnn.act_first,
                dropout: gnn.dropout,
                train_eps: gnn.train_eps.unwrap_or(false),
                heads: gnn.heads.unwrap_or(1),
                concat: gnn.concat.unwrap_or(true),
                head,
            }),
        })
    }

    /// The document of a spec with [`ModelSpec::pyg`] set, every argument written out.
    pub(super) fn of(spec: &ModelSpec, pyg: &PygOptions) -> V2Document {
        let is = |arch: Arch| spec.arch == arch;
        let head = match &pyg.head {
            PygHead::Mlp(mlp) => HeadDocument::Mlp {
                channel_list: mlp.channel_list.clone(),
                norm: mlp.norm,
                plain_last: mlp.plain_last,
                act: relu(),
                act_first: mlp.act_first,
                dropout: mlp.dropout,
                bias: mlp.bias,
            },
            PygHead::Linear { bias } => HeadDocument::Linear {
                in_features: Some(pyg.gnn_out(spec.hidden)),
                out_features: Some(spec.num_classes),
                bias: *bias,
            },
        };
        V2Document {
            format: spec.format.clone(),
            in_features: spec.in_features,
            num_classes: spec.num_classes,
            features: spec.features.clone(),
            class_labels: spec.class_labels.clone(),
            gnn: GnnDocument {
                class: GnnClass::of(spec.arch),
                in_channels: None,
                hidden_channels: spec.hidden,
                num_layers: spec.num_layers,
                out_channels: pyg.out_channels,
                dropout: pyg.dropout,
                act: relu(),
                act_first: pyg.act_first,
                norm: pyg.norm,
                jk: pyg.jk,
                train_eps: is(Arch::Gin).then_some(pyg.train_eps),
                heads: is(Arch::Gat).then_some(pyg.heads),
                concat: is(Arch::Gat).then_some(pyg.concat),
            },
            pool: match spec.pooling {
                Pooling::Sum => PoolName::Add,
                Pooling::Mean => PoolName::Mean,
                Pooling::Max => PoolName::Max,
            },
            head,
        }
    }
}

/// Problems of the PyG-specific part of `spec`, for [`ModelSpec::validate`].
pub(super) fn problems(spec: &ModelSpec, pyg: &PygOptions, max_width: usize, max_layers: usize) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(out) = pyg.out_channels {
        if out == 0 || out > max_width {
            problems.push(format!("gnn.out_channels must be between 1 and {max_width}, got {out}"));
        }
    }
    let dropout_ok = |p: f64| (0.0..1.0).contains(&p);
    if !dropout_ok(pyg.dropout) {
        problems.push(format!("gnn.dropout must be in [0, 1), got {}", pyg.dropout));
    }
    if spec.arch == Arch::Gat {
        if pyg.heads == 0 || pyg.heads > MAX_HEADS {
            problems.push(format!("gnn.heads must be between 1 and {MAX_HEADS}, got {}", pyg.heads));
        } else if pyg.concat && !spec.hidden.is_multiple_of(pyg.heads) {
            // PyG itself refuses this: each head gets hidden_channels / heads channels.
            problems.push(format!("gnn.hidden_channels ({}) must be divisible by gnn.heads ({})", spec.hidden, pyg.heads));
        }
    }
    if let PygHead::Mlp(mlp) = &pyg.head {
        let list = &mlp.channel_list;
        if list.len() < 2 || list.len() > max_layers + 1 {
            problems.push(format!("head.channel_list must have 2 to {} entries, got {}", max_layers + 1, list.len()));
        } else {
            let gnn_out = pyg.gnn_out(spec.hidden);
            if list[0] != gnn_out {
                problems.push(format!("head.channel_list starts with {} but the gnn returns {gnn_out} channels", list[0]));
            }
            if list[list.len() - 1] != spec.num_classes {
                problems.push(format!(
                    "head.channel_list ends with {} but num_classes is {}",
                    list[list.len() - 1],
                    spec.num_classes
                ));
            }
            if let Some(bad) = list.iter().find(|&&c| c == 0 || c > max_width) {
                problems.push(format!("head.channel_list entries must be between 1 and {max_width}, got {bad}"));
            }
        }
        if !dropout_ok(mlp.dropout) {
            problems.push(format!("head.dropout must be in [0, 1), got {}", mlp.dropout));
        }
    }
    problems
}
