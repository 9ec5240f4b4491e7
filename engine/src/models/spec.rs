//! The model spec: everything needed to rebuild a model around its weights, stored as JSON in
//! the safetensors metadata under [`SPEC_METADATA_KEY`] (or passed as a separate file).

use serde::{Deserialize, Serialize};

use crate::data::FeatureSpec;

pub const SPEC_FORMAT: &str = "gcleaner.model/v1";
pub const SPEC_METADATA_KEY: &str = "gcleaner.spec";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Gin,
    Gcn,
    Gat,
    Sage,
}

impl Arch {
    /// The published G-Cleaner layer count for this architecture.
    pub fn default_layers(self) -> usize {
        match self {
            Arch::Gin => 5,
            Arch::Gcn | Arch::Gat => 3,
            Arch::Sage => 7,
        }
    }

    /// The published pooling for this architecture.
    pub fn default_pooling(self) -> Pooling {
        match self {
            Arch::Sage => Pooling::Mean,
            _ => Pooling::Sum,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Gin => "gin",
            Arch::Gcn => "gcn",
            Arch::Gat => "gat",
            Arch::Sage => "sage",
        }
    }
}

impl std::str::FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "gin" => Ok(Arch::Gin),
            "gcn" => Ok(Arch::Gcn),
            "gat" => Ok(Arch::Gat),
            "sage" | "graphsage" => Ok(Arch::Sage),
            other => Err(format!("unknown architecture {other:?} (expected gin, gcn, gat or sage)")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    Sum,
    Mean,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub format: String,
    pub arch: Arch,
    pub in_features: usize,
    pub hidden: usize,
    pub num_classes: usize,
    pub num_layers: usize,
    pub pooling: Pooling,
    pub features: FeatureSpec,
    /// The dataset's original graph labels, in class-index order (MUTAG: [-1, 1]), so data given
    /// later is mapped to the classes the model was trained on. Absent: labels are 0..C-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_labels: Option<Vec<i64>>,
}
