//! Grad-CAM heat maps for graph classifiers: for each conv layer, weight its node feature maps
//! by the graph-averaged gradient of the class score, keep the positive part and min-max
//! normalise per graph. Computed with `create_graph`, so a loss on heat maps differentiates
//! with respect to the model's weights (double backward), as the G-Cleaner paper's unlearning
//! loss needs.

use tch::{Kind, Tensor};

use crate::models::ForwardOutput;

/// One heat map `[N]` per conv layer for the classes in `classes` (`[B]`, one per graph).
pub fn heat_maps(out: &ForwardOutput, classes: &Tensor, batch: &Tensor, num_graphs: i64) -> Vec<Tensor> {
    let score = out.logits.gather(1, &classes.unsqueeze(1), false).sum(Kind::Float);
    let grads = Tensor::run_backward(&[score], &out.layer_outputs, true, true);
    out.layer_outputs.iter().zip(grads).map(|(maps, grad)| layer_heat_map(maps, &grad, batch, num_graphs)).collect()
}

fn layer_heat_map(maps: &Tensor, grad: &Tensor, batch: &Tensor, num_graphs: i64) -> Tensor {
    let device = maps.device();
    let width = maps.size()[1];
    let counts = Tensor::zeros([num_graphs], (Kind::Float, device))
        .index_add(0, batch, &Tensor::ones([batch.size()[0]], (Kind::Float, device)))
        .clamp_min(1.0);
    // alpha_k: mean over a graph's nodes of d score / d F_k.
    let alpha = Tensor::zeros([num_graphs, width], (Kind::Float, device)).index_add(0, batch, grad) / counts.unsqueeze(1);
    let heat = (alpha.index_select(0, batch) * maps).sum_dim_intlist([1i64].as_slice(), false, Kind::Float).relu();
    // Per-graph extremes. (tch's `scatter_reduce` binds the old `scatter(reduce=)` overload,
    // which knows only add and multiply: `index_reduce` is the differentiable min / max.)
    let extreme = |how: &str| Tensor::zeros([num_graphs], (Kind::Float, device)).index_reduce(0, batch, &heat, how, false);
    let (lo, hi) = (extreme("amin"), extreme("amax"));
    let lo = lo.index_select(0, batch);
    let range = (hi.index_select(0, batch) - &lo).clamp_min(1e-8);
    (heat - lo) / range
}
