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
    /// The batch as model input (edge weights 1.0).
    pub fn input(&self) -> crate::models::GraphInput<'_> {
        crate::models::GraphInput::new(&self.x, &self.edge_index, &self.batch, self.num_graphs)
    }

    /// Builds the disjoint union of `graphs`; `indices[i]` is the dataset index of `graphs[i]`
    /// (reported back in [`GraphBatch::graph_indices`] and in error messages).
    pub fn new(graphs: &[&Graph], indices: Vec<usize>, features: &FeatureSpec, device: Device) -> Result<GraphBatch> {
        if graphs.is_empty() {
            return Err(Error::invalid("a batch needs at least one graph"));
        }
        if indices.len() != graphs.len() {
            return Err(Error::invalid(format!("{} graph indices for a batch of {} graphs", indices.len(), graphs.len())));
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
            let rows = features.node_features(g).map_err(|e| Error::invalid(format!("graph {index}: {e}")))?;
            x.extend_from_slice(&rows);
            for &(u, v) in &g.edges {
                let (u, v) = (offset + i64::from(u), offset + i64::from(v));
                sources.extend([u, v]);
                targets.extend([v, u]);
            }
            batch.extend(std::iter::repeat_n(position as i64, g.num_nodes));
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
        return Err(Error::invalid(format!("graph index {bad} is outside dataset {:?} of {} graphs", ds.name, ds.graphs.len())));
    }
    indices
        .chunks(batch_size)
        .map(|chunk| {
            let graphs: Vec<&Graph> = chunk.iter().map(|&i| &ds.graphs[i]).collect();
            GraphBatch::new(&graphs, chunk.to_vec(), features, device)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(num_nodes: usize, edges: &[(u32, u32)], label: usize) -> Graph {
        Graph { num_nodes, edges: edges.to_vec(), node_labels: None, node_attributes: None, label }
    }

    fn ints(t: &Tensor) -> Vec<i64> {
        Vec::<i64>::try_from(t.flatten(0, -1)).unwrap()
    }

    #[test]
    fn disjoint_union_offsets_edges_and_assigns_batch_positions() {
        let triangle = graph(3, &[(0, 1), (0, 2), (1, 2)], 1);
        let pair_and_isolated = graph(3, &[(0, 1)], 0);
        let spec = FeatureSpec::OneHotDegree { max_degree: 2 };
        let b = GraphBatch::new(&[&triangle, &pair_and_isolated], vec![7, 3], &spec, Device::Cpu).unwrap();

        assert_eq!(b.x.size(), vec![6, 3]);
        assert_eq!(b.x.kind(), tch::Kind::Float);
        let x = Vec::<f32>::try_from(b.x.flatten(0, -1)).unwrap();
        #[rustfmt::skip]
        assert_eq!(x, vec![
            0., 0., 1.,  0., 0., 1.,  0., 0., 1.,
            0., 1., 0.,  0., 1., 0.,  1., 0., 0.,
        ]);
        assert_eq!(b.edge_index.size(), vec![2, 8]);
        assert_eq!(ints(&b.edge_index.get(0)), vec![0, 1, 0, 2, 1, 2, 3, 4]);
        assert_eq!(ints(&b.edge_index.get(1)), vec![1, 0, 2, 0, 2, 1, 4, 3]);
        assert_eq!(ints(&b.batch), vec![0, 0, 0, 1, 1, 1]);
        assert_eq!(ints(&b.labels), vec![1, 0]);
        assert_eq!(b.num_graphs, 2);
        assert_eq!(b.graph_indices, vec![7, 3]);
        assert_eq!(b.num_nodes(), 6);
        assert_eq!(b.num_directed_edges(), 8);
    }

    #[test]
    fn tensors_land_on_the_requested_device() {
        let device = Device::cuda_if_available();
        let spec = FeatureSpec::OneHotDegree { max_degree: 1 };
        let b = GraphBatch::new(&[&graph(2, &[(0, 1)], 1)], vec![0], &spec, device).unwrap();
        for t in [&b.x, &b.edge_index, &b.batch, &b.labels] {
            assert_eq!(t.device(), device);
        }
        assert_eq!(ints(&b.edge_index.to_device(Device::Cpu)), vec![0, 1, 1, 0]);
    }

    #[test]
    fn edgeless_batch_has_an_empty_edge_index() {
        let spec = FeatureSpec::OneHotDegree { max_degree: 1 };
        let b = GraphBatch::new(&[&graph(2, &[], 0)], vec![0], &spec, Device::Cpu).unwrap();
        assert_eq!(b.edge_index.size(), vec![2, 0]);
        assert_eq!(b.edge_index.kind(), tch::Kind::Int64);
    }

    #[test]
    fn make_batches_chunks_in_order_and_reports_bad_graphs() {
        let graphs = (0..5).map(|i| graph(i + 1, &[], i % 2)).collect();
        let ds = Dataset { name: "t".into(), graphs, class_labels: vec![0, 1] };
        let spec = FeatureSpec::OneHotDegree { max_degree: 1 };
        let batches = make_batches(&ds, &[4, 0, 2, 1, 3], 2, &spec, Device::Cpu).unwrap();
        let indices: Vec<_> = batches.iter().map(|b| b.graph_indices.clone()).collect();
        assert_eq!(indices, vec![vec![4, 0], vec![2, 1], vec![3]]);
        assert_eq!(batches[0].num_nodes(), 6);
        assert_eq!(ints(&batches[0].batch), vec![0, 0, 0, 0, 0, 1]);

        assert!(make_batches(&ds, &[0], 0, &spec, Device::Cpu).is_err());
        let err = make_batches(&ds, &[5], 2, &spec, Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("graph index 5"), "{err}");
        let labels = FeatureSpec::NodeLabelsOneHot { num_labels: 2 };
        let err = make_batches(&ds, &[0, 3], 2, &labels, Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("graph 0") && err.contains("node labels"), "{err}");
        assert!(GraphBatch::new(&[], vec![], &spec, Device::Cpu).is_err());
    }
}
