//! PyG's `GATConv` with several heads (Velickovic et al.), as `torch_geometric.nn.models.GAT`
//! builds it: `z = W x` split into H heads of C channels; per head the score of edge `j -> i`
//! is `LeakyReLU_0.2(a_src . z_j + a_dst . z_i)`, softmaxed over the edges entering `i` with a
//! self-loop added; the heads' outputs are concatenated (`[N, H C]`) or averaged (`[N, C]`),
//! then the bias is added.
//!
//! Edge weights scale each softmax term before normalising, as in [`super::gat`], so an edge of
//! weight 0 is an absent edge. PyG names: `lin.weight` `[H C, in]`, `att_src` and `att_dst`
//! `[1, H, C]`, `bias` `[H C]` (concatenated) or `[C]` (averaged).

use tch::{nn, nn::Module, Kind, Tensor};

use super::gat::EdgesWithSelfLoops;
use super::init::{glorot, glorot_linear_no_bias};
use super::scatter::{scatter_sum, segment_softmax, weighted_segment_softmax};
use super::weights::ExpectedTensor;

const NEGATIVE_SLOPE: f64 = 0.2;

#[derive(Debug)]
pub struct MultiHeadGatConv {
    pub lin: nn::Linear,
    pub att_src: Tensor,
    pub att_dst: Tensor,
    pub bias: Tensor,
    pub heads: i64,
    pub channels: i64,
    pub concat: bool,
}

impl MultiHeadGatConv {
    pub fn new(p: &nn::Path, in_dim: i64, heads: i64, channels: i64, concat: bool) -> MultiHeadGatConv {
        let out = if concat { heads * channels } else { channels };
        MultiHeadGatConv {
            lin: glorot_linear_no_bias(p / "lin", in_dim, heads * channels),
            att_src: p.var("att_src", &[1, heads, channels], glorot(heads, channels)),
            att_dst: p.var("att_dst", &[1, heads, channels], glorot(heads, channels)),
            bias: p.zeros("bias", &[out]),
            heads,
            channels,
            concat,
        }
    }

    pub fn expected_tensors(prefix: &str, in_dim: usize, heads: usize, channels: usize, concat: bool) -> Vec<ExpectedTensor> {
        let out = if concat { heads * channels } else { channels };
        vec![
            ExpectedTensor::param(&format!("{prefix}.lin.weight"), &[heads * channels, in_dim]),
            ExpectedTensor::param(&format!("{prefix}.att_src"), &[1, heads, channels]),
            ExpectedTensor::param(&format!("{prefix}.att_dst"), &[1, heads, channels]),
            ExpectedTensor::param(&format!("{prefix}.bias"), &[out]),
        ]
    }

    pub fn forward(&self, x: &Tensor, edges: &EdgesWithSelfLoops) -> Tensor {
        let (h, c) = (self.heads, self.channels);
        let z = self.lin.forward(x).view([-1, h, c]);
        let score_src = (&z * &self.att_src).sum_dim_intlist(-1, false, None::<Kind>);
        let score_dst = (&z * &self.att_dst).sum_dim_intlist(-1, false, None::<Kind>);
        let raw = score_src.index_select(0, &edges.src) + score_dst.index_select(0, &edges.dst);
        let leaky = raw.maximum(&(&raw * NEGATIVE_SLOPE));
        // Each (node, head) pair is its own softmax group: flatten heads into the group index.
        let device = x.device();
        let group = (edges.dst.unsqueeze(1) * h + Tensor::arange(h, (Kind::Int64, device)).unsqueeze(0)).view([-1]);
        let groups = edges.num_nodes * h;
        let scores = leaky.view([-1]);
        let alpha = match &edges.weight {
            Some(w) => weighted_segment_softmax(&scores, &w.unsqueeze(1).expand([-1, h], false).reshape([-1]), &group, groups),
            None => segment_softmax(&scores, &group, groups),
        }
        .view([-1, h, 1]);
        let messages = z.index_select(0, &edges.src) * alpha;
        let out = scatter_sum(&messages, &edges.dst, edges.num_nodes);
        let out = if self.concat { out.view([-1, h * c]) } else { out.mean_dim(1, false, None::<Kind>) };
        out + &self.bias
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::edges::Edges;
    use crate::models::gat::GatConv;
    use crate::models::test_support::{set, values, TinyBatch};
    use tch::Device;

    /// One head is the single-head GATConv of the published GAT, weights for weights.
    #[test]
    fn one_head_equals_the_single_head_conv() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _seed = crate::rng::seed_torch(4);
        let multi = MultiHeadGatConv::new(&(vs.root() / "m"), 1, 1, 3, true);
        let single = GatConv::new(&(vs.root() / "s"), 1, 3);
        for (a, b) in [(&multi.lin.ws, &single.lin.ws), (&multi.att_src, &single.att_src), (&multi.att_dst, &single.att_dst)] {
            set(b, &values(a));
        }
        set(&multi.bias, &[0.1, -0.2, 0.3]);
        set(&single.bias, &[0.1, -0.2, 0.3]);
        let g = TinyBatch::path3();
        let w = crate::models::test_support::symmetric_weights(&[0.5, 2.0]);
        for input in [g.input(), g.input().with_edge_weight(&w)] {
            let looped = EdgesWithSelfLoops::new(&Edges::new(&input), Kind::Float);
            let (a, b) = (values(&multi.forward(&g.x, &looped)), values(&single.forward(&g.x, &looped)));
            assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-6), "{a:?} vs {b:?}");
        }
    }

    /// Two heads with the same weights give the same output twice (concatenated) or once
    /// (averaged).
    #[test]
    fn heads_are_concatenated_or_averaged() {
        let vs = nn::VarStore::new(Device::Cpu);
        let g = TinyBatch::path3();
        let looped = EdgesWithSelfLoops::new(&Edges::new(&g.input()), Kind::Float);
        let build = |name: &str, concat: bool| {
            let conv = MultiHeadGatConv::new(&(vs.root() / name), 1, 2, 1, concat);
            set(&conv.lin.ws, &[1.0, 1.0]);
            set(&conv.att_src, &[-1.0, -1.0]);
            set(&conv.att_dst, &[1.0, 1.0]);
            conv
        };
        let concat = values(&build("c", true).forward(&g.x, &looped));
        let mean = values(&build("m", false).forward(&g.x, &looped));
        assert_eq!(concat.len(), 6);
        for i in 0..3 {
            assert!((concat[2 * i] - concat[2 * i + 1]).abs() < 1e-6 && (concat[2 * i] - mean[i]).abs() < 1e-6);
        }
    }
}
