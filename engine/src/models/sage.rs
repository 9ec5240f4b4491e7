//! GraphSAGE (Hamilton et al.) as published with G-Cleaner: L x [SAGEConv (mean) -> ReLU ->
//! BatchNorm1d].
//!
//! SAGEConv: `out_i = W_l (sum_{j -> i} w_ji x_j / |N(i)|) + b_l + W_r x_i`, with `|N(i)|` the
//! number of incoming edges (at least 1); at w = 1 this is PyG's mean aggregation. PyG names:
//! `conv{i}.lin_l.weight|bias`, `conv{i}.lin_r.weight` (no bias), `bn{i}.*`.

use tch::{nn, nn::Module, Tensor};

use super::edges::Edges;
use super::init::torch_linear;
use super::published::Convolution;
use super::scatter::{counts, scatter_sum};
use super::weights::ExpectedTensor;

#[derive(Debug)]
pub struct SageConv {
    pub lin_l: nn::Linear,
    pub lin_r: nn::Linear,
}

impl SageConv {
    pub fn new(p: &nn::Path, in_dim: i64, out_dim: i64) -> SageConv {
        SageConv {
            lin_l: torch_linear(p / "lin_l", in_dim, out_dim),
            lin_r: nn::linear(p / "lin_r", in_dim, out_dim, nn::LinearConfig { bias: false, ..Default::default() }),
        }
    }

    /// `inv_count` is `1 / max(1, summed incoming edge weight)` per node, `[N, 1]`.
    pub fn forward(&self, x: &Tensor, edges: &Edges, inv_count: &Tensor) -> Tensor {
        let mean = edges.weighted_sum(x) * inv_count;
        self.lin_l.forward(&mean) + self.lin_r.forward(x)
    }
}

/// `1 / max(1, summed incoming edge weight)` per node, `[N, 1]`. The mean divides by the summed
/// weight of the incoming edges (the neighbour count when every weight is 1, as in PyG), so an
/// edge of weight 0 is exactly an absent edge: the trigger montage relies on that.
pub fn mean_normaliser(edges: &Edges, kind: tch::Kind) -> Tensor {
    let incoming = match &edges.weight {
        Some(w) => scatter_sum(w, &edges.dst, edges.num_nodes),
        None => counts(&edges.dst, edges.num_nodes, kind),
    };
    incoming.clamp_min(1.0).reciprocal().unsqueeze(1)
}

impl Convolution for SageConv {
    type Prepared = Tensor;
    fn new(p: &nn::Path, in_dim: i64, out_dim: i64) -> SageConv {
        SageConv::new(p, in_dim, out_dim)
    }
    fn prepare(edges: &Edges, kind: tch::Kind) -> Tensor {
        mean_normaliser(edges, kind)
    }
    fn forward(&self, x: &Tensor, edges: &Edges, inv_count: &Tensor) -> Tensor {
        SageConv::forward(self, x, edges, inv_count)
    }
    fn expected(prefix: &str, in_dim: usize, out_dim: usize) -> Vec<ExpectedTensor> {
        vec![
            ExpectedTensor::param(&format!("{prefix}.lin_l.weight"), &[out_dim, in_dim]),
            ExpectedTensor::param(&format!("{prefix}.lin_l.bias"), &[out_dim]),
            ExpectedTensor::param(&format!("{prefix}.lin_r.weight"), &[out_dim, in_dim]),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_support::{assert_close, set, symmetric_weights, TinyBatch};
    use tch::{Device, Kind};

    /// lin_l: 2 m + 1, lin_r: 3 x.
    fn conv(vs: &nn::VarStore) -> SageConv {
        let c = SageConv::new(&(vs.root() / "conv1"), 1, 1);
        set(&c.lin_l.ws, &[2.0]);
        set(c.lin_l.bs.as_ref().unwrap(), &[1.0]);
        set(&c.lin_r.ws, &[3.0]);
        c
    }

    fn run(conv: &SageConv, g: &TinyBatch, w: Option<&Tensor>) -> Tensor {
        let mut input = g.input();
        if let Some(w) = w {
            input = input.with_edge_weight(w);
        }
        let edges = Edges::new(&input);
        conv.forward(&g.x, &edges, &mean_normaliser(&edges, Kind::Float))
    }

    #[test]
    fn sage_conv_combines_neighbour_mean_and_root() {
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = conv(&vs);
        // means: 2, (1 + 3) / 2 = 2, 2
        assert_close(&run(&conv, &TinyBatch::path3(), None), &[4.0 + 1.0 + 3.0, 4.0 + 1.0 + 6.0, 4.0 + 1.0 + 9.0], 1e-6);
    }

    #[test]
    fn sage_conv_weights_messages_and_divides_by_summed_weight() {
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = conv(&vs);
        let w = symmetric_weights(&[0.5, 2.0]);
        // means: 0.5 * 2 / max(1, 0.5) = 1, (0.5 * 1 + 2 * 3) / 2.5 = 2.6, 2 * 2 / 2 = 2
        assert_close(&run(&conv, &TinyBatch::path3(), Some(&w)), &[2.0 + 1.0 + 3.0, 5.2 + 1.0 + 6.0, 4.0 + 1.0 + 9.0], 1e-6);
    }

    #[test]
    fn sage_conv_edge_of_weight_zero_is_an_absent_edge() {
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = conv(&vs);
        // Path 0-1-2 with edge 1-2 at weight 0 equals the graph with only edge 0-1 plus node 2.
        let w = symmetric_weights(&[1.0, 0.0]);
        let with_zero = run(&conv, &TinyBatch::path3(), Some(&w));
        let without = run(&conv, &TinyBatch::new(&[(3, vec![(0, 1)])], &[1.0, 2.0, 3.0]), None);
        assert_eq!(Vec::<f32>::try_from(with_zero.view([-1])).unwrap(), Vec::<f32>::try_from(without.view([-1])).unwrap());
    }

    #[test]
    fn sage_conv_of_an_isolated_node_has_a_zero_mean() {
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = conv(&vs);
        assert_close(&run(&conv, &TinyBatch::new(&[(1, vec![])], &[5.0]), None), &[1.0 + 15.0], 1e-6);
    }
}
