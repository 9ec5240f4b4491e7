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
