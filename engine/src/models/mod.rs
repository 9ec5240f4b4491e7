//! Graph classifiers with PyTorch Geometric parameter names, and safetensors weight I/O: the
//! four G-Cleaner classifiers (GIN, GCN, GAT, GraphSAGE; a `gcleaner.model/v1` spec) and models
//! built from PyG's own classes (a `BasicGNN`, pooling and an `MLP` or `Linear` head; a
//! `gcleaner.model/v2` spec).
//!
//! A model is a stack of conv blocks over a batch of graphs (a disjoint union with a batch
//! vector), a pooled graph embedding, and a head giving logits, then log_softmax. Node
//! features and per-edge weights are plain tensors, so gradients reach both: explainers, Grad-CAM
//! and trigger generation differentiate through them.

pub(crate) mod basic_gnn;
pub(crate) mod batch_norm;
pub(crate) mod edges;
pub(crate) mod gat;
pub(crate) mod gat_heads;
pub(crate) mod gcn;
pub(crate) mod gin;
pub(crate) mod gin_train;
pub(crate) mod head;
pub(crate) mod host;
pub(crate) mod init;
pub(crate) mod mlp;
#[cfg(test)]
mod model_tests;
pub(crate) mod normalize;
pub(crate) mod pooling;
pub(crate) mod published;
#[cfg(test)]
mod pyg_model_tests;
pub(crate) mod pyg_spec;
pub(crate) mod sage;
mod sample_fit;
pub(crate) mod scatter;
pub mod spec;
#[cfg(test)]
mod test_support;
pub mod weights;
#[cfg(test)]
mod weights_tests;

use std::path::Path;

use tch::{nn, Device, Kind, Tensor};

pub use pyg_spec::{JumpingKnowledge, MlpSpec, Norm, PygHead, PygOptions, SPEC_FORMAT_V2};
pub use sample_fit::{check_sample, check_sample_features};
pub use spec::{Arch, ModelSpec, Pooling, SPEC_FORMAT, SPEC_METADATA_KEY};
pub use weights::LoadedModel;

use crate::{Error, Result};
use edges::Edges;
use head::Head;
use published::{LayerStack, PublishedGnn};

/// One batch of graphs as the models consume it.
#[derive(Debug)]
pub struct GraphInput<'a> {
    /// Node features `[N, in_features]`, f32.
    pub x: &'a Tensor,
    /// Directed edges `[2, E]`, i64; an undirected edge appears once in each direction. Messages
    /// flow from `edge_index[0]` to `edge_index[1]`.
    pub edge_index: &'a Tensor,
    /// Per-edge weights `[E]`, f32; `None` means 1.0 everywhere. Differentiable.
    pub edge_weight: Option<&'a Tensor>,
    /// Graph index of every node `[N]`, i64, in `0..num_graphs`.
    pub batch: &'a Tensor,
    pub num_graphs: i64,
}

