//! PyTorch Geometric's `BasicGNN` (`torch_geometric.nn.models.GIN`, `GCN`, `GAT`, `GraphSAGE`),
//! the node-level part of a `gcleaner.model/v2` model, at `gnn.*`.
//!
//! As in PyG's `basic_gnn.py`: L convs (the first F -> h, the others h -> h; the last h ->
//! out_channels when `out_channels` is set and `jk` is not); after every conv but the last, and
//! after the last too when `jk` is set, BatchNorm (if `norm`) and ReLU (in `act_first` order);
//! then jumping knowledge over the blocks' outputs (`cat`, `max`, or `last`) and, with `jk`, a
//! final Linear `lin` to out_channels. Convs: GIN = `GINConv(MLP([in, out, out]))` with the same
//! norm, GCN = `GCNConv`, GAT = `GATConv(heads, concat)`, GraphSAGE = `SAGEConv` (mean).
//!
//! PyG names below `gnn`: `convs.{i}.*`, `norms.{i}.module.*`, `lin.*`.

use tch::{nn, nn::Module, Tensor};

use super::batch_norm::BatchNorm1d;
use super::edges::Edges;
use super::gat::EdgesWithSelfLoops;
use super::gat_heads::MultiHeadGatConv;
use super::gcn::{GcnConv, GcnNorm};
use super::init::torch_linear;
use super::mlp::{norm_act, pyg_batch_norm, pyg_batch_norm_tensors, Mlp, MlpLayout};
use super::pyg_spec::{JumpingKnowledge, PygOptions};
use super::sage::{mean_normaliser, SageConv};
use super::weights::ExpectedTensor;
use super::{Arch, ModelSpec};

/// The module path of the `BasicGNN` inside a v2 model.
pub const GNN: &str = "gnn";

/// PyG's `GINConv(nn=MLP([in, out, out]))`: `nn((1 + eps) x_i + sum_{j -> i} w_ji x_j)`.
#[derive(Debug)]
pub struct PygGinConv {
    /// A buffer, or a trained parameter with `train_eps`.
    pub eps: Tensor,
    pub nn: Mlp,
}

impl PygGinConv {
    fn forward_t(&self, x: &Tensor, edges: &Edges, train: bool) -> Tensor {
        let combined = edges.add_weighted_sum(&x.addcmul(x, &self.eps), x);
        self.nn.forward_t(&combined, train)
    }
}

#[derive(Debug)]
pub enum PygConv {
    Gin(PygGinConv),
    Gcn(GcnConv),
    Gat(MultiHeadGatConv),
    Sage(SageConv),
}

/// Per-forward edge data the convs share.
enum Prepared {
    Plain,
    Gcn(GcnNorm),
    Gat(EdgesWithSelfLoops),
    Sage(Tensor),
}

/// The shapes of one `BasicGNN`, derived from the spec as PyG's constructor derives them.
struct Layout<'a> {
    spec: &'a ModelSpec,
    pyg: &'a PygOptions,
}

impl Layout<'_> {
    fn layers(&self) -> usize {
        self.spec.num_layers
    }

    fn conv_in(&self, i: usize) -> usize {
        if i == 0 {
            self.spec.in_features
        } else {
            self.spec.hidden
        }
    }

    /// Whether conv `i` maps straight to out_channels (PyG's `_is_conv_to_out`).
    fn conv_to_out(&self, i: usize) -> bool {
        i + 1 == self.layers() && self.pyg.out_channels.is_some() && self.pyg.jk.is_none()
    }

    fn conv_out(&self, i: usize) -> usize {
        if self.conv_to_out(i) {
            self.pyg.gnn_out(self.spec.hidden)
        } else {
            self.spec.hidden
        }
    }

    /// Whether block `i` applies its norm and ReLU (all but the last without `jk`).
    fn activated(&self, i: usize) -> bool {
        i + 1 < self.layers() || self.pyg.jk.is_some()
    }

    /// GAT: heads, channels per head, and whether they are concatenated, for conv `i`.
    fn gat_heads(&self, i: usize) -> (usize, usize, bool) {
        let concat = self.pyg.concat && !self.conv_to_out(i);
        let heads = self.pyg.heads;
        let out = self.conv_out(i);
        (heads, if concat { out / heads } else { out }, concat)
    }

    fn gin_mlp(&self, i: usize) -> [usize; 3] {
        [self.conv_in(i), self.conv_out(i), self.conv_out(i)]
    }

    fn mlp_layout<'c>(&self, channels: &'c [usize]) -> MlpLayout<'c> {
        MlpLayout { channels, norm: self.pyg.norm, plain_last: true, act_first: self.pyg.act_first, bias: true }
    }

    /// Input width of the final `lin` (with `jk`).
    fn lin_in(&self) -> usize {
        match self.pyg.jk {
            Some(JumpingKnowledge::Cat) => self.layers() * self.spec.hidden,
            _ => self.spec.hidden,
        }
    }
}

