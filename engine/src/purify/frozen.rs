//! Montaged inputs forwarded through a model's frozen blocks once.
//!
//! Robust unlearning trains only the last conv block and the head: the node features entering
//! the first trained block depend on the graph alone. Inputs that stay fixed for a whole run
//! (the clean unlearning sample, the graphs the collapse guard watches, the held-out triggered
//! copies) are pushed through the frozen blocks once and through the trained rest as often as
//! needed, with the same result as a full forward pass.

use tch::{Kind, Tensor};

use super::evidence;
use crate::models::{ForwardOutput, GnnModel, GraphInput};
use crate::montage::{MontageBatch, MontageInputs};
use crate::Result;

pub struct FrozenInputs {
    inputs: MontageInputs,
    /// Graph index of every node, and the number of graphs (the batch's).
    node_graph: Tensor,
    num_graphs: i64,
    /// Features entering block `blocks` (the first trained one).
    prefix: Tensor,
    blocks: usize,
}

impl FrozenInputs {
    /// `inputs` (assembled on `batch`) through the first `blocks` blocks of `model`, which
    /// must stay unchanged for as long as this value is used.
    pub fn new(model: &GnnModel, batch: &MontageBatch, inputs: MontageInputs, blocks: usize) -> Self {
        let prefix = model.frozen_prefix(&inputs.graph_input(batch), blocks);
        FrozenInputs { inputs, node_graph: batch.batch.shallow_clone(), num_graphs: batch.num_graphs, prefix, blocks }
    }

    /// The model's output, recording gradients to the trained blocks unless the caller wraps
    /// the call in `tch::no_grad`.
    pub fn forward(&self, model: &GnnModel) -> ForwardOutput {
        let input = GraphInput {
            x: &self.inputs.x,
            edge_index: &self.inputs.edge_index,
            edge_weight: self.inputs.edge_weight.as_ref(),
            batch: &self.node_graph,
            num_graphs: self.num_graphs,
        };
        model.forward_from(&self.prefix, self.blocks, &input, false)
    }

    /// The model's outputs for these graphs and for `other`'s in one pass through the trained
    /// blocks (`other` goes through the same frozen blocks first): rows `0..num_graphs` are
    /// these graphs, the rest `other`'s. Eval-mode BatchNorm treats every node alone and the
    /// graphs stay disjoint, so each row is what a pass of its own would give; one pass instead
    /// of two halves the small kernels a training step launches forward and backward.
    pub fn forward_joined(&self, model: &GnnModel, other: &GraphInput<'_>) -> ForwardOutput {
        let other_prefix = model.frozen_prefix(other, self.blocks);
        let own_nodes = self.prefix.size()[0];
        let weights = match (self.inputs.edge_weight.as_ref(), other.edge_weight) {
            (None, None) => None,
            (own, theirs) => {
                let ones = |edges: &Tensor| Tensor::ones([edges.size()[1]], (Kind::Float, edges.device()));
                let own = own.map_or_else(|| ones(&self.inputs.edge_index), Tensor::shallow_clone);
                let theirs = theirs.map_or_else(|| ones(other.edge_index), Tensor::shallow_clone);
                Some(Tensor::cat(&[own, theirs], 0))
            }
        };
        let h = Tensor::cat(&[&self.prefix, &other_prefix], 0);
        let edge_index = Tensor::cat(&[&self.inputs.edge_index, &(other.edge_index + own_nodes)], 1);
        let batch = Tensor::cat(&[&self.node_graph, &(other.batch + self.num_graphs)], 0);
        // From a trained block on, the pass reads only the node count of `x`: the joined
        // prefix has it, and the raw features need no copy.
        let input = GraphInput {
            x: &h,
            edge_index: &edge_index,
            edge_weight: weights.as_ref(),
            batch: &batch,
            num_graphs: self.num_graphs + other.num_graphs,
        };
        model.forward_from(&h, self.blocks, &input, false)
    }

    /// The number of graphs.
    pub fn num_graphs(&self) -> i64 {
        self.num_graphs
    }

    /// The model's predicted class for every graph.
    pub fn predictions(&self, model: &GnnModel) -> Result<Vec<usize>> {
        evidence::predicted_classes(&tch::no_grad(|| self.forward(model).log_probs))
    }

