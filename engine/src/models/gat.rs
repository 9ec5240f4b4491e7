//! GAT (Velickovic et al.) as published with G-Cleaner: L x [GATConv (one head) -> row-wise L2
//! normalise -> ReLU].
//!
//! GATConv: `z = W x`; score of edge `j -> i` is `LeakyReLU_0.2(a_src . z_j + a_dst . z_i)`;
//! softmax over the edges entering `i`, self-loop included, each term scaled by the edge weight
//! before normalising (`alpha_ji = w_ji exp(e_ji) / sum_k w_ki exp(e_ki)`, self-loops weigh 1);
//! `out_i = sum_j alpha_ji z_j + b`. At w = 1 this is PyG's `GATConv(heads=1)`, and an edge of
//! weight 0 is exactly an absent edge, which the trigger montage relies on. PyG names: `conv{i}.lin.weight`, `conv{i}.att_src`,
//! `conv{i}.att_dst` (both `[1, 1, h]`), `conv{i}.bias`.

use tch::{nn, nn::Module, Kind, Tensor};

use super::edges::Edges;
use super::init::{glorot, glorot_linear_no_bias};
use super::published::Convolution;
use super::scatter::{scatter_sum, segment_softmax, weighted_segment_softmax};
use super::weights::ExpectedTensor;

const NEGATIVE_SLOPE: f64 = 0.2;

/// The edge list with one self-loop per node appended, shared by every layer of a forward pass.
pub struct EdgesWithSelfLoops {
    pub src: Tensor,
    pub dst: Tensor,
    pub weight: Option<Tensor>,
    pub num_nodes: i64,
}

impl EdgesWithSelfLoops {
    pub fn new(edges: &Edges, kind: Kind) -> EdgesWithSelfLoops {
        let device = edges.src.device();
        let nodes = Tensor::arange(edges.num_nodes, (Kind::Int64, device));
        let weight =
            edges.weight.as_ref().map(|w| Tensor::cat(&[w.shallow_clone(), Tensor::ones([edges.num_nodes], (kind, device))], 0));
        EdgesWithSelfLoops {
            src: Tensor::cat(&[&edges.src, &nodes], 0),
            dst: Tensor::cat(&[&edges.dst, &nodes], 0),
            weight,
            num_nodes: edges.num_nodes,
        }
    }
}

#[derive(Debug)]
pub struct GatConv {
    pub lin: nn::Linear,
    pub att_src: Tensor,
    pub att_dst: Tensor,
    pub bias: Tensor,
}

impl GatConv {
    pub fn new(p: &nn::Path, in_dim: i64, out_dim: i64) -> GatConv {
        GatConv {
            lin: glorot_linear_no_bias(p / "lin", in_dim, out_dim),
            att_src: p.var("att_src", &[1, 1, out_dim], glorot(1, out_dim)),
            att_dst: p.var("att_dst", &[1, 1, out_dim], glorot(1, out_dim)),
            bias: p.zeros("bias", &[out_dim]),
        }
    }

    /// Attention coefficients per edge `[E + N]`, after the softmax and the edge weight.
    pub fn attention(&self, z: &Tensor, edges: &EdgesWithSelfLoops) -> Tensor {
        let h = z.size()[1];
        let score_src = (z * self.att_src.view([1, h])).sum_dim_intlist(-1, false, None::<Kind>);
        let score_dst = (z * self.att_dst.view([1, h])).sum_dim_intlist(-1, false, None::<Kind>);
        let raw = score_src.index_select(0, &edges.src) + score_dst.index_select(0, &edges.dst);
        let leaky = raw.maximum(&(&raw * NEGATIVE_SLOPE));
        match &edges.weight {
            Some(w) => weighted_segment_softmax(&leaky, w, &edges.dst, edges.num_nodes),
            None => segment_softmax(&leaky, &edges.dst, edges.num_nodes),
        }
    }

    pub fn forward(&self, x: &Tensor, edges: &EdgesWithSelfLoops) -> Tensor {
        let z = self.lin.forward(x);
        let alpha = self.attention(&z, edges);
        let messages = z.index_select(0, &edges.src) * alpha.unsqueeze(1);
        scatter_sum(&messages, &edges.dst, edges.num_nodes) + &self.bias
    }
}

