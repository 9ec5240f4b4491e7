//! The in-memory graph and dataset types every loader produces and every model consumes.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

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
    /// Degree of every node (edges naming a node outside the graph, which
    /// [`Graph::validate`] reports, are not counted).
    pub fn degrees(&self) -> Vec<usize> {
        let mut deg = vec![0usize; self.num_nodes];
        for &(u, v) in &self.edges {
            for end in [u, v] {
                if let Some(d) = deg.get_mut(end as usize) {
                    *d += 1;
                }
            }
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

    /// Checks the invariants every consumer relies on: edge endpoints inside the graph, and
    /// node label and attribute arrays that match the node count. Graphs built by loaders always
    /// pass; this guards graphs assembled elsewhere (attacks, callers of the library).
    pub fn validate(&self) -> Result<()> {
        let n = self.num_nodes;
        if let Some(&(u, v)) = self.edges.iter().find(|&&(u, v)| u as usize >= n || v as usize >= n) {
            return Err(Error::invalid(format!("edge ({u}, {v}) names a node outside 0..{n}")));
        }
        if let Some(labels) = &self.node_labels {
            if labels.len() != n {
                return Err(Error::invalid(format!("{} node labels for {n} nodes", labels.len())));
            }
        }
        if let Some(attrs) = &self.node_attributes {
            let ragged = if n == 0 { !attrs.is_empty() } else { attrs.len() % n != 0 };
            if ragged {
                return Err(Error::invalid(format!("{} node attribute values do not split into {n} equal rows", attrs.len())));
            }
        }
        Ok(())
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
    /// Builds a dataset from graphs and one original label per graph (as the file wrote it).
    /// Classes are the sorted unique labels: class `c` is `class_labels[c]`, so MUTAG's -1/1
    /// become 0/1 and the mapping does not depend on the order graphs appear in.
    pub fn from_original_labels(name: impl Into<String>, mut graphs: Vec<Graph>, original_labels: &[i64]) -> Result<Dataset> {
        if graphs.len() != original_labels.len() {
            return Err(Error::invalid(format!("{} labels for {} graphs", original_labels.len(), graphs.len())));
        }
        let mut class_labels = original_labels.to_vec();
        class_labels.sort_unstable();
        class_labels.dedup();
        for (g, label) in graphs.iter_mut().zip(original_labels) {
            // The label comes from `class_labels` itself, so the search always succeeds.
            g.label = class_labels.binary_search(label).unwrap_or_default();
        }
        Ok(Dataset { name: name.into(), graphs, class_labels })
    }

    /// The label the source file used for graph `index`'s class.
    pub fn original_label(&self, index: usize) -> Option<i64> {
        let g = self.graphs.get(index)?;
        self.class_labels.get(g.label).copied()
    }

    /// The same graphs with classes re-indexed to `labels` (a model's label order): a graph whose
    /// original label is `labels[c]` gets class `c`. `labels` may name classes the dataset lacks;
    /// a dataset label missing from `labels` is an error naming it.
    pub fn with_class_labels(&self, labels: &[i64]) -> Result<Dataset> {
        check_unique(labels)?;
        let mut graphs = self.graphs.clone();
        for (i, g) in graphs.iter_mut().enumerate() {
            let original = self
                .original_label(i)
                .ok_or_else(|| Error::invalid(format!("graph {i} has class {} outside the dataset's classes", g.label)))?;
            g.label = labels.iter().position(|&l| l == original).ok_or_else(|| {
                Error::invalid(format!(
                    "dataset {:?} has graphs labelled {original}, which is not one of the class labels {labels:?}",
                    self.name
                ))
            })?;
        }
        Ok(Dataset { name: self.name.clone(), graphs, class_labels: labels.to_vec() })
    }

    /// Only the graphs whose original label is in `labels`, re-indexed so that class `c` is
    /// `labels[c]` (Fingerprint-4: `keep_classes(&[0, 2, 4, 5])`).
    pub fn keep_classes(&self, labels: &[i64]) -> Result<Dataset> {
        check_unique(labels)?;
        if labels.is_empty() {
            return Err(Error::invalid("keep_classes needs at least one class label"));
        }
        if let Some(missing) = labels.iter().find(|l| !self.class_labels.contains(l)) {
            return Err(Error::invalid(format!(
                "dataset {:?} has no class labelled {missing} (its labels are {:?})",
                self.name, self.class_labels
            )));
        }
        let graphs: Vec<Graph> = (0..self.graphs.len())
            .filter_map(|i| {
                let original = self.original_label(i)?;
                let class = labels.iter().position(|&l| l == original)?;
                Some(Graph { label: class, ..self.graphs[i].clone() })
            })
            .collect();
        Ok(Dataset { name: self.name.clone(), graphs, class_labels: labels.to_vec() })
    }

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
            if let Some(c) = counts.get_mut(g.label) {
                *c += 1;
            }
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

    /// `n` graphs drawn at random without replacement (all of them when `n >= len`), kept in
    /// dataset order; the same `seed` draws the same graphs.
    pub fn random_subset(&self, n: usize, seed: u64) -> Dataset {
        use rand::seq::index::sample;
        let mut rng = crate::rng::rng_for(seed, "dataset-random-subset");
        let mut indices = sample(&mut rng, self.len(), n.min(self.len())).into_vec();
        indices.sort_unstable();
        self.subset(&indices)
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

fn check_unique(labels: &[i64]) -> Result<()> {
    for (i, l) in labels.iter().enumerate() {
        if labels[..i].contains(l) {
            return Err(Error::invalid(format!("class label {l} appears twice in {labels:?}")));
        }
    }
    Ok(())
}

/// Component index of every node of an undirected graph on `0..num_nodes` with `edges`, numbered in order of each component's lowest node.
pub fn components(num_nodes: usize, edges: &[(u32, u32)]) -> Vec<usize> {
    let mut adjacency = vec![Vec::new(); num_nodes];
    for &(u, v) in edges {
        adjacency[u as usize].push(v as usize);
        adjacency[v as usize].push(u as usize);
    }
    let mut component = vec![usize::MAX; num_nodes];
    let mut next = 0;
    for start in 0..num_nodes {
        if component[start] != usize::MAX {
            continue;
        }
        component[start] = next;
        let mut stack = vec![start];
        while let Some(node) = stack.pop() {
            for &other in &adjacency[node] {
                if component[other] == usize::MAX {
                    component[other] = next;
                    stack.push(other);
                }
            }
        }
        next += 1;
    }
    component
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graphs(n: usize) -> Vec<Graph> {
        (0..n).map(|i| Graph { num_nodes: i + 1, edges: vec![], node_labels: None, node_attributes: None, label: 0 }).collect()
    }

    #[test]
    fn original_labels_map_to_sorted_classes() {
        let ds = Dataset::from_original_labels("m", graphs(4), &[1, -1, 1, 7]).unwrap();
        assert_eq!(ds.class_labels, vec![-1, 1, 7]);
        assert_eq!(ds.graphs.iter().map(|g| g.label).collect::<Vec<_>>(), vec![1, 0, 1, 2]);
        assert_eq!(ds.original_label(3), Some(7));
        assert_eq!(ds.class_counts(), vec![1, 2, 1]);
        assert!(Dataset::from_original_labels("m", graphs(2), &[1]).is_err());
    }

    #[test]
    fn with_class_labels_follows_the_model_order() {
        let ds = Dataset::from_original_labels("m", graphs(3), &[-1, 1, 1]).unwrap();
        let flipped = ds.with_class_labels(&[1, -1]).unwrap();
        assert_eq!(flipped.graphs.iter().map(|g| g.label).collect::<Vec<_>>(), vec![1, 0, 0]);
        assert_eq!(flipped.class_labels, vec![1, -1]);
        let wider = ds.with_class_labels(&[-1, 0, 1]).unwrap();
        assert_eq!(wider.graphs.iter().map(|g| g.label).collect::<Vec<_>>(), vec![0, 2, 2]);

        let err = ds.with_class_labels(&[0, 1]).unwrap_err().to_string();
        assert!(err.contains("labelled -1"), "{err}");
        assert!(ds.with_class_labels(&[1, 1, -1]).is_err());
    }

    #[test]
    fn keep_classes_filters_and_reindexes() {
        let ds = Dataset::from_original_labels("f", graphs(6), &[0, 1, 2, 4, 5, 2]).unwrap();
        let kept = ds.keep_classes(&[0, 2, 4, 5]).unwrap();
        assert_eq!(kept.class_labels, vec![0, 2, 4, 5]);
        assert_eq!(kept.graphs.iter().map(|g| g.label).collect::<Vec<_>>(), vec![0, 1, 2, 3, 1]);
        // The graph with label 1 (2 nodes) is gone; order is kept.
        assert_eq!(kept.graphs.iter().map(|g| g.num_nodes).collect::<Vec<_>>(), vec![1, 3, 4, 5, 6]);
        let err = ds.keep_classes(&[0, 3]).unwrap_err().to_string();
        assert!(err.contains("no class labelled 3"), "{err}");
        assert!(ds.keep_classes(&[]).is_err());
        assert!(ds.keep_classes(&[2, 2]).is_err());
    }

    #[test]
    fn validate_catches_inconsistent_graphs() {
        let mut g = graphs(3).pop().unwrap();
        g.edges = vec![(0, 2)];
        assert!(g.validate().is_ok());
        g.node_attributes = Some(vec![0.0; 7]);
        assert!(g.validate().is_err());
        g.node_attributes = Some(vec![0.0; 6]);
        assert_eq!(g.attr_dim(), 2);
        g.node_labels = Some(vec![0; 2]);
        assert!(g.validate().is_err());
        g.node_labels = None;
        g.edges.push((1, 3));
        assert!(g.validate().is_err());
        assert_eq!(g.degrees(), vec![1, 1, 1]);
    }
}
