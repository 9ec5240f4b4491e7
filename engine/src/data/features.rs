//! Node feature transforms. The transform is part of the model spec, so exactly the same
//! features are computed at training, evaluation and purification time.

use serde::{Deserialize, Serialize};

use super::graph::{Dataset, Graph};
use super::limits::MAX_FEATURE_DIM;
use crate::{Error, Result};

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

/// Largest degree bucket [`FeatureSpec::default_for`] picks. Degrees above the cap share the
/// last bucket. The four molecule/fingerprint datasets never reach it (max degree 3 to 6), so
/// they get one bucket per degree; on social and transaction graphs (IMDB-BINARY max 135,
/// bitcoin max 102) 32 still gives every degree up to the 99th percentile (30 and 24) its own
/// bucket, whereas a cap of 10 would lump 29% of IMDB-BINARY's nodes together. Buckets past the
/// 99th percentile would each be seen by a handful of training nodes and are mostly noise.
pub const DEFAULT_MAX_DEGREE_CAP: usize = 32;

impl FeatureSpec {
    /// Width of the feature vector this spec produces.
    pub fn dim(&self) -> usize {
        match self {
            FeatureSpec::OneHotDegree { max_degree } => max_degree.saturating_add(1),
            FeatureSpec::NodeLabelsOneHot { num_labels } => *num_labels,
            FeatureSpec::NodeAttributes { dim } => *dim,
            FeatureSpec::Concat { parts } => parts.iter().fold(0, |sum, p| sum.saturating_add(p.dim())),
        }
    }

    /// Checks the spec can produce features: every part at least one column wide and the whole
    /// at most [`MAX_FEATURE_DIM`] wide.
    pub fn validate(&self) -> Result<()> {
        match self {
            FeatureSpec::NodeLabelsOneHot { num_labels: 0 } => {
                return Err(Error::invalid("node_labels_one_hot needs num_labels >= 1"));
            }
            FeatureSpec::NodeAttributes { dim: 0 } => {
                return Err(Error::invalid("node_attributes needs dim >= 1"));
            }
            FeatureSpec::Concat { parts } => {
                if parts.is_empty() {
                    return Err(Error::invalid("concat needs at least one part"));
                }
                for part in parts {
                    part.validate()?;
                }
            }
            _ => {}
        }
        if self.dim() > MAX_FEATURE_DIM {
            return Err(Error::invalid(format!("features would be {} wide, over the {MAX_FEATURE_DIM} limit", self.dim())));
        }
        Ok(())
    }

    /// Node features of `g`, row-major `num_nodes x dim()`.
    pub fn node_features(&self, g: &Graph) -> Result<Vec<f32>> {
        self.validate()?;
        g.validate()?;
        let dim = self.dim();
        let mut out = vec![0f32; g.num_nodes * dim];
        self.fill(g, &mut out, dim, 0)?;
        Ok(out)
    }

    /// Writes this spec's columns, starting at column `offset`, into rows of width `row_width`.
    fn fill(&self, g: &Graph, out: &mut [f32], row_width: usize, offset: usize) -> Result<()> {
        let rows = out.chunks_exact_mut(row_width);
        match self {
            FeatureSpec::OneHotDegree { max_degree } => {
                for (row, degree) in rows.zip(g.degrees()) {
                    row[offset + degree.min(*max_degree)] = 1.0;
                }
            }
            FeatureSpec::NodeLabelsOneHot { num_labels } => {
                let labels = g
                    .node_labels
                    .as_ref()
                    .ok_or_else(|| Error::invalid("node_labels_one_hot needs node labels, but the graph has none"))?;
                for (row, &label) in rows.zip(labels) {
                    row[offset + (label as usize).min(num_labels - 1)] = 1.0;
                }
            }
            FeatureSpec::NodeAttributes { dim } => {
                let attrs = g
                    .node_attributes
                    .as_ref()
                    .ok_or_else(|| Error::invalid("node_attributes features need node attributes, but the graph has none"))?;
                if g.num_nodes > 0 && g.attr_dim() != *dim {
                    return Err(Error::invalid(format!(
                        "node_attributes features expect {dim} attributes per node, the graph has {}",
                        g.attr_dim()
                    )));
                }
                for (row, values) in rows.zip(attrs.chunks_exact(*dim)) {
                    row[offset..offset + dim].copy_from_slice(values);
                }
            }
            FeatureSpec::Concat { parts } => {
                let mut column = offset;
                for part in parts {
                    part.fill(g, out, row_width, column)?;
                    column += part.dim();
                }
            }
        }
        Ok(())
    }

