//! Where a trigger goes in each graph: at random nodes (Sub-BA), at the most important nodes by
//! an explainer's score (Exp-BA), or at the most central nodes by degree (Motif-BA).

use rand::seq::index::sample;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::data::Graph;
use crate::rng::{rng_for, Rng};
use crate::{Error, Result};

/// How trigger positions are chosen in a graph.
#[derive(Debug, Clone, Copy)]
pub enum Placement<'a> {
    /// `n` distinct nodes drawn uniformly (Sub-BA).
    Random,
    /// The `n` nodes with the highest score; `scores[i]` holds one score per node of dataset
    /// graph `i` (Exp-BA, scores from GNNExplainer on a clean model). Graphs that are never
    /// attacked may hold an empty vector.
    Importance(&'a [Vec<f32>]),
    /// The `n` nodes of highest degree, ties to the lower index (Motif-BA).
    DegreeCentrality,
}

/// The serialisable name of a [`Placement`], for attack descriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlacementKind {
    Random,
    Importance,
    DegreeCentrality,
}

impl Placement<'_> {
    pub fn kind(&self) -> PlacementKind {
        match self {
            Placement::Random => PlacementKind::Random,
            Placement::Importance(_) => PlacementKind::Importance,
            Placement::DegreeCentrality => PlacementKind::DegreeCentrality,
        }
    }

    /// Positions for an `n`-node trigger in `graph`, which is graph `graph_index` of its
    /// dataset, ready for [`super::inject`].
    ///
    /// When the graph has at least `n` nodes these are `n` of its nodes; when it has fewer, all
    /// of its nodes (in the placement's order) followed by the indices of the nodes injection
    /// will append. Random draws use a generator derived from `seed` and `graph_index` alone, so
    /// a graph's positions do not depend on which other graphs are attacked or in what order.
    pub fn positions(&self, graph_index: usize, graph: &Graph, n: usize, seed: u64) -> Result<Vec<usize>> {
        let existing = graph.num_nodes.min(n);
        let mut positions = match self {
            Placement::Random => {
                let mut rng = position_rng(seed, graph_index);
                random_nodes(graph.num_nodes, existing, &mut rng)
            }
            Placement::Importance(scores) => {
                let scores = scores.get(graph_index).ok_or_else(|| {
                    Error::invalid(format!("no node importance for graph {graph_index} ({} graphs scored)", scores.len()))
                })?;
                if scores.len() != graph.num_nodes {
                    return Err(Error::invalid(format!(
                        "graph {graph_index} has {} nodes but {} node importance scores",
                        graph.num_nodes,
                        scores.len()
                    )));
                }
                if let Some(node) = scores.iter().position(|s| s.is_nan()) {
                    return Err(Error::invalid(format!("node importance of node {node} in graph {graph_index} is NaN")));
                }
                top_by_score(scores, existing)
            }
            Placement::DegreeCentrality => {
                let degrees: Vec<f32> = graph.degrees().into_iter().map(|d| d as f32).collect();
                top_by_score(&degrees, existing)
            }
        };
        positions.extend(graph.num_nodes..n.max(graph.num_nodes));
        Ok(positions)
    }
}

/// The seeded generator that places the trigger in dataset graph `graph_index`.
pub fn position_rng(seed: u64, graph_index: usize) -> Rng {
    rng_for(seed, &format!("attack/positions/{graph_index}"))
}

/// `count` distinct nodes of `0..num_nodes` in random order.
pub fn random_nodes(num_nodes: usize, count: usize, rng: &mut Rng) -> Vec<usize> {
    let mut nodes = sample(rng, num_nodes, count.min(num_nodes)).into_vec();
    nodes.shuffle(rng);
    nodes
}

/// Indices of the `count` highest scores, highest first, equal scores in index order.
pub fn top_by_score(scores: &[f32], count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(count);
    order
}
