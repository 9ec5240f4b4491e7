//! A generated graph-classification dataset, for the demo and for tests that must not depend on
//! files outside the repository.
//!
//! Two classes that differ in structure only: class 0 graphs are random trees grown by
//! preferential attachment (one edge per new node), class 1 graphs attach each new node with two
//! edges, so they hold cycles and higher degrees. Degree features separate them well but not
//! perfectly (small graphs of both classes look alike), so a model has something to learn.

use rand::Rng;

use super::graph::{Dataset, Graph};
use crate::rng::rng_for;

/// Node-label alphabet size of the generated graphs.
pub const NUM_NODE_LABELS: usize = 4;
/// Width of the generated node attributes.
pub const ATTR_DIM: usize = 2;

/// `num_graphs` graphs of 8 to 24 nodes, alternating classes, fully determined by `seed`.
pub fn generate(num_graphs: usize, seed: u64) -> Dataset {
    let mut rng = rng_for(seed, "synthetic-dataset");
    let graphs = (0..num_graphs)
        .map(|i| {
            let label = i % 2;
            let n = rng.gen_range(8..=24usize);
            let mut edges = Vec::new();
            let mut endpoints: Vec<u32> = Vec::new();
            for v in 1..n as u32 {
                let links = if label == 0 { 1 } else { 2.min(v as usize) };
                let mut chosen: Vec<u32> = Vec::with_capacity(links);
                while chosen.len() < links {
                    // Preferential attachment: pick an endpoint of an existing edge, or any
                    // earlier node while there are few edges.
                    let u = if endpoints.is_empty() || rng.gen_bool(0.3) {
                        rng.gen_range(0..v)
                    } else {
                        endpoints[rng.gen_range(0..endpoints.len())]
                    };
                    if !chosen.contains(&u) {
                        chosen.push(u);
                    }
                }
                for u in chosen {
                    edges.push((u, v));
                    endpoints.push(u);
                    endpoints.push(v);
                }
            }
            let node_labels = (0..n).map(|_| rng.gen_range(0..NUM_NODE_LABELS as u32)).collect();
            let node_attributes = (0..n * ATTR_DIM).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
            let mut g =
                Graph { num_nodes: n, edges, node_labels: Some(node_labels), node_attributes: Some(node_attributes), label };
            g.canonicalize_edges();
            g
        })
        .collect();
    Dataset { name: "synthetic".into(), graphs, class_labels: vec![0, 1] }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_graphs_are_canonical_and_deterministic() {
        let a = generate(40, 7);
        assert_eq!(a, generate(40, 7));
        assert_ne!(a, generate(40, 8));
        assert_eq!(a.class_counts(), vec![20, 20]);
        for g in &a.graphs {
            assert!((8..=24).contains(&g.num_nodes));
            assert!(g.edges.iter().all(|&(u, v)| u < v && (v as usize) < g.num_nodes));
            assert!(g.edges.windows(2).all(|w| w[0] < w[1]));
            // Trees have n - 1 edges; class 1 has more.
            if g.label == 0 {
                assert_eq!(g.edges.len(), g.num_nodes - 1);
            } else {
                assert!(g.edges.len() > g.num_nodes - 1);
            }
        }
    }
}