    /// The default transform for a dataset: one-hot degree up to the dataset's largest degree,
    /// capped at [`DEFAULT_MAX_DEGREE_CAP`]. Node labels (GIN-text tags included) are never used
    /// by default: in bitcoin.txt every tag equals the graph's label.
    pub fn default_for(ds: &Dataset) -> FeatureSpec {
        FeatureSpec::OneHotDegree { max_degree: ds.max_degree().min(DEFAULT_MAX_DEGREE_CAP) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 0-1-2 path plus isolated node 3, labels [0, 5, 2, 1], attributes (i, 10 i).
    fn path_graph() -> Graph {
        Graph {
            num_nodes: 4,
            edges: vec![(0, 1), (1, 2)],
            node_labels: Some(vec![0, 5, 2, 1]),
            node_attributes: Some(vec![0.0, 0.0, 1.0, 10.0, 2.0, 20.0, 3.0, 30.0]),
            label: 0,
        }
    }

    #[test]
    fn one_hot_degree_puts_large_degrees_in_the_last_bucket() {
        let spec = FeatureSpec::OneHotDegree { max_degree: 1 };
        assert_eq!(spec.dim(), 2);
        // Degrees 1, 2, 1, 0; degree 2 overflows into bucket 1.
        let x = spec.node_features(&path_graph()).unwrap();
        assert_eq!(x, vec![0., 1., 0., 1., 0., 1., 1., 0.]);

        let wide = FeatureSpec::OneHotDegree { max_degree: 3 };
        let x = wide.node_features(&path_graph()).unwrap();
        assert_eq!(x, vec![0., 1., 0., 0., 0., 0., 1., 0., 0., 1., 0., 0., 1., 0., 0., 0.]);
    }

    #[test]
    fn node_label_one_hot_overflows_and_needs_labels() {
        let spec = FeatureSpec::NodeLabelsOneHot { num_labels: 3 };
        let x = spec.node_features(&path_graph()).unwrap();
        assert_eq!(x, vec![1., 0., 0., 0., 0., 1., 0., 0., 1., 0., 1., 0.]);

        let unlabelled = Graph { node_labels: None, ..path_graph() };
        let err = spec.node_features(&unlabelled).unwrap_err().to_string();
        assert!(err.contains("node labels"), "{err}");
    }

    #[test]
    fn node_attributes_are_copied_and_width_checked() {
        let spec = FeatureSpec::NodeAttributes { dim: 2 };
        assert_eq!(spec.node_features(&path_graph()).unwrap(), path_graph().node_attributes.unwrap());

        let err = FeatureSpec::NodeAttributes { dim: 3 }.node_features(&path_graph()).unwrap_err();
        assert!(err.to_string().contains("expect 3 attributes"), "{err}");
        let bare = Graph { node_attributes: None, ..path_graph() };
        let err = spec.node_features(&bare).unwrap_err();
        assert!(err.to_string().contains("has none"), "{err}");
    }

    #[test]
    fn concat_places_parts_side_by_side() {
        let spec = FeatureSpec::Concat {
            parts: vec![FeatureSpec::OneHotDegree { max_degree: 2 }, FeatureSpec::NodeAttributes { dim: 2 }],
        };
        assert_eq!(spec.dim(), 5);
        let x = spec.node_features(&path_graph()).unwrap();
        #[rustfmt::skip]
        let expected = vec![
            0., 1., 0.,  0., 0.,
            0., 0., 1.,  1., 10.,
            0., 1., 0.,  2., 20.,
            1., 0., 0.,  3., 30.,
        ];
        assert_eq!(x, expected);
    }

    #[test]
    fn degenerate_specs_and_graphs_are_errors_not_panics() {
        for spec in [
            FeatureSpec::NodeLabelsOneHot { num_labels: 0 },
            FeatureSpec::NodeAttributes { dim: 0 },
            FeatureSpec::Concat { parts: vec![] },
            FeatureSpec::OneHotDegree { max_degree: usize::MAX },
            FeatureSpec::OneHotDegree { max_degree: MAX_FEATURE_DIM },
        ] {
            assert!(spec.node_features(&path_graph()).is_err(), "{spec:?}");
        }
        let broken = Graph { edges: vec![(0, 7)], ..path_graph() };
        let err = FeatureSpec::default().node_features(&broken).unwrap_err();
        assert!(err.to_string().contains("(0, 7)"), "{err}");
        let short_labels = Graph { node_labels: Some(vec![1]), ..path_graph() };
        assert!(FeatureSpec::NodeLabelsOneHot { num_labels: 2 }.node_features(&short_labels).is_err());
    }

    #[test]
    fn default_is_degree_up_to_the_dataset_max_with_a_cap() {
        let ds = Dataset { name: "p".into(), graphs: vec![path_graph()], class_labels: vec![0] };
        assert_eq!(FeatureSpec::default_for(&ds), FeatureSpec::OneHotDegree { max_degree: 2 });

        let star = Graph {
            num_nodes: 41,
            edges: (1..41).map(|i| (0, i)).collect(),
            node_labels: Some(vec![0; 41]),
            node_attributes: None,
            label: 0,
        };
        let ds = Dataset { name: "s".into(), graphs: vec![star], class_labels: vec![0] };
        assert_eq!(FeatureSpec::default_for(&ds), FeatureSpec::OneHotDegree { max_degree: DEFAULT_MAX_DEGREE_CAP });
    }

    #[test]
    fn spec_json_uses_the_kind_tag() {
        let spec = FeatureSpec::Concat {
            parts: vec![FeatureSpec::OneHotDegree { max_degree: 4 }, FeatureSpec::NodeLabelsOneHot { num_labels: 7 }],
        };
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"concat","parts":[{"kind":"one_hot_degree","max_degree":4},{"kind":"node_labels_one_hot","num_labels":7}]}"#
        );
        assert_eq!(serde_json::from_str::<FeatureSpec>(&json).unwrap(), spec);
    }
}
