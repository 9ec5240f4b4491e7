//! Gradient saliency: how much each node's features and incident edges move the model's
//! confidence in its own prediction. One batched forward and backward pass for all graphs.

use tch::{Device, Kind, Tensor};

use crate::data::batch::GraphBatch;
use crate::data::{FeatureSpec, Graph};
use crate::models::{GnnModel, GraphInput};
use crate::Result;

/// Importance of every node of every graph (higher = more important), `result[g][v]`.
pub fn node_importance(model: &GnnModel, graphs: &[&Graph], features: &FeatureSpec) -> Result<Vec<Vec<f32>>> {
    let device = model.device();
    let indices: Vec<usize> = (0..graphs.len()).collect();
    let batch = GraphBatch::new(graphs, indices, features, device)?;
    let x = batch.x.detach().set_requires_grad(true);
    let edge_count = batch.edge_index.size()[1];
    let edge_weight = Tensor::ones([edge_count], (Kind::Float, device)).set_requires_grad(true);
    let input = GraphInput {
        x: &x,
        edge_index: &batch.edge_index,
        edge_weight: Some(&edge_weight),
        batch: &batch.batch,
        num_graphs: batch.num_graphs,
    };
    let out = model.forward_t(&input, false);
    let predicted = out.log_probs.argmax(-1, true);
    let confidence = out.log_probs.gather(1, &predicted, false).sum(Kind::Float);
    let grads = Tensor::run_backward(&[confidence], &[&x, &edge_weight], false, false);
    // Gradient x input: for one-hot features this is the gradient at the active entry.
    let node_score = (&grads[0] * &x).abs().sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    // An edge's influence is shared by its two endpoints.
    let edge_score = grads[1].abs() * 0.5;
    let node_score =
        node_score.index_add(0, &batch.edge_index.get(0), &edge_score).index_add(0, &batch.edge_index.get(1), &edge_score);
    split_per_graph(&node_score.to_device(Device::Cpu), graphs)
}

pub(crate) fn split_per_graph(scores: &Tensor, graphs: &[&Graph]) -> Result<Vec<Vec<f32>>> {
    let flat = Vec::<f32>::try_from(scores.to_kind(Kind::Float).contiguous())?;
    let mut out = Vec::with_capacity(graphs.len());
    let mut offset = 0;
    for g in graphs {
        out.push(flat[offset..offset + g.num_nodes].to_vec());
        offset += g.num_nodes;
    }
    Ok(out)
}
