//! How much of a sample of large graphs each stage looks at.
//!
//! Recovery, the evidence probe and unlearning all work on montaged copies of the sample's
//! graphs, and their cost grows with the edges in a batch. On molecules (15-40 nodes) every
//! stage sees every graph at every placement; a 150-graph COLLAB sample (75 nodes and about
//! 2 500 edges per graph) is some 700 times AIDS' batch, and a purification took over half an
//! hour on two cores. Past a budget of edges, the generator trains on a class-stratified subset
//! of the graphs, and copies take fewer random placements per graph, then fewer graphs. The
//! evidence keeps enough graphs for its standard error over graphs to mean something.

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::data::Graph;
use crate::rng::rng_for;

/// Fewest graphs the generator trains on when the budget cuts the sample.
pub const MIN_RECOVERY_GRAPHS: usize = 8;
/// Fewest graphs the evidence is measured on when the budget cuts the sample: its score is the
/// excess less two standard errors over graphs.
pub const MIN_PROBE_GRAPHS: usize = 24;

/// What the budget left each stage: reported so that a user sees what was measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkScale {
    /// Unlearning graphs the generator trained on.
    pub recovery_graphs: usize,
    /// Unlearning graphs the evidence and the null were measured on.
    pub evidence_graphs: usize,
    /// Random placements per graph besides the explainer's, for the evidence.
    pub evidence_placements: usize,
    /// Random placements per graph besides the explainer's, per unlearning epoch and for the
    /// held-out measurements.
    pub unlearning_placements: usize,
}

impl WorkScale {
    /// The scale for `graphs` (the unlearning graphs) under `recovery_edges` for the generator's
    /// batch and `copy_edges` for a batch of placed copies, with at most `placements` random
    /// placements per graph.
    pub fn plan(graphs: &[&Graph], recovery_edges: usize, copy_edges: usize, placements: usize) -> WorkScale {
        let n = graphs.len();
        let edges = graphs.iter().map(|g| g.edges.len()).sum::<usize>().max(1);
        let mean_edges = edges as f64 / n.max(1) as f64;
        let recovery_graphs = if edges <= recovery_edges {
            n
        } else {
            ((recovery_edges as f64 / mean_edges).floor() as usize).clamp(MIN_RECOVERY_GRAPHS.min(n), n)
        };
        // Copies per graph that fit: the explainer's placement and `k` random ones.
        let fit = |graphs: usize| (copy_edges as f64 / (graphs.max(1) as f64 * mean_edges)).floor() as usize;
        let fitting = fit(n).saturating_sub(1).max(1);
        let unlearning_placements = placements.min(fitting);
        let (evidence_graphs, evidence_placements) = if fit(n) >= 2 {
            (n, placements.max(1).min(fitting))
        } else {
            (((copy_edges as f64 / (2.0 * mean_edges)).floor() as usize).clamp(MIN_PROBE_GRAPHS.min(n), n), 1)
        };
        WorkScale { recovery_graphs, evidence_graphs, evidence_placements, unlearning_placements }
    }
}

/// `k` of the indices `0..labels.len()`, class-stratified: classes take turns, each in a
/// seeded random order, so a subset keeps the sample's classes as far as it can. All of them,
/// in order, when `k` covers them.
pub fn stratified_subset(labels: &[usize], k: usize, seed: u64, purpose: &str) -> Vec<usize> {
    if k >= labels.len() {
        return (0..labels.len()).collect();
    }
    let mut rng = rng_for(seed, purpose);
    let classes = labels.iter().copied().max().map_or(0, |c| c + 1);
    let mut members: Vec<Vec<usize>> = (0..classes).map(|c| (0..labels.len()).filter(|&i| labels[i] == c).collect()).collect();
    for m in &mut members {
        m.shuffle(&mut rng);
        m.reverse();
    }
    let mut chosen = Vec::with_capacity(k);
    while chosen.len() < k {
        for m in members.iter_mut() {
            if chosen.len() < k {
                if let Some(i) = m.pop() {
                    chosen.push(i);
                }
            }
        }
    }
    chosen.sort_unstable();
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(nodes: usize, edges: usize) -> Graph {
        Graph {
            num_nodes: nodes,
            edges: (0..edges as u32).map(|i| (i % nodes as u32, (i + 1) % nodes as u32)).collect(),
            node_labels: None,
            node_attributes: None,
            label: 0,
        }
    }

    #[test]
    fn small_graphs_are_seen_whole_and_large_ones_within_the_budget() {
        let small: Vec<Graph> = (0..30).map(|_| graph(15, 16)).collect();
        let refs: Vec<&Graph> = small.iter().collect();
        assert_eq!(
            WorkScale::plan(&refs, 20_000, 300_000, 10),
            WorkScale { recovery_graphs: 30, evidence_graphs: 30, evidence_placements: 10, unlearning_placements: 10 }
        );
        // COLLAB-like: 113 graphs of 2 500 edges.
        let large: Vec<Graph> = (0..113).map(|_| graph(75, 2500)).collect();
        let refs: Vec<&Graph> = large.iter().collect();
        let scale = WorkScale::plan(&refs, 20_000, 300_000, 10);
        assert_eq!(scale.recovery_graphs, 8);
        // One graph's copies at two placements do not fit all 113: 60 graphs, one random each.
        assert_eq!((scale.evidence_graphs, scale.evidence_placements), (60, 1));
        assert_eq!(scale.unlearning_placements, 1);
        // In between (DD-like, 35 graphs of 700 edges): the generator on 28, the copies all fit.
        let mid: Vec<Graph> = (0..35).map(|_| graph(280, 700)).collect();
        let refs: Vec<&Graph> = mid.iter().collect();
        let scale = WorkScale::plan(&refs, 20_000, 300_000, 10);
        assert_eq!(scale.recovery_graphs, 28);
        assert_eq!((scale.evidence_graphs, scale.evidence_placements, scale.unlearning_placements), (35, 10, 10));
    }

    #[test]
    fn a_subset_takes_the_classes_in_turn() {
        let labels = [0, 0, 0, 0, 0, 0, 1, 1, 2];
        let subset = stratified_subset(&labels, 5, 3, "test");
        assert_eq!(subset.len(), 5);
        let count = |c: usize| subset.iter().filter(|&&i| labels[i] == c).count();
        assert_eq!((count(0), count(1), count(2)), (2, 2, 1));
        assert_eq!(stratified_subset(&labels, 20, 3, "test"), (0..9).collect::<Vec<_>>());
    }
}