#[derive(Debug)]
pub struct BasicGnn {
    pub arch: Arch,
    pub convs: Vec<PygConv>,
    /// Per block: its norm, when it has one.
    pub norms: Vec<Option<BatchNorm1d>>,
    /// Per block: whether it applies norm and ReLU.
    activated: Vec<bool>,
    act_first: bool,
    jk: Option<JumpingKnowledge>,
    pub lin: Option<nn::Linear>,
    hidden: i64,
}

impl BasicGnn {
    /// Built at `p / "gnn"`; `spec.pyg` must be set (the caller matched on it).
    pub fn new(p: &nn::Path, spec: &ModelSpec, pyg: &PygOptions) -> BasicGnn {
        let layout = Layout { spec, pyg };
        let p = p / GNN;
        let mut convs = Vec::with_capacity(layout.layers());
        let mut norms = Vec::with_capacity(layout.layers());
        for i in 0..layout.layers() {
            let at = &p / "convs" / i;
            let (d_in, d_out) = (layout.conv_in(i) as i64, layout.conv_out(i) as i64);
            convs.push(match spec.arch {
                Arch::Gin => {
                    let eps = if pyg.train_eps { at.zeros("eps", &[1]) } else { at.zeros_no_train("eps", &[1]) };
                    let channels = layout.gin_mlp(i);
                    PygConv::Gin(PygGinConv { eps, nn: Mlp::new(&(&at / "nn"), layout.mlp_layout(&channels)) })
                }
                Arch::Gcn => PygConv::Gcn(GcnConv::new(&at, d_in, d_out)),
                Arch::Gat => {
                    let (heads, channels, concat) = layout.gat_heads(i);
                    PygConv::Gat(MultiHeadGatConv::new(&at, d_in, heads as i64, channels as i64, concat))
                }
                Arch::Sage => PygConv::Sage(SageConv::new(&at, d_in, d_out)),
            });
            let norm = if layout.activated(i) { pyg_batch_norm(&(&p / "norms" / i), pyg.norm, spec.hidden as i64) } else { None };
            norms.push(norm);
        }
        let lin = pyg.jk.map(|_| torch_linear(&p / "lin", layout.lin_in() as i64, pyg.gnn_out(spec.hidden) as i64));
        BasicGnn {
            arch: spec.arch,
            convs,
            norms,
            activated: (0..layout.layers()).map(|i| layout.activated(i)).collect(),
            act_first: pyg.act_first,
            jk: pyg.jk,
            lin,
            hidden: spec.hidden as i64,
        }
    }

    /// Every tensor of the `BasicGNN`, PyG names, in module order.
    pub fn expected_tensors(spec: &ModelSpec, pyg: &PygOptions) -> Vec<ExpectedTensor> {
        let layout = Layout { spec, pyg };
        let mut out = Vec::new();
        for i in 0..layout.layers() {
            let at = format!("{GNN}.convs.{i}");
            let (d_in, d_out) = (layout.conv_in(i), layout.conv_out(i));
            match spec.arch {
                Arch::Gin => {
                    out.push(ExpectedTensor::param(&format!("{at}.eps"), &[1]));
                    out.extend(layout.mlp_layout(&layout.gin_mlp(i)).expected_tensors(&format!("{at}.nn")));
                }
                Arch::Gcn => {
                    out.push(ExpectedTensor::param(&format!("{at}.lin.weight"), &[d_out, d_in]));
                    out.push(ExpectedTensor::param(&format!("{at}.bias"), &[d_out]));
                }
                Arch::Gat => {
                    let (heads, channels, concat) = layout.gat_heads(i);
                    out.extend(MultiHeadGatConv::expected_tensors(&at, d_in, heads, channels, concat));
                }
                Arch::Sage => {
                    out.push(ExpectedTensor::param(&format!("{at}.lin_l.weight"), &[d_out, d_in]));
                    out.push(ExpectedTensor::param(&format!("{at}.lin_l.bias"), &[d_out]));
                    out.push(ExpectedTensor::param(&format!("{at}.lin_r.weight"), &[d_out, d_in]));
                }
            }
        }
        for i in (0..layout.layers()).filter(|&i| layout.activated(i)) {
            out.extend(pyg_batch_norm_tensors(&format!("{GNN}.norms.{i}"), pyg.norm, spec.hidden));
        }
        if pyg.jk.is_some() {
            let out_dim = pyg.gnn_out(spec.hidden);
            out.push(ExpectedTensor::param(&format!("{GNN}.lin.weight"), &[out_dim, layout.lin_in()]));
            out.push(ExpectedTensor::param(&format!("{GNN}.lin.bias"), &[out_dim]));
        }
        out
    }

