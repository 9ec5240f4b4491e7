//! Graph-level readout: node features pooled per graph through the batch vector.

use tch::Tensor;

use super::scatter::{counts, scatter_sum};
use super::Pooling;

/// `[N, h]` node features to `[num_graphs, h]` graph embeddings. Mean and max pooling of a
/// graph with no nodes give zeros, as PyG's `global_mean_pool` and `global_max_pool` do.
pub fn global_pool(x: &Tensor, batch: &Tensor, num_graphs: i64, pooling: Pooling) -> Tensor {
    match pooling {
        Pooling::Sum => scatter_sum(x, batch, num_graphs),
        Pooling::Mean => {
            let n = counts(batch, num_graphs, x.kind()).clamp_min(1.0);
            scatter_sum(x, batch, num_graphs) / n.unsqueeze(1)
        }
        Pooling::Max => {
            let mut shape = x.size();
            shape[0] = num_graphs;
            // PyG's scatter max (`scatter_reduce` with `include_self = false` into zeros): the
            // zeros only remain in graphs without nodes. tch's `scatter_reduce` is the older
            // add/multiply `scatter`; `internal_scatter_reduce` is `torch.scatter_reduce`.
            let index = batch.unsqueeze(1).expand_as(x);
            Tensor::zeros(shape.as_slice(), (x.kind(), x.device())).internal_scatter_reduce(0, &index, x, "amax", false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_support::assert_close;

    #[test]
    fn sum_and_mean_pool_per_graph_and_empty_graphs_give_zeros() {
        let x = Tensor::from_slice(&[1.0f32, 10.0, 3.0, 30.0, 5.0, 50.0]).view([3, 2]);
        let batch = Tensor::from_slice(&[0i64, 0, 2]);
        assert_close(&global_pool(&x, &batch, 3, Pooling::Sum), &[4.0, 40.0, 0.0, 0.0, 5.0, 50.0], 0.0);
        assert_close(&global_pool(&x, &batch, 3, Pooling::Mean), &[2.0, 20.0, 0.0, 0.0, 5.0, 50.0], 0.0);
        let negative = -&x;
        assert_close(&global_pool(&negative, &batch, 3, Pooling::Max), &[-1.0, -10.0, 0.0, 0.0, -5.0, -50.0], 0.0);
    }
}