impl Convolution for GatConv {
    type Prepared = EdgesWithSelfLoops;
    fn new(p: &nn::Path, in_dim: i64, out_dim: i64) -> GatConv {
        GatConv::new(p, in_dim, out_dim)
    }
    fn prepare(edges: &Edges, kind: Kind) -> EdgesWithSelfLoops {
        EdgesWithSelfLoops::new(edges, kind)
    }
    fn forward(&self, x: &Tensor, _edges: &Edges, looped: &EdgesWithSelfLoops) -> Tensor {
        GatConv::forward(self, x, looped)
    }
    fn expected(prefix: &str, in_dim: usize, out_dim: usize) -> Vec<ExpectedTensor> {
        vec![
            ExpectedTensor::param(&format!("{prefix}.lin.weight"), &[out_dim, in_dim]),
            ExpectedTensor::param(&format!("{prefix}.att_src"), &[1, 1, out_dim]),
            ExpectedTensor::param(&format!("{prefix}.att_dst"), &[1, 1, out_dim]),
            ExpectedTensor::param(&format!("{prefix}.bias"), &[out_dim]),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_support::{assert_close, set, symmetric_weights, TinyBatch};
    use tch::Device;

    /// z = x; score(j -> i) = LeakyReLU_0.2(-z_j + z_i); bias 0.1.
    fn conv(vs: &nn::VarStore) -> GatConv {
        let c = GatConv::new(&(vs.root() / "conv1"), 1, 1);
        set(&c.lin.ws, &[1.0]);
        set(&c.att_src, &[-1.0]);
        set(&c.att_dst, &[1.0]);
        set(&c.bias, &[0.1]);
        c
    }

    /// sum_k w_k exp(s_k) v_k / sum_k w_k exp(s_k)
    fn attend(scores: &[f64], weights: &[f64], values: &[f64]) -> f64 {
        let total: f64 = scores.iter().zip(weights).map(|(s, w)| w * s.exp()).sum();
        scores.iter().zip(weights).zip(values).map(|((s, w), v)| w * s.exp() / total * v).sum()
    }

    #[test]
    fn gat_conv_softmaxes_leaky_scores_over_neighbours_and_self() {
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = conv(&vs);
        let g = TinyBatch::path3();
        let edges = Edges::new(&g.input());
        let out = conv.forward(&g.x, &EdgesWithSelfLoops::new(&edges, Kind::Float));
        // node 0 <- {1: -2 + 1 = -1 -> -0.2, self: 0}
        // node 1 <- {0: -1 + 2 = 1, 2: -3 + 2 = -1 -> -0.2, self: 0}
        // node 2 <- {1: -2 + 3 = 1, self: 0}
        assert_close(
            &out,
            &[
                attend(&[-0.2, 0.0], &[1.0, 1.0], &[2.0, 1.0]) + 0.1,
                attend(&[1.0, -0.2, 0.0], &[1.0, 1.0, 1.0], &[1.0, 3.0, 2.0]) + 0.1,
                attend(&[1.0, 0.0], &[1.0, 1.0], &[2.0, 3.0]) + 0.1,
            ],
            1e-6,
        );
    }

    #[test]
    fn gat_conv_weights_the_softmax_terms_by_edge_weights() {
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = conv(&vs);
        let g = TinyBatch::path3();
        let w = symmetric_weights(&[0.5, 2.0]);
        let edges = Edges::new(&g.input().with_edge_weight(&w));
        let out = conv.forward(&g.x, &EdgesWithSelfLoops::new(&edges, Kind::Float));
        assert_close(
            &out,
            &[
                attend(&[-0.2, 0.0], &[0.5, 1.0], &[2.0, 1.0]) + 0.1,
                attend(&[1.0, -0.2, 0.0], &[0.5, 2.0, 1.0], &[1.0, 3.0, 2.0]) + 0.1,
                attend(&[1.0, 0.0], &[2.0, 1.0], &[2.0, 3.0]) + 0.1,
            ],
            1e-6,
        );
    }
}
