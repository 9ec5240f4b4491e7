//! Helpers for the models' unit tests: tiny graphs and direct parameter assignment.

use tch::{Device, Kind, Tensor};

use super::{GraphInput, ModelSpec};
use crate::data::FeatureSpec;

/// Overwrites a parameter in place (shape taken from the parameter).
pub fn set(param: &Tensor, values: &[f32]) {
    tch::no_grad(|| {
        param.shallow_clone().copy_(&Tensor::from_slice(values).view(param.size().as_slice()));
    });
}

pub fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.detach().to_kind(Kind::Float).flatten(0, -1)).expect("f32 values")
}

pub fn assert_close(actual: &Tensor, expected: &[f64], tol: f64) {
    let got = values(actual);
    assert_eq!(got.len(), expected.len(), "length: got {got:?}, expected {expected:?}");
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert!((*g as f64 - e).abs() <= tol, "entry {i}: got {g}, expected {e} (all: {got:?})");
    }
}

/// A batch of graphs given as node counts and undirected edge lists, with `features` per node.
pub struct TinyBatch {
    pub x: Tensor,
    pub edge_index: Tensor,
    pub batch: Tensor,
    pub num_graphs: i64,
}

impl TinyBatch {
    /// Every undirected edge `(u, v)` becomes `u -> v` followed, after all of them, by `v -> u`.
    pub fn new(graphs: &[(usize, Vec<(i64, i64)>)], features: &[f32]) -> TinyBatch {
        let (mut src, mut dst, mut batch) = (Vec::new(), Vec::new(), Vec::new());
        let mut offset = 0i64;
        let mut reversed = (Vec::new(), Vec::new());
        for (g, (n, edges)) in graphs.iter().enumerate() {
            for &(u, v) in edges {
                src.push(u + offset);
                dst.push(v + offset);
                reversed.0.push(v + offset);
                reversed.1.push(u + offset);
            }
            batch.extend(std::iter::repeat_n(g as i64, *n));
            offset += *n as i64;
        }
        src.extend(reversed.0);
        dst.extend(reversed.1);
        let e = src.len() as i64;
        let dim = features.len() as i64 / offset;
        TinyBatch {
            x: Tensor::from_slice(features).view([offset, dim]),
            edge_index: Tensor::cat(&[Tensor::from_slice(&src), Tensor::from_slice(&dst)], 0).view([2, e]),
            batch: Tensor::from_slice(&batch),
            num_graphs: graphs.len() as i64,
        }
    }

    /// The path 0 - 1 - 2 with one feature per node: 1, 2, 3.
    pub fn path3() -> TinyBatch {
        TinyBatch::new(&[(3, vec![(0, 1), (1, 2)])], &[1.0, 2.0, 3.0])
    }

    pub fn input(&self) -> GraphInput<'_> {
        GraphInput::new(&self.x, &self.edge_index, &self.batch, self.num_graphs)
    }
}

/// Per-directed-edge weights for [`TinyBatch`]'s edge order from per-undirected-edge weights.
pub fn symmetric_weights(per_edge: &[f32]) -> Tensor {
    let both: Vec<f32> = per_edge.iter().chain(per_edge.iter()).copied().collect();
    Tensor::from_slice(&both)
}

/// A spec for `arch` with node-attribute features of width `in_features`.
pub fn spec(arch: super::Arch, in_features: usize, hidden: usize, num_classes: usize) -> ModelSpec {
    ModelSpec::published(arch, in_features, hidden, num_classes, FeatureSpec::NodeAttributes { dim: in_features })
}

/// A few random graphs (deterministic) with `dim` random features per node.
pub fn random_batch(dim: usize, seed: i64) -> TinyBatch {
    let _torch_seed = crate::rng::seed_torch(seed as u64);
    let graphs = vec![
        (4, vec![(0, 1), (1, 2), (2, 3), (0, 3)]),
        (3, vec![(0, 1), (0, 2)]),
        (1, vec![]),
        (5, vec![(0, 1), (1, 2), (2, 3), (3, 4), (0, 2)]),
    ];
    let n: usize = graphs.iter().map(|g| g.0).sum();
    let features = values(&Tensor::randn([(n * dim) as i64], (Kind::Float, Device::Cpu)));
    TinyBatch::new(&graphs, &features)
}
