//! The in-memory graph and dataset types every loader produces and every model consumes.

use serde::{Deserialize, Serialize};

/// One graph of a graph-classification dataset.
///
/// Edges are undirected and stored once each as `(u, v)` with `u < v`: loaders drop self-loops
/// and duplicate or reversed copies, so every consumer can rely on a simple graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    pub num_nodes: usize,
    pub edges: Vec<(u32, u32)>,
    /// Discrete node labels (TU `node_labels`, GIN-text tags), as in the file, 0-based.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_labels: Option<Vec<u32>>,
    /// Continuous node attributes, row-major `num_nodes x attr_dim`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_attributes: Option<Vec<f32>>,
    /// Class index in `0..num_classes` (see [`Dataset::class_labels`] for the original label).
    pub label: usize,
}

impl Graph {
    /// Degree of every node.
    pub fn degrees(&self) -> Vec<usize> {
        let mut deg = vec![0usize; self.num_nodes];
        for &(u, v) in &self.edges {
            deg[u as usize] += 1;
            deg[v as usize] += 1;
        }
        deg
    }

    /// Width of `node_attributes` rows (0 when there are none).
    pub fn attr_dim(&self) -> usize {
        match &self.node_attributes {
            Some(a) if self.num_nodes > 0 => a.len() / self.num_nodes,
            _ => 0,
        }
    }

    /// Sorts and deduplicates the edge list into the canonical form (u < v, no self-loops).
    pub fn canonicalize_edges(&mut self) {
        for e in &mut self.edges {
            if e.0 > e.1 {
                *e = (e.1, e.0);
            }
        }
        self.edges.retain(|&(u, v)| u != v);
        self.edges.sort_unstable();
        self.edges.dedup();
    }
}

/// A labelled set of graphs with the mapping from class indices back to the file's labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    pub name: String,
    pub graphs: Vec<Graph>,
    /// `class_labels[c]` is the label the source file used for class `c` (MUTAG: -1 and 1).
    pub class_labels: Vec<i64>,
}

impl Dataset {
    pub fn num_classes(&self) -> usize {
        self.class_labels.len()
    }

    pub fn len(&self) -> usize {
        self.graphs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.graphs.is_empty()
    }

    /// Number of graphs in each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes()];
        for g in &self.graphs {
            counts[g.label] += 1;
        }
        counts
    }

    /// Largest node label + 1 (0 when the graphs carry no node labels).
    pub fn num_node_labels(&self) -> usize {
        self.graphs
            .iter()
            .filter_map(|g| g.node_labels.as_ref())
            .flat_map(|l| l.iter().map(|&x| x as usize + 1))
            .max()
            .unwrap_or(0)
    }

    /// Width of node attributes (0 when the graphs carry none).
    pub fn attr_dim(&self) -> usize {
        self.graphs.iter().map(Graph::attr_dim).max().unwrap_or(0)
    }

    pub fn max_degree(&self) -> usize {
        self.graphs.iter().flat_map(|g| g.degrees()).max().unwrap_or(0)
    }

    pub fn avg_nodes(&self) -> f64 {
        if self.graphs.is_empty() {
            return 0.0;
        }
        self.graphs.iter().map(|g| g.num_nodes as f64).sum::<f64>() / self.graphs.len() as f64
    }

    /// A new dataset holding the graphs at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        Dataset {
            name: self.name.clone(),
            graphs: indices.iter().map(|&i| self.graphs[i].clone()).collect(),
            class_labels: self.class_labels.clone(),
        }
    }
}
