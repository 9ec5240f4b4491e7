//! The directed edge list of a batch, split once per forward pass so every layer reuses it.

use tch::Tensor;

use super::scatter::scatter_sum;
use super::GraphInput;

/// Directed edges `src -> dst` (PyTorch Geometric's `source_to_target` flow: a message from
/// `edge_index[0]` is aggregated at `edge_index[1]`) with their optional weights.
pub struct Edges {
    pub src: Tensor,
    pub dst: Tensor,
    /// `[E]` weights; `None` means every edge has weight 1.0 and the multiply is skipped.
    pub weight: Option<Tensor>,
    pub num_nodes: i64,
}

impl Edges {
    pub fn new(input: &GraphInput<'_>) -> Edges {
        Edges {
            src: input.edge_index.get(0),
            dst: input.edge_index.get(1),
            weight: input.edge_weight.map(|w| w.shallow_clone()),
            num_nodes: input.x.size()[0],
        }
    }

    /// Features of each edge's source node, scaled by the edge weight: `[E, F]`.
    pub fn weighted_messages(&self, x: &Tensor) -> Tensor {
        let messages = x.index_select(0, &self.src);
        match &self.weight {
            Some(w) => messages * w.unsqueeze(1),
            None => messages,
        }
    }

    /// `sum_{j -> i} w_ji * x_j` for every node `i`.
    pub fn weighted_sum(&self, x: &Tensor) -> Tensor {
        scatter_sum(&self.weighted_messages(x), &self.dst, self.num_nodes)
    }

    /// `base_i + sum_{j -> i} w_ji * x_j`: the messages are added onto a copy of `base`, one
    /// op instead of a zero fill, a scatter and an add.
    pub fn add_weighted_sum(&self, base: &Tensor, x: &Tensor) -> Tensor {
        base.index_add(0, &self.dst, &self.weighted_messages(x))
    }
}
