//! Prediction over lists of graphs, shared by every defence, and the choice of which node
//! features a model sees after an inference-time defence has edited a graph's structure.

use serde::{Deserialize, Serialize};

use crate::data::{FeatureSpec, Graph};
use crate::models::GnnModel;
use crate::{Error, Result};

/// Node features of a graph whose edges (or nodes) an inference-time defence removed.
///
/// The features of structure-derived specs (one-hot degree) depend on the edges, so the choice
/// matters there; node labels and attributes are the same either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureSource {
    /// The features of the unedited graph, as PyTorch Geometric's edge dropping leaves `data.x`
    /// untouched: the model propagates the original features over the remaining edges.
    Original,
    /// Features recomputed from the edited graph, so the model sees a graph that could occur
    /// (a pruned node's one-hot degree drops with its edges).
    Recomputed,
}

/// A model whose spec cannot build its own input would make libtorch panic on the first batch.
pub(super) fn check_model(model: &GnnModel) -> Result<()> {
    let spec = model.spec();
    spec.features.validate()?;
    if spec.features.dim() != spec.in_features {
        return Err(Error::invalid(format!(
            "model spec: features give {} columns but in_features is {}",
            spec.features.dim(),
            spec.in_features
        )));
    }
    Ok(())
}

/// `graph` as the defences edit it under `source`: for [`FeatureSource::Original`] its node
/// features are computed now and stored as its node attributes (node labels dropped), so later
/// edits to the edges leave them alone; for [`FeatureSource::Recomputed`] it is unchanged.
/// `position` names the graph in errors.
pub(super) fn prepare(graph: &Graph, features: &FeatureSpec, source: FeatureSource, position: usize) -> Result<Graph> {
    match source {
        FeatureSource::Recomputed => {
            graph.validate().map_err(|e| Error::invalid(format!("graph {position}: {e}")))?;
            Ok(graph.clone())
        }
        FeatureSource::Original => {
            let rows = features.node_features(graph).map_err(|e| Error::invalid(format!("graph {position}: {e}")))?;
            Ok(Graph {
                num_nodes: graph.num_nodes,
                edges: graph.edges.clone(),
                node_labels: None,
                node_attributes: Some(rows),
                label: graph.label,
            })
        }
    }
}

/// The feature spec that batches graphs made by [`prepare`] under `source`.
pub(super) fn batch_features(model_features: &FeatureSpec, source: FeatureSource) -> FeatureSpec {
    match source {
        FeatureSource::Original => FeatureSpec::NodeAttributes { dim: model_features.dim() },
        FeatureSource::Recomputed => model_features.clone(),
    }
}
