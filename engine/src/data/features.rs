//! Node feature transforms. The transform is part of the model spec, so exactly the same
//! features are computed at training, evaluation and purification time.

use serde::{Deserialize, Serialize};

/// How node features are computed from a [`super::Graph`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FeatureSpec {
    /// One-hot node degree with `max_degree + 1` buckets; larger degrees fall into the last one.
    OneHotDegree { max_degree: usize },
    /// One-hot discrete node label with `num_labels` buckets; larger labels fall into the last.
    NodeLabelsOneHot { num_labels: usize },
    /// The node attribute vector as is (`dim` columns).
    NodeAttributes { dim: usize },
    /// Column-wise concatenation of the parts, in order.
    Concat { parts: Vec<FeatureSpec> },
}

impl Default for FeatureSpec {
    fn default() -> Self {
        FeatureSpec::OneHotDegree { max_degree: 10 }
    }
}
