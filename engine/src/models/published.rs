//! The layer loop of the classifiers published with G-Cleaner, one for all four convolutions:
//! L blocks of convolution -> ReLU -> BatchNorm1d (GIN, GraphSAGE) or convolution -> row-wise
//! L2 normalisation -> ReLU (GCN, GAT). Block `i` (1-based) holds `conv{i}.*` and, with batch
//! norm, `bn{i}.*`, as the reference code names them.

use tch::{nn, Kind, Tensor};

use super::batch_norm::BatchNorm1d;
use super::edges::Edges;
use super::normalize::l2_normalize_rows;
use super::weights::ExpectedTensor;
use super::{batch_norm, Arch, ModelSpec};

/// One published convolution.
pub trait Convolution: std::fmt::Debug + Sized {
    /// What the convolution computes once per forward pass and shares between its layers
    /// (normalisation coefficients, self-loops).
    type Prepared;
    fn new(p: &nn::Path, in_dim: i64, out_dim: i64) -> Self;
    fn prepare(edges: &Edges, kind: Kind) -> Self::Prepared;
    fn forward(&self, x: &Tensor, edges: &Edges, prepared: &Self::Prepared) -> Tensor;
    /// The convolution's tensors under `prefix` (`conv{i}`), by name and shape.
    fn expected(prefix: &str, in_dim: usize, out_dim: usize) -> Vec<ExpectedTensor>;
}

/// What follows each convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockNorm {
    /// ReLU, then BatchNorm1d (`bn{i}`).
    Batch,
    /// Row-wise L2 normalisation, then ReLU.
    L2,
}

/// The blocks' outputs from any block on: what the model needs of its body.
pub trait LayerStack: std::fmt::Debug {
    /// The outputs `[N, h]` of `blocks`, in order, with `x` the input of the first of them.
    fn forward_layers(&self, x: &Tensor, edges: &Edges, train: bool, blocks: std::ops::Range<usize>) -> Vec<Tensor>;
    /// The concrete stack, for the paths written for one architecture (the fused GIN training).
    fn as_any(&self) -> &dyn std::any::Any;
}

#[derive(Debug)]
pub struct PublishedGnn<C> {
    pub convs: Vec<C>,
    /// One per conv with [`BlockNorm::Batch`], none with [`BlockNorm::L2`].
    pub bns: Vec<BatchNorm1d>,
    norm: BlockNorm,
}

impl<C: Convolution> PublishedGnn<C> {
    /// The blocks of `spec`, variables created block by block (conv before its batch norm), the
    /// order the reference code draws their initial values in.
    pub fn new(p: &nn::Path, spec: &ModelSpec, norm: BlockNorm) -> PublishedGnn<C> {
        let h = spec.hidden as i64;
        let mut convs = Vec::with_capacity(spec.num_layers);
        let mut bns = Vec::new();
        for i in 1..=spec.num_layers {
            let in_dim = if i == 1 { spec.in_features as i64 } else { h };
            convs.push(C::new(&(p / format!("conv{i}")), in_dim, h));
            if norm == BlockNorm::Batch {
                bns.push(BatchNorm1d::new(&(p / format!("bn{i}")), h));
            }
        }
        PublishedGnn { convs, bns, norm }
    }
}

impl<C: Convolution + 'static> LayerStack for PublishedGnn<C> {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn forward_layers(&self, x: &Tensor, edges: &Edges, train: bool, blocks: std::ops::Range<usize>) -> Vec<Tensor> {
        let prepared = C::prepare(edges, x.kind());
        let mut outputs: Vec<Tensor> = Vec::with_capacity(self.convs.len());
        for i in blocks.start..blocks.end.min(self.convs.len()) {
            let input = outputs.last().unwrap_or(x);
            let h = self.convs[i].forward(input, edges, &prepared);
            let out = match self.norm {
                BlockNorm::Batch => self.bns[i].forward_t(&h.relu(), train),
                BlockNorm::L2 => l2_normalize_rows(&h).relu(),
            };
            outputs.push(out);
        }
        outputs
    }
}

/// The published body `spec.arch` names, with the block norm its reference code uses.
pub fn layer_stack(p: &nn::Path, spec: &ModelSpec) -> Box<dyn LayerStack> {
    use super::{gat::GatConv, gcn::GcnConv, gin::GinConv, sage::SageConv};
    match spec.arch {
        Arch::Gin => Box::new(PublishedGnn::<GinConv>::new(p, spec, BlockNorm::Batch)),
        Arch::Gcn => Box::new(PublishedGnn::<GcnConv>::new(p, spec, BlockNorm::L2)),
        Arch::Gat => Box::new(PublishedGnn::<GatConv>::new(p, spec, BlockNorm::L2)),
        Arch::Sage => Box::new(PublishedGnn::<SageConv>::new(p, spec, BlockNorm::Batch)),
    }
}

/// The tensors of [`layer_stack`]'s blocks in a weights file, by name and shape, block by block.
pub fn expected_tensors(spec: &ModelSpec) -> Vec<ExpectedTensor> {
    use super::{gat::GatConv, gcn::GcnConv, gin::GinConv, sage::SageConv};
    match spec.arch {
        Arch::Gin => blocks_expected::<GinConv>(spec, BlockNorm::Batch),
        Arch::Gcn => blocks_expected::<GcnConv>(spec, BlockNorm::L2),
        Arch::Gat => blocks_expected::<GatConv>(spec, BlockNorm::L2),
        Arch::Sage => blocks_expected::<SageConv>(spec, BlockNorm::Batch),
    }
}

fn blocks_expected<C: Convolution>(spec: &ModelSpec, norm: BlockNorm) -> Vec<ExpectedTensor> {
    let h = spec.hidden;
    let mut out = Vec::new();
    for i in 1..=spec.num_layers {
        let in_dim = if i == 1 { spec.in_features } else { h };
        out.extend(C::expected(&format!("conv{i}"), in_dim, h));
        if norm == BlockNorm::Batch {
            out.extend(batch_norm::expected_tensors(&format!("bn{i}"), h));
        }
    }
    out
}