    /// The inputs as assembled (all blocks' worth: for a model whose first blocks do change).
    pub fn inputs(&self) -> &MontageInputs {
        &self.inputs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{FeatureSpec, Graph};
    use crate::models::{Arch, ModelSpec};
    use tch::Device;

    fn graph(num_nodes: usize, edges: &[(u32, u32)], label: usize) -> Graph {
        Graph { num_nodes, edges: edges.to_vec(), node_labels: None, node_attributes: None, label }
    }

    #[test]
    fn the_frozen_prefix_then_the_rest_is_the_whole_forward_pass() {
        let a = graph(5, &[(0, 1), (1, 2), (2, 3), (3, 4), (0, 2)], 0);
        let b = graph(4, &[(0, 1), (1, 2), (2, 3), (0, 3)], 1);
        let features = FeatureSpec::OneHotDegree { max_degree: 4 };
        let batch = MontageBatch::build(&[&a, &b], &[0, 1], &[vec![0, 3], vec![1, 3]], 2, &features, Device::Cpu).unwrap();
        let pattern = Tensor::from_slice(&[1.0f32]);
        for arch in [Arch::Gin, Arch::Gcn, Arch::Gat, Arch::Sage] {
            let _torch_seed = crate::rng::seed_torch(3);
            let model = GnnModel::new(ModelSpec::published(arch, features.dim(), 8, 2, features.clone()), Device::Cpu).unwrap();
            let inputs = batch.assemble_fixed(&pattern, None);
            let whole = tch::no_grad(|| model.forward_t(&inputs.graph_input(&batch), false).logits);
            let layers = model.spec().num_layers;
            for blocks in 0..=layers {
                let frozen = FrozenInputs::new(&model, &batch, batch.assemble_fixed(&pattern, None), blocks);
                let out = tch::no_grad(|| frozen.forward(&model));
                assert_eq!(out.layer_outputs.len(), layers - blocks, "{arch:?}: blocks after {blocks}");
                let diff = (&out.logits - &whole).abs().max().double_value(&[]);
                assert_eq!(diff, 0.0, "{arch:?}: {blocks} frozen blocks change the logits by {diff}");
                assert_eq!(frozen.predictions(&model).unwrap().len(), 2);
            }
        }
    }

    #[test]
    fn a_joined_pass_gives_each_graph_what_its_own_pass_gives() {
        let a = graph(5, &[(0, 1), (1, 2), (2, 3), (3, 4), (0, 2)], 0);
        let b = graph(4, &[(0, 1), (1, 2), (2, 3), (0, 3)], 1);
        let c = graph(6, &[(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)], 1);
        let features = FeatureSpec::OneHotDegree { max_degree: 4 };
        let sample = MontageBatch::clean(&[&a, &b], &[0, 1], &features, Device::Cpu).unwrap();
        let copies = MontageBatch::build(
            &[&c, &a, &c],
            &[1, 0, 1],
            &[vec![0, 2, 4], vec![1, 3, 4], vec![5, 1, 0]],
            3,
            &features,
            Device::Cpu,
        )
        .unwrap();
        let pattern = Tensor::from_slice(&[1.0f32, 0.0, 1.0]);
        for arch in [Arch::Gin, Arch::Gcn, Arch::Gat, Arch::Sage] {
            let _torch_seed = crate::rng::seed_torch(5);
            let model = GnnModel::new(ModelSpec::published(arch, features.dim(), 8, 3, features.clone()), Device::Cpu).unwrap();
            for blocks in [0, model.spec().num_layers - 1, model.spec().num_layers] {
                let frozen = FrozenInputs::new(&model, &sample, sample.assemble_clean(), blocks);
                let triggered = copies.assemble_fixed(&pattern, None);
                let input = triggered.graph_input(&copies);
                let joined = tch::no_grad(|| frozen.forward_joined(&model, &input));
                let own = tch::no_grad(|| frozen.forward(&model));
                let theirs = tch::no_grad(|| model.forward_t(&input, false));
                assert_eq!(joined.logits.size(), [5, 3]);
                let expected = Tensor::cat(&[&own.logits, &theirs.logits], 0);
                // A batch of another shape may sum in another order: float32 rounding, relative
                // to the values' size.
                let tolerance = |t: &Tensor| 1e-5 * t.abs().max().double_value(&[]).max(1.0);
                let diff = (&joined.logits - &expected).abs().max().double_value(&[]);
                assert!(diff < tolerance(&expected), "{arch:?}, {blocks} frozen blocks: joined logits differ by {diff}");
                let diff = (joined.embedding.narrow(0, 0, 2) - &own.embedding).abs().max().double_value(&[]);
                assert!(diff < tolerance(&own.embedding), "{arch:?}, {blocks} frozen blocks: joined embeddings differ by {diff}");
            }
        }
    }
}
