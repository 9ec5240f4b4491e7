//! Mini-batches as one disjoint-union graph: node features stacked, edge indices offset by the
//! nodes of earlier graphs, and a `batch` vector mapping each node to its graph. Batches are
//! built once per dataset split and reused every epoch.

use tch::{Device, Tensor};

use super::features::FeatureSpec;
use super::graph::{Dataset, Graph};
use crate::{Error, Result};

/// A batch of graphs as one graph with `num_graphs` components.
#[derive(Debug)]
pub struct GraphBatch {
    /// Node features `[N, F]`, f32.
    pub x: Tensor,
    /// `[2, E]` i64, source row then target row; every undirected edge appears in both directions.
    pub edge_index: Tensor,
    /// `[N]` i64: the batch position of each node's graph.
    pub batch: Tensor,
    /// `[B]` i64 class indices.
    pub labels: Tensor,
    pub num_graphs: i64,
    /// Dataset index of each graph in the batch, in batch order.
    pub graph_indices: Vec<usize>,
}

impl GraphBatch {
    /// Builds the disjoint union of `graphs`; `indices[i]` is the dataset index of `graphs[i]`
    /// (reported back in [`GraphBatch::graph_indices`] and in error messages).
    pub fn new(
        graphs: &[&Graph],
        indices: Vec<usize>,
        features: &FeatureSpec,
        device: Device,
    ) -> Result<GraphBatch> {
        if graphs.is_empty() {
            return Err(Error::invalid("a batch needs at least one graph"));
        }
        if indices.len() != graphs.len() {
            return Err(Error::invalid(format!(
                "{} graph indices for a batch of {} graphs",
                indices.len(),
                graphs.len()
            )));
        }
        features.validate()?;
        let dim = features.dim();
        let num_nodes: usize = graphs.iter().map(|g| g.num_nodes).sum();
        let num_edges: usize = graphs.iter().map(|g| g.edges.len()).sum();
        if i64::try_from(num_nodes).is_err() || num_nodes > u32::MAX as usize {
            return Err(Error::invalid(format!("a batch of {num_nodes} nodes is too large")));
        }

        let mut x = Vec::with_capacity(num_nodes * dim);
        let mut sources = Vec::with_capacity(2 * num_edges);
        let mut targets = Vec::with_capacity(2 * num_edges);
        let mut batch = Vec::with_capacity(num_nodes);
        let mut labels = Vec::with_capacity(graphs.len());
        let mut offset = 0i64;
        for (position, (g, &index)) in graphs.iter().zip(&indices).enumerate() {
            let rows = features
                .node_features(g)
                .map_err(|e| Error::invalid(format!("graph {index}: {e}")))?;
            x.extend_from_slice(&rows);
            for &(u, v) in &g.edges {
                let (u, v) = (offset + i64::from(u), offset + i64::from(v));
                sources.extend([u, v]);
                targets.extend([v, u]);
            }
            batch.extend(std::iter::repeat(position as i64).take(g.num_nodes));
            labels.push(g.label as i64);
            offset += g.num_nodes as i64;
        }

        sources.extend_from_slice(&targets);
        let edge_count = targets.len() as i64;
        Ok(GraphBatch {
            x: Tensor::from_slice(&x).view([num_nodes as i64, dim as i64]).to_device(device),
            edge_index: Tensor::from_slice(&sources).view([2, edge_count]).to_device(device),
            batch: Tensor::from_slice(&batch).to_device(device),
            labels: Tensor::from_slice(&labels).to_device(device),
            num_graphs: graphs.len() as i64,
            graph_indices: indices,
        })
    }

    pub fn num_nodes(&self) -> i64 {
        self.x.size()[0]
    }

    pub fn num_directed_edges(&self) -> i64 {
        self.edge_index.size()[1]
    }
}

/// Splits `indices` into consecutive batches of at most `batch_size` graphs, in the given order.
pub fn make_batches(
    ds: &Dataset,
    indices: &[usize],
    batch_size: usize,
    features: &FeatureSpec,
    device: Device,
) -> Result<Vec<GraphBatch>> {
    if batch_size == 0 {
        return Err(Error::invalid("batch size must be at least 1"));
    }
    if let Some(&bad) = indices.iter().find(|&&i| i >= ds.graphs.len()) {
        return Err(Error::invalid(format!(
            "graph index {bad} is outside dataset {:?} of {} graphs",
            ds.name,
            ds.graphs.len()
        )));
    }
    indices
        .chunks(batch_size)
        .map(|chunk| {
            let graphs: Vec<&Graph> = chunk.iter().map(|&i| &ds.graphs[i]).collect();
            GraphBatch::new(&graphs, chunk.to_vec(), features, device)
        })
        .collect()
}
