//! GIN (Xu et al., "How Powerful are Graph Neural Networks?") as published with G-Cleaner:
//! L x [GINConv(eps, MLP Linear -> ReLU -> Linear) -> ReLU -> BatchNorm1d].
//!
//! PyG names: `conv{i}.eps`, `conv{i}.nn.0.*`, `conv{i}.nn.2.*`, `bn{i}.*`. With edge weights
//! the neighbour sum becomes `sum_j w_ji x_j` (PyG's GINConv has no weights; equal at w = 1).

use tch::{nn, nn::Module, Tensor};

use super::edges::Edges;
use super::init::torch_linear;
use super::published::Convolution;
use super::weights::ExpectedTensor;

#[derive(Debug)]
pub struct GinConv {
    /// A buffer (not trained), as in PyG's `GINConv(train_eps=False)`.
    pub eps: Tensor,
    pub lin1: nn::Linear,
    pub lin2: nn::Linear,
}

impl GinConv {
    pub fn new(p: &nn::Path, in_dim: i64, out_dim: i64) -> GinConv {
        GinConv {
            eps: p.zeros_no_train("eps", &[1]),
            lin1: torch_linear(p / "nn" / "0", in_dim, out_dim),
            lin2: torch_linear(p / "nn" / "2", out_dim, out_dim),
        }
    }

    pub fn forward(&self, x: &Tensor, edges: &Edges) -> Tensor {
        // (1 + eps) x as x + x * eps: one op
        let combined = edges.add_weighted_sum(&x.addcmul(x, &self.eps), x);
        self.lin2.forward(&self.lin1.forward(&combined).relu())
    }
}

impl Convolution for GinConv {
    type Prepared = ();
    fn new(p: &nn::Path, in_dim: i64, out_dim: i64) -> GinConv {
        GinConv::new(p, in_dim, out_dim)
    }
    fn prepare(_edges: &Edges, _kind: tch::Kind) {}
    fn forward(&self, x: &Tensor, edges: &Edges, _prepared: &()) -> Tensor {
        GinConv::forward(self, x, edges)
    }
    fn expected(prefix: &str, in_dim: usize, out_dim: usize) -> Vec<ExpectedTensor> {
        vec![
            ExpectedTensor::param(&format!("{prefix}.eps"), &[1]),
            ExpectedTensor::param(&format!("{prefix}.nn.0.weight"), &[out_dim, in_dim]),
            ExpectedTensor::param(&format!("{prefix}.nn.0.bias"), &[out_dim]),
            ExpectedTensor::param(&format!("{prefix}.nn.2.weight"), &[out_dim, out_dim]),
            ExpectedTensor::param(&format!("{prefix}.nn.2.bias"), &[out_dim]),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::edges::Edges;
    use crate::models::test_support::{assert_close, set, symmetric_weights, TinyBatch};
    use tch::Device;

    /// eps = 0.5, MLP: relu(2 a - 1) then identity + 0.5, on one feature.
    fn conv(vs: &nn::VarStore) -> GinConv {
        let c = GinConv::new(&(vs.root() / "conv1"), 1, 1);
        set(&c.eps, &[0.5]);
        set(&c.lin1.ws, &[2.0]);
        set(c.lin1.bs.as_ref().unwrap(), &[-1.0]);
        set(&c.lin2.ws, &[1.0]);
        set(c.lin2.bs.as_ref().unwrap(), &[0.5]);
        c
    }

    #[test]
    fn gin_conv_adds_neighbour_sum_to_scaled_self_then_applies_the_mlp() {
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = conv(&vs);
        let g = TinyBatch::path3();
        // a = 1.5 x_i + sum of neighbours: 1.5 + 2 = 3.5, 3 + 1 + 3 = 7, 4.5 + 2 = 6.5
        let out = conv.forward(&g.x, &Edges::new(&g.input()));
        assert_close(&out, &[2.0 * 3.5 - 1.0 + 0.5, 2.0 * 7.0 - 1.0 + 0.5, 2.0 * 6.5 - 1.0 + 0.5], 1e-6);
    }

    #[test]
    fn gin_conv_scales_each_message_by_its_edge_weight() {
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = conv(&vs);
        let g = TinyBatch::path3();
        let w = symmetric_weights(&[0.5, 2.0]);
        // a0 = 1.5 + 0.5 * 2 = 2.5, a1 = 3 + 0.5 * 1 + 2 * 3 = 9.5, a2 = 4.5 + 2 * 2 = 8.5
        let out = conv.forward(&g.x, &Edges::new(&g.input().with_edge_weight(&w)));
        assert_close(&out, &[4.5, 18.5, 16.5], 1e-6);
    }

    #[test]
    fn gin_conv_of_an_isolated_node_sees_only_itself() {
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = conv(&vs);
        let g = TinyBatch::new(&[(1, vec![])], &[2.0]);
        let out = conv.forward(&g.x, &Edges::new(&g.input()));
        assert_close(&out, &[2.0 * 3.0 - 1.0 + 0.5], 1e-6);
    }
}
