//! GCN (Kipf & Welling) as published with G-Cleaner: L x [GCNConv -> row-wise L2 normalise ->
//! ReLU].
//!
//! GCNConv adds a self-loop of weight 1 to every node and normalises symmetrically:
//! `out_i = sum_{j -> i} w_ji / sqrt(d_i d_j) * W x_j + W x_i / d_i + b`, `d_i = 1 + sum_{j -> i} w_ji`,
//! exactly PyG's `GCNConv` with `edge_weight`. PyG names: `conv{i}.lin.weight`, `conv{i}.bias`.
//! Inputs are expected without self-loops (the graph types guarantee it).

use tch::{nn, nn::Module, Tensor};

use super::edges::Edges;
use super::init::glorot_linear_no_bias;
use super::published::Convolution;
use super::scatter::scatter_sum;
use super::weights::ExpectedTensor;

/// The symmetric normalisation coefficients, shared by every layer of one forward pass.
pub struct GcnNorm {
    /// `w_ji / sqrt(d_i d_j)` per edge, `[E]`.
    pub edge: Tensor,
    /// `1 / d_i` per node (the self-loop's coefficient), `[N]`.
    pub self_loop: Tensor,
}

impl GcnNorm {
    pub fn new(edges: &Edges, kind: tch::Kind) -> GcnNorm {
        let device = edges.src.device();
        let e = edges.src.size()[0];
        let weight = match &edges.weight {
            Some(w) => w.shallow_clone(),
            None => Tensor::ones([e], (kind, device)),
        };
        let degree = scatter_sum(&weight, &edges.dst, edges.num_nodes) + 1.0;
        let inv_sqrt = degree.rsqrt();
        let edge = inv_sqrt.index_select(0, &edges.src) * weight * inv_sqrt.index_select(0, &edges.dst);
        GcnNorm { edge, self_loop: degree.reciprocal() }
    }
}

#[derive(Debug)]
pub struct GcnConv {
    pub lin: nn::Linear,
    pub bias: Tensor,
}

impl GcnConv {
    pub fn new(p: &nn::Path, in_dim: i64, out_dim: i64) -> GcnConv {
        GcnConv { lin: glorot_linear_no_bias(p / "lin", in_dim, out_dim), bias: p.zeros("bias", &[out_dim]) }
    }

    pub fn forward(&self, x: &Tensor, edges: &Edges, norm: &GcnNorm) -> Tensor {
        let xw = self.lin.forward(x);
        let messages = xw.index_select(0, &edges.src) * norm.edge.unsqueeze(1);
        // Messages added onto the self-loop term and bias: no zero fill, no extra sums.
        (&xw * norm.self_loop.unsqueeze(1) + &self.bias).index_add(0, &edges.dst, &messages)
    }
}

impl Convolution for GcnConv {
    type Prepared = GcnNorm;
    fn new(p: &nn::Path, in_dim: i64, out_dim: i64) -> GcnConv {
        GcnConv::new(p, in_dim, out_dim)
    }
    fn prepare(edges: &Edges, kind: tch::Kind) -> GcnNorm {
        GcnNorm::new(edges, kind)
    }
    fn forward(&self, x: &Tensor, edges: &Edges, norm: &GcnNorm) -> Tensor {
        GcnConv::forward(self, x, edges, norm)
    }
    fn expected(prefix: &str, in_dim: usize, out_dim: usize) -> Vec<ExpectedTensor> {
        vec![
            ExpectedTensor::param(&format!("{prefix}.lin.weight"), &[out_dim, in_dim]),
            ExpectedTensor::param(&format!("{prefix}.bias"), &[out_dim]),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_support::{assert_close, set, symmetric_weights, TinyBatch};
    use tch::{Device, Kind};

    fn conv(vs: &nn::VarStore) -> GcnConv {
        let c = GcnConv::new(&(vs.root() / "conv1"), 1, 1);
        set(&c.lin.ws, &[1.0]);
        set(&c.bias, &[0.25]);
        c
    }

    #[test]
    fn gcn_conv_normalises_symmetrically_with_self_loops() {
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = conv(&vs);
        let g = TinyBatch::path3();
        let edges = Edges::new(&g.input());
        let out = conv.forward(&g.x, &edges, &GcnNorm::new(&edges, Kind::Float));
        // degrees with self-loops: 2, 3, 2
        let s6 = 6f64.sqrt();
        assert_close(
            &out,
            &[1.0 / 2.0 + 2.0 / s6 + 0.25, 2.0 / 3.0 + 1.0 / s6 + 3.0 / s6 + 0.25, 3.0 / 2.0 + 2.0 / s6 + 0.25],
            1e-6,
        );
    }

    #[test]
    fn gcn_conv_uses_edge_weights_in_degrees_and_messages() {
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = conv(&vs);
        let g = TinyBatch::path3();
        let w = symmetric_weights(&[0.5, 2.0]);
        let edges = Edges::new(&g.input().with_edge_weight(&w));
        let out = conv.forward(&g.x, &edges, &GcnNorm::new(&edges, Kind::Float));
        // weighted degrees with self-loops: 1.5, 3.5, 3
        let (d0, d1, d2) = (1.5f64, 3.5f64, 3.0f64);
        assert_close(
            &out,
            &[
                1.0 / d0 + 0.5 * 2.0 / (d0 * d1).sqrt() + 0.25,
                2.0 / d1 + 0.5 * 1.0 / (d0 * d1).sqrt() + 2.0 * 3.0 / (d1 * d2).sqrt() + 0.25,
                3.0 / d2 + 2.0 * 2.0 / (d1 * d2).sqrt() + 0.25,
            ],
            1e-6,
        );
    }
}
