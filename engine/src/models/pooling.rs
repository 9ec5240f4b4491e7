//! Graph-level readout: node features pooled per graph through the batch vector.

use tch::Tensor;

use super::scatter::{counts, scatter_sum};
use super::Pooling;

/// `[N, h]` node features to `[num_graphs, h]` graph embeddings. Mean pooling of a graph with
/// no nodes gives zeros.
pub fn global_pool(x: &Tensor, batch: &Tensor, num_graphs: i64, pooling: Pooling) -> Tensor {
    let sums = scatter_sum(x, batch, num_graphs);
    match pooling {
        Pooling::Sum => sums,
        Pooling::Mean => {
            let n = counts(batch, num_graphs, x.kind()).clamp_min(1.0);
            sums / n.unsqueeze(1)
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
    }
}