impl<'a> GraphInput<'a> {
    pub fn new(x: &'a Tensor, edge_index: &'a Tensor, batch: &'a Tensor, num_graphs: i64) -> GraphInput<'a> {
        GraphInput { x, edge_index, edge_weight: None, batch, num_graphs }
    }

    pub fn with_edge_weight(self, edge_weight: &'a Tensor) -> GraphInput<'a> {
        GraphInput { edge_weight: Some(edge_weight), ..self }
    }

    /// Checks kinds, shapes, devices and index ranges against a model's spec, so a bad input is
    /// an error instead of a libtorch panic inside `forward_t`. Reads the index extrema back
    /// from the device: call it once per batch, not inside a training loop.
    pub fn check(&self, spec: &ModelSpec, device: Device) -> Result<()> {
        let fail = |msg: String| Err(Error::invalid(format!("graph input: {msg}")));
        let x_size = self.x.size();
        if x_size.len() != 2 || x_size[1] != spec.in_features as i64 {
            return fail(format!("x has shape {x_size:?}, the model expects [N, {}]", spec.in_features));
        }
        if self.x.kind() != Kind::Float {
            return fail(format!("x is {:?}, expected f32", self.x.kind()));
        }
        let n = x_size[0];
        let ei_size = self.edge_index.size();
        if ei_size.len() != 2 || ei_size[0] != 2 || self.edge_index.kind() != Kind::Int64 {
            return fail(format!("edge_index must be [2, E] i64, got {ei_size:?} {:?}", self.edge_index.kind()));
        }
        let e = ei_size[1];
        if let Some(w) = self.edge_weight {
            if w.size() != [e] || w.kind() != Kind::Float {
                return fail(format!("edge_weight must be [{e}] f32, got {:?} {:?}", w.size(), w.kind()));
            }
        }
        if self.batch.size() != [n] || self.batch.kind() != Kind::Int64 {
            return fail(format!("batch must be [{n}] i64, got {:?} {:?}", self.batch.size(), self.batch.kind()));
        }
        if self.num_graphs < 1 {
            return fail(format!("num_graphs must be at least 1, got {}", self.num_graphs));
        }
        let tensors = [Some(self.x), Some(self.edge_index), self.edge_weight, Some(self.batch)];
        if tensors.iter().flatten().any(|t| t.device() != device) {
            return fail(format!("every tensor must be on the model's device {device:?}"));
        }
        if e > 0 {
            let (lo, hi) = (self.edge_index.min().int64_value(&[]), self.edge_index.max().int64_value(&[]));
            if lo < 0 || hi >= n {
                return fail(format!("edge_index refers to node {} but there are {n} nodes", if lo < 0 { lo } else { hi }));
            }
        }
        if n > 0 {
            let (lo, hi) = (self.batch.min().int64_value(&[]), self.batch.max().int64_value(&[]));
            if lo < 0 || hi >= self.num_graphs {
                return fail(format!(
                    "batch refers to graph {} but num_graphs is {}",
                    if lo < 0 { lo } else { hi },
                    self.num_graphs
                ));
            }
        }
        Ok(())
    }
}

/// Everything a forward pass exposes.
#[derive(Debug)]
pub struct ForwardOutput {
    /// The head's output `[B, C]`.
    pub logits: Tensor,
    /// `log_softmax(logits)` `[B, C]`.
    pub log_probs: Tensor,
    /// Each conv block's node feature map `[N, h]`, first to last (after the block's
    /// activation and BatchNorm or normalisation; a PyG model's last block without jumping
    /// knowledge has neither, as in PyG).
    pub layer_outputs: Vec<Tensor>,
    /// Pooled graph embedding `[B, d]`, the head's input (fc1's, or a PyG head's).
    pub embedding: Tensor,
}

#[derive(Debug)]
enum Body {
    /// GIN, GCN, GAT or GraphSAGE as published with G-Cleaner.
    Published(Box<dyn LayerStack>),
    Pyg(basic_gnn::BasicGnn),
}

impl Body {
    fn new(p: &nn::Path, spec: &ModelSpec) -> Body {
        if let Some(pyg) = &spec.pyg {
            return Body::Pyg(basic_gnn::BasicGnn::new(p, spec, pyg));
        }
        Body::Published(published::layer_stack(p, spec))
    }

    /// The state entering block `blocks` in eval mode (see [`GnnModel::frozen_prefix`]).
    fn prefix(&self, x: &Tensor, edges: &Edges, blocks: usize) -> Tensor {
        match self {
            Body::Published(m) => {
                m.forward_layers(x, edges, false, 0..blocks).into_iter().last().unwrap_or_else(|| x.shallow_clone())
            }
            Body::Pyg(m) => m.prefix(x, edges, blocks),
        }
    }

    /// Blocks `start..num_layers` from `state`: their outputs and the node features that are
    /// pooled.
    fn forward_from(&self, state: &Tensor, start: usize, num_layers: usize, edges: &Edges, train: bool) -> (Vec<Tensor>, Tensor) {
        match self {
            Body::Published(m) => {
                let outputs = m.forward_layers(state, edges, train, start..num_layers);
                let last = outputs.last().unwrap_or(state).shallow_clone();
                (outputs, last)
            }
            Body::Pyg(m) => m.forward_from(state, start, edges, train),
        }
    }
}

/// What turns the pooled embedding into logits.
#[derive(Debug)]
enum Classifier {
    /// fc1 -> ReLU -> fc2 (v1).
    Published(Head),
    /// A PyG `MLP` at `head.*`.
    Mlp(mlp::Mlp),
    /// A `torch.nn.Linear` at `head.*`.
    Linear(nn::Linear),
}

impl Classifier {
    fn new(root: &nn::Path, spec: &ModelSpec) -> Classifier {
        let Some(pyg) = &spec.pyg else {
            return Classifier::Published(Head::new(root, spec.hidden as i64, spec.num_classes as i64));
        };
        let p = root / "head";
        match &pyg.head {
            PygHead::Mlp(m) => Classifier::Mlp(mlp::Mlp::new(&p, m.layout())),
            PygHead::Linear { bias } => {
                let (d, c) = (pyg.gnn_out(spec.hidden) as i64, spec.num_classes as i64);
                Classifier::Linear(nn::linear(p, d, c, nn::LinearConfig { bias: *bias, ..Default::default() }))
            }
        }
    }

    fn forward_t(&self, embedding: &Tensor, train: bool) -> Tensor {
        use tch::nn::Module;
        match self {
            Classifier::Published(head) => head.forward(embedding),
            Classifier::Mlp(m) => m.forward_t(embedding, train),
            Classifier::Linear(l) => l.forward(embedding),
        }
    }
}

/// The conv block (1-based) a variable belongs to by its name, or `None` for what comes after
/// the blocks (the head; a PyG model's jumping-knowledge `gnn.lin`). Blocks are `conv{i}.*` and
/// `bn{i}.*` in a published model, `gnn.convs.{i-1}.*` and `gnn.norms.{i-1}.*` in a PyG one.
pub fn block_of_variable(name: &str) -> Option<usize> {
    if let Some(rest) = name.strip_prefix("gnn.convs.").or_else(|| name.strip_prefix("gnn.norms.")) {
        return rest.split('.').next()?.parse::<usize>().ok().map(|i| i + 1);
    }
    let rest = name.strip_prefix("conv").or_else(|| name.strip_prefix("bn"))?;
    rest.split('.').next()?.parse().ok()
}

/// A graph classifier: one of the four architectures in the published layout or PyG's, its
/// variables and its spec.
#[derive(Debug)]
pub struct GnnModel {
    spec: ModelSpec,
    device: Device,
    vs: nn::VarStore,
    body: Body,
    head: Classifier,
    /// Names of the trained parameters (not the BatchNorm running statistics, GIN's eps or
    /// counters), sorted.
    parameter_names: Vec<String>,
}

impl GnnModel {
    /// A freshly initialised model (PyTorch / PyG default initialisers, drawn from libtorch's
    /// global generator: seed it with `rng::seed_torch` and hold the guard).
    pub fn new(spec: ModelSpec, device: Device) -> Result<GnnModel> {
        spec.validate()?;
        let vs = nn::VarStore::new(device);
        let (body, head) = {
            let root = vs.root();
            (Body::new(&root, &spec), Classifier::new(&root, &spec))
        };
        let mut parameter_names: Vec<String> =
            vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).map(|(name, _)| name).collect();
        parameter_names.sort();
        Ok(GnnModel { spec, device, vs, body, head, parameter_names })
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    pub fn var_store_mut(&mut self) -> &mut nn::VarStore {
        &mut self.vs
    }

    /// Runs the model. `train` selects BatchNorm's batch statistics (and updates the running
    /// ones); dropout is never applied. Gradients are recorded unless the caller wraps the call in `tch::no_grad`.
    ///
    /// The input must be well-formed (see [`GraphInput::check`] or [`GnnModel::try_forward_t`]):
    /// libtorch panics on mismatched shapes.
    pub fn forward_t(&self, input: &GraphInput<'_>, train: bool) -> ForwardOutput {
        self.forward_blocks_from(input.x, 0, input, train)
    }

    /// The node features after the first `blocks` conv blocks in eval mode, without gradient:
    /// the input of block `blocks` (`input.x` itself when `blocks` is 0). Where those blocks
    /// are frozen, a loop that forwards the same graphs many times computes this once and goes
    /// on with [`GnnModel::forward_from`]. A PyG model with `cat` or `max` jumping knowledge
    /// needs every block's output later: its prefix holds them side by side, one row per node.
    pub fn frozen_prefix(&self, input: &GraphInput<'_>, blocks: usize) -> Tensor {
        let blocks = blocks.min(self.spec.num_layers);
        if blocks == 0 {
            return input.x.shallow_clone();
        }
        let edges = Edges::new(input);
        tch::no_grad(|| self.body.prefix(input.x, &edges, blocks))
    }

    /// [`GnnModel::forward_t`] from block `start` on, `h` being that block's input on `input`'s
    /// graphs (from [`GnnModel::frozen_prefix`]). `layer_outputs` holds blocks `start..` only.
    pub fn forward_from(&self, h: &Tensor, start: usize, input: &GraphInput<'_>, train: bool) -> ForwardOutput {
        self.forward_blocks_from(h, start.min(self.spec.num_layers), input, train)
    }

    fn forward_blocks_from(&self, h: &Tensor, start: usize, input: &GraphInput<'_>, train: bool) -> ForwardOutput {
        let edges = Edges::new(input);
        let (layer_outputs, nodes) = self.body.forward_from(h, start, self.spec.num_layers, &edges, train);
        let embedding = pooling::global_pool(&nodes, input.batch, input.num_graphs, self.spec.pooling);
        let logits = self.head.forward_t(&embedding, train);
        let log_probs = logits.log_softmax(-1, None::<Kind>);
        ForwardOutput { logits, log_probs, layer_outputs, embedding }
    }

    /// [`GnnModel::forward_t`] after [`GraphInput::check`].
    pub fn try_forward_t(&self, input: &GraphInput<'_>, train: bool) -> Result<ForwardOutput> {
        input.check(&self.spec, self.device)?;
        Ok(self.forward_t(input, train))
    }

    /// The GIN conv blocks and the head, when this model is a published GIN.
    pub(crate) fn gin_parts(&self) -> Option<(&PublishedGnn<gin::GinConv>, &Head)> {
        match (&self.body, &self.head) {
            (Body::Published(stack), Classifier::Published(head)) => {
                stack.as_any().downcast_ref::<PublishedGnn<gin::GinConv>>().map(|gin| (gin, head))
            }
            _ => None,
        }
    }

    /// The classifier head alone, in eval mode: graph embeddings `[B, d]` -> logits `[B, C]`
    /// (fc1 -> ReLU -> fc2, or the PyG head).
    pub fn head(&self, embedding: &Tensor) -> Tensor {
        self.head.forward_t(embedding, false)
    }

    /// Loads a safetensors file (spec from its metadata unless `spec_override` is given),
    /// with the default [`weights::WeightLimits`].
    pub fn load(path: &Path, spec_override: Option<ModelSpec>, device: Device) -> Result<LoadedModel> {
        weights::load(path, spec_override, device, &weights::WeightLimits::default())
    }

    /// Writes the weights (f32, PyG names, BatchNorm counters as i64) with the spec in the
    /// metadata. The file is written beside `path` and renamed into place.
    pub fn save(&self, path: &Path) -> Result<()> {
        weights::save(self, path)
    }

    /// A deep copy: new storage for every variable, same values and `requires_grad` flags.
    /// Building it draws from libtorch's generator (the initial values are then overwritten),
    /// under the generator's lock, so it never advances another thread's seeded sequence.
    pub fn try_clone(&self) -> Result<GnnModel> {
        let mut copy = {
            let _generator = crate::rng::hold_torch_generator();
            GnnModel::new(self.spec.clone(), self.device)?
        };
        copy.vs.copy(&self.vs)?;
        let source = self.vs.variables();
        for (name, var) in copy.vs.variables() {
            if let Some(src) = source.get(&name) {
                if src.requires_grad() != var.requires_grad() {
                    let _ = var.set_requires_grad(src.requires_grad());
                }
            }
        }
        Ok(copy)
    }

    pub fn num_layers(&self) -> usize {
        self.spec.num_layers
    }

    /// Names of all trained parameters, sorted.
    pub fn parameter_names(&self) -> &[String] {
        &self.parameter_names
    }

    /// Parameters of conv block `layer` (0-based): its conv and its BatchNorm's affine weight
    /// and bias where it has one.
    pub fn layer_parameter_names(&self, layer: usize) -> Vec<String> {
        let conv = self.conv_prefix(layer);
        let mut names = self.conv_parameter_names(layer);
        names.extend(
            self.parameter_names.iter().filter(|n| block_of_variable(n) == Some(layer + 1) && !n.starts_with(&conv)).cloned(),
        );
        names
    }

    fn conv_prefix(&self, layer: usize) -> String {
        if self.spec.is_pyg() {
            format!("{}.convs.{layer}.", basic_gnn::GNN)
        } else {
            format!("conv{}.", layer + 1)
        }
    }

    /// Parameters of the conv of block `layer` (0-based), without its BatchNorm.
    pub fn conv_parameter_names(&self, layer: usize) -> Vec<String> {
        let conv = self.conv_prefix(layer);
        self.parameter_names.iter().filter(|n| n.starts_with(&conv)).cloned().collect()
    }

    /// Parameters after the conv blocks: the head (fc1, fc2; a PyG model's `head.*` and its
    /// jumping-knowledge `gnn.lin`).
    pub fn head_parameter_names(&self) -> Vec<String> {
        self.parameter_names.iter().filter(|n| block_of_variable(n).is_none()).cloned().collect()
    }

    /// Makes exactly `names` require gradients; every other parameter is frozen. Build the
    /// optimizer after this call. Unknown names are an error.
    pub fn set_trainable(&self, names: &[String]) -> Result<()> {
        if let Some(unknown) = names.iter().find(|n| !self.parameter_names.contains(n)) {
            return Err(Error::invalid(format!("no parameter named {unknown:?} in this model")));
        }
        for (name, var) in self.vs.variables() {
            if self.parameter_names.contains(&name) {
                let _ = var.set_requires_grad(names.contains(&name));
            }
        }
        Ok(())
    }

    /// Freezes everything but the last conv and the head (G-Cleaner's unlearning setup; the
    /// last block's BatchNorm stays frozen too: run it with `train = false`).
    pub fn train_only_last_conv_and_head(&self) {
        let mut names = self.conv_parameter_names(self.spec.num_layers - 1);
        names.extend(self.head_parameter_names());
        self.set_trainable(&names).expect("names come from this model");
    }

    /// Makes every parameter trainable again.
    pub fn set_all_trainable(&self) {
        self.set_trainable(&self.parameter_names).expect("names come from this model");
    }
}
