//! Graph-level readout: node features pooled per graph through the batch vector.

use tch::Tensor;

use super::scatter::{counts, scatter_sum};
use super::Pooling;

/// `[N, h]` node features to `[num_graphs, h]` graph embeddings. Mean and max pooling of a
/// graph with no nodes give zeros, as PyG's `global_mean_pool` and `global_max_pool` do.
pub fn global_pool(x: &Tensor, batch: &Tensor, num_graphs: i64, pooling: Pooling) -> Tensor {
    if pooling == Pooling::Max {
        let mut shape = x.size();
        shape[0] = num_graphs;
        // `include_self = false`: the zeros only fill graphs without nodes.
        return Tensor::zeros(shape.as_slice(), (x.kind(), x.device())).index_reduce(0, batch, x, "amax", false);
    }
    let sums = scatter_sum(x, batch, num_graphs);
    match pooling {
        Pooling::Sum => sums,
        Pooling::Mean => {
            let n = counts(batch, num_graphs, x.kind()).clamp_min(1.0);
            sums / n.unsqueeze(1)
        }
        Pooling::Max => unreachable!("handled above"),
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