    fn prepare(&self, edges: &Edges, x: &Tensor) -> Prepared {
        match self.arch {
            Arch::Gin => Prepared::Plain,
            Arch::Gcn => Prepared::Gcn(GcnNorm::new(edges, x.kind())),
            Arch::Gat => Prepared::Gat(EdgesWithSelfLoops::new(edges, x.kind())),
            Arch::Sage => Prepared::Sage(mean_normaliser(edges, x.kind())),
        }
    }

    fn block(&self, i: usize, x: &Tensor, edges: &Edges, prepared: &Prepared, train: bool) -> Tensor {
        let out = match (&self.convs[i], prepared) {
            (PygConv::Gin(conv), _) => conv.forward_t(x, edges, train),
            (PygConv::Gcn(conv), Prepared::Gcn(norm)) => conv.forward(x, edges, norm),
            (PygConv::Gat(conv), Prepared::Gat(looped)) => conv.forward(x, looped),
            (PygConv::Sage(conv), Prepared::Sage(inv_count)) => conv.forward(x, edges, inv_count),
            _ => unreachable!("prepare matches the conv type"),
        };
        if self.activated[i] {
            norm_act(&out, self.norms[i].as_ref(), self.act_first, train)
        } else {
            out
        }
    }

    /// Whether the readout needs every block's output (jumping knowledge by `cat` or `max`).
    fn keeps_history(&self) -> bool {
        matches!(self.jk, Some(JumpingKnowledge::Cat | JumpingKnowledge::Max))
    }

    /// The state after the first `blocks` blocks in eval mode: `x` for none; else the last
    /// block's output, or with `cat`/`max` jumping knowledge every block's output side by side
    /// (`[N, blocks * h]`), which the readout needs. The caller decides about gradients.
    pub fn prefix(&self, x: &Tensor, edges: &Edges, blocks: usize) -> Tensor {
        if blocks == 0 {
            return x.shallow_clone();
        }
        let prepared = self.prepare(edges, x);
        let mut outputs: Vec<Tensor> = Vec::with_capacity(blocks);
        for i in 0..blocks {
            let out = self.block(i, outputs.last().unwrap_or(x), edges, &prepared, false);
            outputs.push(out);
        }
        if self.keeps_history() {
            Tensor::cat(&outputs, 1)
        } else {
            outputs.pop().expect("at least one block")
        }
    }

    /// Blocks `start..` from `state` (see [`BasicGnn::prefix`]; the raw features when `start` is
    /// 0): their outputs, and the node features the `BasicGNN` returns (after jumping
    /// knowledge and `lin`).
    pub fn forward_from(&self, state: &Tensor, start: usize, edges: &Edges, train: bool) -> (Vec<Tensor>, Tensor) {
        let history: Vec<Tensor> = if start > 0 && self.keeps_history() { state.split(self.hidden, 1) } else { Vec::new() };
        let input = history.last().unwrap_or(state);
        let prepared = self.prepare(edges, input);
        let mut outputs: Vec<Tensor> = Vec::with_capacity(self.convs.len().saturating_sub(start));
        for i in start..self.convs.len() {
            let out = self.block(i, outputs.last().unwrap_or(input), edges, &prepared, train);
            outputs.push(out);
        }
        let last = outputs.last().unwrap_or(input).shallow_clone();
        let all = || history.iter().chain(&outputs).collect::<Vec<_>>();
        let nodes = match self.jk {
            None | Some(JumpingKnowledge::Last) => last,
            Some(JumpingKnowledge::Cat) => Tensor::cat(&all(), 1),
            Some(JumpingKnowledge::Max) => Tensor::stack(&all(), -1).amax([-1i64].as_slice(), false),
        };
        let nodes = match &self.lin {
            Some(lin) => lin.forward(&nodes),
            None => nodes,
        };
        (outputs, nodes)
    }
}
