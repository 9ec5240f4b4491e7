//! Prune: at inference, drop every edge whose endpoints' node features have a cosine similarity
//! below a threshold, then classify what is left (the pruning step of GNNGuard, as the G-Cleaner
//! paper's "Prune" baseline uses it). A trigger wires together nodes that the rest of the graph
//! would not connect; where features tell such nodes apart, their edges go.
//!
//! With one-hot features (one-hot degree, gcleaner's default, or one-hot node labels) the
//! similarity of two nodes is 1 when they fall in the same bucket and 0 otherwise, so every
//! threshold in (0, 1] does the same thing: keep exactly the edges between nodes of equal degree
//! bucket (or equal label) and drop all others. The threshold only matters for continuous
//! attributes.

use serde::{Deserialize, Serialize};

use super::inference::{batch_features, prepare, FeatureSource};
use crate::data::{FeatureSpec, Graph};
use crate::metrics::predict_classes;
use crate::models::GnnModel;
use crate::{Error, Result};

/// GNNGuard's pruning threshold: edges whose endpoint similarity is below 0.1 get weight 0.
pub const DEFAULT_PRUNE_THRESHOLD: f64 = 0.1;

/// Norms below this count as zero: a zero feature vector is similar to nothing (similarity 0),
/// as in `torch.nn.functional.cosine_similarity`.
const NORM_EPS: f64 = 1e-8;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PruneConfig {
    /// Edges whose endpoints' cosine similarity is below this are dropped; in [-1, 1].
    pub threshold: f64,
    /// Features the model sees after pruning (similarities always use the unpruned graph's).
    pub features: FeatureSource,
}

impl Default for PruneConfig {
    fn default() -> Self {
        PruneConfig { threshold: DEFAULT_PRUNE_THRESHOLD, features: FeatureSource::Original }
    }
}

impl PruneConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.threshold.is_finite() && (-1.0..=1.0).contains(&self.threshold)) {
            return Err(Error::invalid(format!(
                "prune threshold must be a cosine similarity in [-1, 1], got {}",
                self.threshold
            )));
        }
        Ok(())
    }
}

/// Cosine similarity of the endpoints' feature rows for every edge of `graph`, in edge order.
pub fn edge_similarities(graph: &Graph, features: &FeatureSpec) -> Result<Vec<f64>> {
    let rows = features.node_features(graph)?;
    Ok(similarities_from_rows(graph, &rows, features.dim()))
}

fn similarities_from_rows(graph: &Graph, rows: &[f32], dim: usize) -> Vec<f64> {
    let row = |v: u32| &rows[v as usize * dim..(v as usize + 1) * dim];
    let norms: Vec<f64> =
        (0..graph.num_nodes as u32).map(|v| row(v).iter().map(|&a| f64::from(a) * f64::from(a)).sum::<f64>().sqrt()).collect();
    graph
        .edges
        .iter()
        .map(|&(u, v)| {
            let dot: f64 = row(u).iter().zip(row(v)).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
            dot / (norms[u as usize].max(NORM_EPS) * norms[v as usize].max(NORM_EPS))
        })
        .collect()
}

/// `graph` without the edges whose endpoint similarity (under `features`) is below
/// `threshold`. Nodes, node labels and attributes are kept.
pub fn prune_graph(graph: &Graph, features: &FeatureSpec, threshold: f64) -> Result<Graph> {
    let similarities = edge_similarities(graph, features)?;
    Ok(keep_similar(graph, &similarities, threshold))
}

fn keep_similar(graph: &Graph, similarities: &[f64], threshold: f64) -> Graph {
    let edges = graph.edges.iter().zip(similarities).filter(|(_, &s)| s >= threshold).map(|(&e, _)| e).collect();
    Graph { edges, ..graph.clone() }
}

/// Prunes every graph and classifies the result.
pub(super) fn predict(model: &GnnModel, graphs: &[&Graph], config: &PruneConfig, batch_size: usize) -> Result<Vec<usize>> {
    let spec = &model.spec().features;
    let pruned = graphs
        .iter()
        .enumerate()
        .map(|(position, g)| {
            let prepared = prepare(g, spec, config.features, position)?;
            let rows = spec.node_features(g).map_err(|e| Error::invalid(format!("graph {position}: {e}")))?;
            let similarities = similarities_from_rows(g, &rows, spec.dim());
            Ok(keep_similar(&prepared, &similarities, config.threshold))
        })
        .collect::<Result<Vec<Graph>>>()?;
    let refs: Vec<&Graph> = pruned.iter().collect();
    let positions: Vec<usize> = (0..refs.len()).collect();
    predict_classes(model, &refs, &positions, &batch_features(spec, config.features), batch_size)
}
