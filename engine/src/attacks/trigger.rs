//! The fixed subgraph trigger shared by Sub-BA, Exp-BA and Motif-BA: a small graph whose edges
//! replace the edges among the chosen nodes of every attacked graph.

use rand::seq::SliceRandom as _;
use serde::{Deserialize, Serialize};

use crate::rng::rng_for;
use crate::{Error, Result};

/// Default edge density of an Erdos-Renyi trigger (Sub-BA's setting).
pub const DEFAULT_TRIGGER_DENSITY: f64 = 0.8;

/// How many Erdos-Renyi draws are tried before a disconnected draw is joined up by hand.
const CONNECTED_DRAW_ATTEMPTS: usize = 100;

/// A trigger subgraph on nodes `0..num_nodes`, edges in canonical form (u < v, sorted, unique).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub num_nodes: usize,
    pub edges: Vec<(u32, u32)>,
}

impl Trigger {
    /// A trigger from an explicit edge list. Reversed or repeated edges are folded into the
    /// canonical form; self-loops, out-of-range endpoints and an empty edge list are errors,
    /// because an edgeless trigger would only delete edges and carry no pattern.
    pub fn new(num_nodes: usize, edges: Vec<(u32, u32)>) -> Result<Trigger> {
        if num_nodes < 2 {
            return Err(Error::invalid(format!("a trigger needs at least 2 nodes, got {num_nodes}")));
        }
        if edges.is_empty() {
            return Err(Error::invalid(format!("the {num_nodes}-node trigger has no edges")));
        }
        let mut canonical = Vec::with_capacity(edges.len());
        for (u, v) in edges {
            if u == v {
                return Err(Error::invalid(format!("trigger edge ({u}, {v}) is a self-loop")));
            }
            if u as usize >= num_nodes || v as usize >= num_nodes {
                return Err(Error::invalid(format!("trigger edge ({u}, {v}) names a node outside 0..{num_nodes}")));
            }
            canonical.push((u.min(v), u.max(v)));
        }
        canonical.sort_unstable();
        canonical.dedup();
        Ok(Trigger { num_nodes, edges: canonical })
    }

    /// An Erdos-Renyi trigger drawn from the `seed`, in the G(n, m) form: exactly
    /// `m = ceil(density * n(n-1)/2)` edges placed uniformly at random, so its density is the
    /// configured one rather than a draw of G(n, p) that happens to come out sparse. A sparse
    /// draw is not a trigger: with 3 nodes G(n, 0.8) gives a path 43% of the time (a path that
    /// every tree-like graph already contains; on bitcoin such seeds left the attack near 30%
    /// ASR), while G(n, m) gives the triangle.
    ///
    /// A trigger is only a pattern a model can learn if it is one piece: the draw is repeated
    /// (conditioning on connectivity) until it is connected, and when `density` is so low that
    /// 100 draws all fall apart, the last draw's components are chained together by one edge
    /// each (lowest node of each component to the lowest node of the next).
    pub fn erdos_renyi(num_nodes: usize, density: f64, seed: u64) -> Result<Trigger> {
        if !(density > 0.0 && density <= 1.0) {
            return Err(Error::invalid(format!("trigger density must be in (0, 1], got {density}")));
        }
        if num_nodes < 2 {
            return Err(Error::invalid(format!("a trigger needs at least 2 nodes, got {num_nodes}")));
        }
        let mut pairs = Vec::new();
        for u in 0..num_nodes as u32 {
            for v in u + 1..num_nodes as u32 {
                pairs.push((u, v));
            }
        }
        // The small epsilon keeps 0.8 * 10 pairs at 8, not 9, despite 0.8's binary rounding.
        let num_edges = ((density * pairs.len() as f64 - 1e-9).ceil() as usize).clamp(1, pairs.len());
        let mut rng = rng_for(seed, "attack/trigger-erdos-renyi");
        let mut edges = Vec::new();
        for _ in 0..CONNECTED_DRAW_ATTEMPTS {
            edges = pairs.choose_multiple(&mut rng, num_edges).copied().collect();
            if crate::data::graph::components(num_nodes, &edges).iter().all(|&c| c == 0) {
                return Trigger::new(num_nodes, edges);
            }
        }
        let component = crate::data::graph::components(num_nodes, &edges);
        let mut first_node_of = Vec::new();
        for (node, &c) in component.iter().enumerate() {
            if c == first_node_of.len() {
                first_node_of.push(node as u32);
            }
        }
        for pair in first_node_of.windows(2) {
            edges.push((pair[0], pair[1]));
        }
        Trigger::new(num_nodes, edges)
    }

    /// Degree of every trigger node.
    pub fn degrees(&self) -> Vec<usize> {
        let mut deg = vec![0; self.num_nodes];
        for &(u, v) in &self.edges {
            deg[u as usize] += 1;
            deg[v as usize] += 1;
        }
        deg
    }

    /// Whether every trigger node can reach every other one along trigger edges.
    pub fn is_connected(&self) -> bool {
        crate::data::graph::components(self.num_nodes, &self.edges).iter().all(|&c| c == 0)
    }
}
