//! Motif-BA's trigger library: the connected 3- and 4-node graphs, and how often each occurs as
//! an induced subgraph of a set of graphs (Motif-BA uses the rarest one as its trigger).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::trigger::Trigger;
use crate::data::Graph;
use crate::{Error, Result};

/// The eight connected graphs on 3 and 4 nodes.
///
/// M45 is the tailed triangle (a triangle with a pendant node): of the six connected 4-node
/// graphs it is the one a "4-cycle plus two chords" reading would leave out, since a 4-cycle
/// with both chords is the 4-clique M46.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Motif {
    /// Path on 3 nodes (open triad).
    M31,
    /// Triangle.
    M32,
    /// Path on 4 nodes.
    M41,
    /// Star on 4 nodes (one centre, three leaves).
    M42,
    /// 4-cycle.
    M43,
    /// 4-cycle with one chord (diamond).
    M44,
    /// Tailed triangle (paw): a triangle with one pendant node.
    M45,
    /// 4-clique.
    M46,
}

impl Motif {
    /// Every motif, in library order (the tie-break order of [`MotifCounts::least_frequent`]).
    pub const ALL: [Motif; 8] = [Motif::M31, Motif::M32, Motif::M41, Motif::M42, Motif::M43, Motif::M44, Motif::M45, Motif::M46];

    pub fn name(self) -> &'static str {
        match self {
            Motif::M31 => "M31",
            Motif::M32 => "M32",
            Motif::M41 => "M41",
            Motif::M42 => "M42",
            Motif::M43 => "M43",
            Motif::M44 => "M44",
            Motif::M45 => "M45",
            Motif::M46 => "M46",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Motif::M31 => "path on 3 nodes",
            Motif::M32 => "triangle",
            Motif::M41 => "path on 4 nodes",
            Motif::M42 => "star on 4 nodes",
            Motif::M43 => "4-cycle",
            Motif::M44 => "4-cycle with one chord",
            Motif::M45 => "triangle with a pendant node",
            Motif::M46 => "4-clique",
        }
    }

    pub fn num_nodes(self) -> usize {
        match self {
            Motif::M31 | Motif::M32 => 3,
            _ => 4,
        }
    }

    /// The motif's edges on nodes `0..num_nodes`, canonical.
    pub fn edges(self) -> Vec<(u32, u32)> {
        match self {
            Motif::M31 => vec![(0, 1), (1, 2)],
            Motif::M32 => vec![(0, 1), (0, 2), (1, 2)],
            Motif::M41 => vec![(0, 1), (1, 2), (2, 3)],
            Motif::M42 => vec![(0, 1), (0, 2), (0, 3)],
            Motif::M43 => vec![(0, 1), (0, 3), (1, 2), (2, 3)],
            Motif::M44 => vec![(0, 1), (0, 2), (0, 3), (1, 2), (2, 3)],
            Motif::M45 => vec![(0, 1), (0, 2), (1, 2), (2, 3)],
            Motif::M46 => vec![(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)],
        }
    }

    pub fn trigger(self) -> Trigger {
        Trigger { num_nodes: self.num_nodes(), edges: self.edges() }
    }

    /// Which motif a connected induced subgraph is, from its size, edge count and largest
    /// degree (these three tell all eight apart).
    fn classify(num_nodes: usize, num_edges: usize, max_degree: usize) -> Motif {
        match (num_nodes, num_edges, max_degree) {
            (3, 2, _) => Motif::M31,
            (3, _, _) => Motif::M32,
            (_, 3, 3) => Motif::M42,
            (_, 3, _) => Motif::M41,
            (_, 4, 3) => Motif::M45,
            (_, 4, _) => Motif::M43,
            (_, 5, _) => Motif::M44,
            _ => Motif::M46,
        }
    }

    fn slot(self) -> usize {
        Motif::ALL.iter().position(|&m| m == self).unwrap_or(0)
    }
}

impl fmt::Display for Motif {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Motif {
    type Err = Error;

    fn from_str(s: &str) -> Result<Motif> {
        Motif::ALL.into_iter().find(|m| m.name().eq_ignore_ascii_case(s)).ok_or_else(|| {
            let names: Vec<&str> = Motif::ALL.iter().map(|m| m.name()).collect();
            Error::invalid(format!("unknown motif {s:?}; expected one of {}", names.join(", ")))
        })
    }
}

/// Number of induced occurrences of every motif, summed over a set of graphs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MotifCounts {
    counts: [u64; 8],
}

impl MotifCounts {
    pub fn get(&self, motif: Motif) -> u64 {
        self.counts[motif.slot()]
    }

    /// `(motif, count)` for every motif, in library order.
    pub fn iter(&self) -> impl Iterator<Item = (Motif, u64)> + '_ {
        Motif::ALL.into_iter().map(|m| (m, self.get(m)))
    }

    /// The motif with the fewest occurrences; ties go to the earlier motif in library order.
    pub fn least_frequent(&self) -> Motif {
        let mut best = Motif::ALL[0];
        for motif in Motif::ALL {
            if self.get(motif) < self.get(best) {
                best = motif;
            }
        }
        best
    }

    fn add(&mut self, other: &MotifCounts) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
    }
}

/// Induced motif counts summed over `graphs`.
pub fn count_motifs<'a>(graphs: impl IntoIterator<Item = &'a Graph>) -> MotifCounts {
    let mut total = MotifCounts::default();
    for graph in graphs {
        total.add(&count_motifs_in(graph));
    }
    total
}

/// Induced motif counts of one graph.
///
/// Enumerates every connected node set of size 3 and 4 exactly once with Wernicke's ESU
/// scheme (a set is grown only from its smallest node, and only by nodes larger than it that
/// are exclusive neighbours of the latest addition), so the cost follows the number of connected
/// sets rather than the C(n, 4) of all sets. Each size-3 set is classified on the way to its
/// size-4 extensions.
pub fn count_motifs_in(graph: &Graph) -> MotifCounts {
    let n = graph.num_nodes;
    let mut adjacency = vec![Vec::new(); n];
    for &(u, v) in &graph.edges {
        let (u, v) = (u as usize, v as usize);
        if u != v && u < n && v < n {
            adjacency[u].push(v);
            adjacency[v].push(u);
        }
    }
    for list in &mut adjacency {
        list.sort_unstable();
        list.dedup();
    }
    let mut counter = EsuCounter { adjacency: &adjacency, counts: MotifCounts::default() };
    for (root, neighbours) in adjacency.iter().enumerate() {
        let extension: Vec<usize> = neighbours.iter().copied().filter(|&u| u > root).collect();
        counter.extend(&mut vec![root], extension, root);
    }
    counter.counts
}

struct EsuCounter<'a> {
    adjacency: &'a [Vec<usize>],
    counts: MotifCounts,
}

impl EsuCounter<'_> {
    fn adjacent(&self, u: usize, v: usize) -> bool {
        self.adjacency[u].binary_search(&v).is_ok()
    }

    fn extend(&mut self, subgraph: &mut Vec<usize>, mut extension: Vec<usize>, root: usize) {
        if subgraph.len() >= 3 {
            self.record(subgraph);
        }
        if subgraph.len() == 4 {
            return;
        }
        while let Some(w) = extension.pop() {
            let mut next = extension.clone();
            for &u in &self.adjacency[w] {
                if u > root
                    && !subgraph.contains(&u)
                    && !next.contains(&u)
                    && u != w
                    && !subgraph.iter().any(|&s| self.adjacent(s, u))
                {
                    next.push(u);
                }
            }
            subgraph.push(w);
            self.extend(subgraph, next, root);
            subgraph.pop();
        }
    }

    fn record(&mut self, nodes: &[usize]) {
        let mut num_edges = 0;
        let mut degree = [0usize; 4];
        for i in 0..nodes.len() {
            for j in i + 1..nodes.len() {
                if self.adjacent(nodes[i], nodes[j]) {
                    num_edges += 1;
                    degree[i] += 1;
                    degree[j] += 1;
                }
            }
        }
        let max_degree = degree.iter().copied().max().unwrap_or(0);
        let motif = Motif::classify(nodes.len(), num_edges, max_degree);
        self.counts.counts[motif.slot()] += 1;
    }
}
