//! GNNExplainer (Ying et al., NeurIPS 2019) for graph classification, many graphs at once.
//!
//! For every graph a soft edge mask (one value per undirected edge, shared by both directions)
//! and a feature mask (one value per feature column, shared by the graph's nodes) are optimised
//! so that the masked graph keeps the model's prediction, while a size penalty pushes the masks
//! towards few edges and features and an entropy penalty pushes every mask value towards 0 or 1.
//! Graphs are explained as one disjoint union: the loss is a sum of per-graph terms, the model
//! runs in evaluation mode (BatchNorm uses its running statistics), and Adam normalises every
//! mask value's step on its own, so each graph's masks follow the same path as if it were
//! explained alone.
//!
//! Node importance, the number the attacks and the purifier consume, is the sum of the learned
//! masks of a node's edges plus the feature mask weighted by the node's own features: a node
//! matters when the edges that carry the prediction meet at it, or when its features are the
//! ones the prediction keeps.

use rand::Rng as _;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::data::batch::GraphBatch;
use crate::data::{FeatureSpec, Graph};
use crate::models::{GnnModel, GraphInput};
use crate::rng::{rng_for, Rng};
use crate::{Error, Result};

/// Keeps the logarithms of the entropy terms finite at mask values of exactly 0 or 1.
const EPS: f64 = 1e-15;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GnnExplainerConfig {
    /// Optimisation steps per graph.
    pub epochs: usize,
    pub lr: f64,
    /// Weight of the sum of a graph's edge mask values.
    pub edge_size: f64,
    /// Weight of the mean binary entropy of a graph's edge mask values.
    pub edge_entropy: f64,
    /// Weight of the mean of a graph's feature mask values.
    pub feature_size: f64,
    /// Weight of the mean binary entropy of a graph's feature mask values.
    pub feature_entropy: f64,
    /// Graphs explained together in one batch.
    pub batch_graphs: usize,
    /// Seeds the initial masks.
    pub seed: u64,
}

impl Default for GnnExplainerConfig {
    /// The published GNNExplainer settings (as in PyTorch Geometric's implementation).
    fn default() -> Self {
        GnnExplainerConfig {
            epochs: 100,
            lr: 0.01,
            edge_size: 0.005,
            edge_entropy: 1.0,
            feature_size: 1.0,
            feature_entropy: 0.1,
            batch_graphs: 256,
            seed: 10,
        }
    }
}

impl GnnExplainerConfig {
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::invalid("GNNExplainer needs at least 1 epoch"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::invalid(format!("GNNExplainer learning rate must be positive, got {}", self.lr)));
        }
        for (name, value) in [
            ("edge_size", self.edge_size),
            ("edge_entropy", self.edge_entropy),
            ("feature_size", self.feature_size),
            ("feature_entropy", self.feature_entropy),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(Error::invalid(format!("GNNExplainer {name} must be >= 0, got {value}")));
            }
        }
        if self.batch_graphs == 0 {
            return Err(Error::invalid("GNNExplainer batch_graphs must be at least 1"));
        }
        Ok(())
    }
}

/// The learned masks of one graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// One value in (0, 1) per edge of `graph.edges`, in that order.
    pub edge_mask: Vec<f32>,
    /// One value in (0, 1) per feature column.
    pub feature_mask: Vec<f32>,
    /// Node importance (see the module documentation), one per node.
    pub node_importance: Vec<f32>,
}

/// Importance of every node of every graph (higher = more important), `result[g][v]`.
pub fn node_importance(
    model: &GnnModel,
    graphs: &[&Graph],
    features: &FeatureSpec,
    config: &GnnExplainerConfig,
) -> Result<Vec<Vec<f32>>> {
    Ok(explain(model, graphs, features, config)?.into_iter().map(|e| e.node_importance).collect())
}

/// GNNExplainer masks for every graph, explaining the class `model` predicts for it.
pub fn explain(
    model: &GnnModel,
    graphs: &[&Graph],
    features: &FeatureSpec,
    config: &GnnExplainerConfig,
) -> Result<Vec<Explanation>> {
    config.validate()?;
    if features.dim() != model.spec().in_features {
        return Err(Error::invalid(format!(
            "features give {} columns but the model expects {}",
            features.dim(),
            model.spec().in_features
        )));
    }
    if let Some(i) = graphs.iter().position(|g| g.num_nodes == 0) {
        return Err(Error::invalid(format!("graph {i} has no nodes and cannot be explained")));
    }
    let mut out = Vec::with_capacity(graphs.len());
    for (chunk_index, chunk) in graphs.chunks(config.batch_graphs).enumerate() {
        let first = chunk_index * config.batch_graphs;
        let indices: Vec<usize> = (first..first + chunk.len()).collect();
        let batch = GraphBatch::new(chunk, indices, features, model.device())?;
        out.extend(explain_batch(model, chunk, first, &batch, config)?);
    }
    Ok(out)
}

fn explain_batch(
    model: &GnnModel,
    graphs: &[&Graph],
    first_graph: usize,
    batch: &GraphBatch,
    config: &GnnExplainerConfig,
) -> Result<Vec<Explanation>> {
    let device = model.device();
    let num_graphs = batch.num_graphs;
    let feature_dim = batch.x.size()[1];
    // GraphBatch lists both directions of undirected edge k at positions 2k and 2k + 1.
    let edge_graph = batch.batch.index_select(0, &batch.edge_index.get(0)).slice(0, 0, None, 2);

    let predicted = tch::no_grad(|| model.forward_t(&batch.input(), false).log_probs.argmax(-1, true));

    let edges_per_graph: Vec<f32> = graphs.iter().map(|g| g.edges.len().max(1) as f32).collect();
    let edge_counts = Tensor::from_slice(&edges_per_graph).to_device(device);
    let (edge_init, feature_init) = initial_masks(graphs, first_graph, feature_dim as usize, config.seed);
    let edge_param = Tensor::from_slice(&edge_init).to_device(device).set_requires_grad(true);
    let feature_param =
        Tensor::from_slice(&feature_init).view([num_graphs, feature_dim]).to_device(device).set_requires_grad(true);

    let mut adam = Adam::new(&[&edge_param, &feature_param], config.lr);
    for _ in 0..config.epochs {
        let loss = masked_loss(model, batch, &edge_param, &feature_param, &predicted, &edge_graph, &edge_counts, config);
        let grads = Tensor::run_backward(&[loss], &[&edge_param, &feature_param], false, false);
        adam.step(&[&edge_param, &feature_param], &grads);
    }

    let (edge_mask, feature_mask, importance) = tch::no_grad(|| {
        let edge_mask = edge_param.sigmoid();
        let feature_mask = feature_param.sigmoid();
        let feature_part =
            (&batch.x.abs() * feature_mask.index_select(0, &batch.batch)).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        let directed = edge_mask.repeat_interleave_self_int(2, 0, None);
        let importance = feature_part.index_add(0, &batch.edge_index.get(1), &directed);
        (edge_mask, feature_mask, importance)
    });
    let edge_mask = to_vec(&edge_mask)?;
    let feature_mask = to_vec(&feature_mask)?;
    let importance = to_vec(&importance)?;
    let width = feature_dim as usize;
    let (mut node_offset, mut edge_offset) = (0, 0);
    let mut out = Vec::with_capacity(graphs.len());
    for (g, graph) in graphs.iter().enumerate() {
        out.push(Explanation {
            edge_mask: edge_mask[edge_offset..edge_offset + graph.edges.len()].to_vec(),
            feature_mask: feature_mask[g * width..(g + 1) * width].to_vec(),
            node_importance: importance[node_offset..node_offset + graph.num_nodes].to_vec(),
        });
        node_offset += graph.num_nodes;
        edge_offset += graph.edges.len();
    }
    Ok(out)
}

/// Sum over graphs of: -log p(predicted class | masked graph) + the mask penalties.
#[allow(clippy::too_many_arguments)]
fn masked_loss(
    model: &GnnModel,
    batch: &GraphBatch,
    edge_param: &Tensor,
    feature_param: &Tensor,
    predicted: &Tensor,
    edge_graph: &Tensor,
    edge_counts: &Tensor,
    config: &GnnExplainerConfig,
) -> Tensor {
    let edge_mask = edge_param.sigmoid();
    let feature_mask = feature_param.sigmoid();
    let x = &batch.x * feature_mask.index_select(0, &batch.batch);
    let edge_weight = edge_mask.repeat_interleave_self_int(2, 0, None);
    let input = GraphInput {
        x: &x,
        edge_index: &batch.edge_index,
        edge_weight: Some(&edge_weight),
        batch: &batch.batch,
        num_graphs: batch.num_graphs,
    };
    let out = model.forward_t(&input, false);
    let prediction_loss = -out.log_probs.gather(1, predicted, false).sum(Kind::Float);

    let edge_size = edge_mask.sum(Kind::Float) * config.edge_size;
    // Mean entropy per graph, summed over graphs: each edge weighs 1 / (edges of its graph).
    let edge_entropy =
        (binary_entropy(&edge_mask) / edge_counts.index_select(0, edge_graph)).sum(Kind::Float) * config.edge_entropy;
    let feature_size = feature_mask.mean_dim([1i64].as_slice(), false, Kind::Float).sum(Kind::Float) * config.feature_size;
    let feature_entropy =
        binary_entropy(&feature_mask).mean_dim([1i64].as_slice(), false, Kind::Float).sum(Kind::Float) * config.feature_entropy;
    prediction_loss + edge_size + edge_entropy + feature_size + feature_entropy
}

/// Initial mask values, drawn per graph from a generator named after the graph's position in
/// the input, so a graph's explanation does not depend on how graphs are batched. As in PyTorch
/// Geometric: edge mask logits ~ N(1, gain(relu) * sqrt(2 / (2 * num_nodes))), so every edge
/// starts mostly kept; feature mask logits ~ N(0, 0.1).
fn initial_masks(graphs: &[&Graph], first_graph: usize, feature_dim: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut edges = Vec::new();
    let mut features = Vec::with_capacity(graphs.len() * feature_dim);
    for (i, g) in graphs.iter().enumerate() {
        let mut rng = rng_for(seed, &format!("gnnexplainer/init/{}", first_graph + i));
        let std = 2f64.sqrt() * (2.0 / (2.0 * g.num_nodes as f64)).sqrt();
        edges.extend((0..g.edges.len()).map(|_| (1.0 + std * standard_normal(&mut rng)) as f32));
        features.extend((0..feature_dim).map(|_| (0.1 * standard_normal(&mut rng)) as f32));
    }
    (edges, features)
}

/// One N(0, 1) draw (Box-Muller).
fn standard_normal(rng: &mut Rng) -> f64 {
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn binary_entropy(mask: &Tensor) -> Tensor {
    let rest: Tensor = 1.0 - mask;
    -(mask * (mask + EPS).log()) - &rest * (&rest + EPS).log()
}

fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous().view([-1]))?)
}

/// Adam over a few free tensors (the masks), so the model's own variables are never touched
/// and no optimizer state lives in its var store.
struct Adam {
    lr: f64,
    step: i32,
    first: Vec<Tensor>,
    second: Vec<Tensor>,
}

impl Adam {
    const BETA1: f64 = 0.9;
    const BETA2: f64 = 0.999;
    const EPSILON: f64 = 1e-8;

    fn new(params: &[&Tensor], lr: f64) -> Adam {
        Adam {
            lr,
            step: 0,
            first: params.iter().map(|p| p.zeros_like()).collect(),
            second: params.iter().map(|p| p.zeros_like()).collect(),
        }
    }

    fn step(&mut self, params: &[&Tensor], grads: &[Tensor]) {
        self.step += 1;
        let correction1 = 1.0 - Self::BETA1.powi(self.step);
        let correction2 = 1.0 - Self::BETA2.powi(self.step);
        tch::no_grad(|| {
            for (i, (param, grad)) in params.iter().zip(grads).enumerate() {
                self.first[i] = &self.first[i] * Self::BETA1 + grad * (1.0 - Self::BETA1);
                self.second[i] = &self.second[i] * Self::BETA2 + grad.square() * (1.0 - Self::BETA2);
                let update = (&self.first[i] / correction1) / ((&self.second[i] / correction2).sqrt() + Self::EPSILON) * self.lr;
                let mut param = param.shallow_clone();
                let _ = param.f_sub_(&update);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Arch, ModelSpec};

    fn star(leaves: u32, label: usize) -> Graph {
        Graph {
            num_nodes: leaves as usize + 1,
            edges: (1..=leaves).map(|v| (0, v)).collect(),
            node_labels: None,
            node_attributes: None,
            label,
        }
    }

    fn path(n: u32) -> Graph {
        Graph {
            num_nodes: n as usize,
            edges: (1..n).map(|v| (v - 1, v)).collect(),
            node_labels: None,
            node_attributes: None,
            label: 0,
        }
    }

    fn model(features: &FeatureSpec) -> GnnModel {
        let _torch_seed = crate::rng::seed_torch(3);
        let spec = ModelSpec::published(Arch::Gin, features.dim(), 16, 2, features.clone());
        GnnModel::new(spec, Device::Cpu).unwrap()
    }

    #[test]
    fn masks_are_shaped_like_the_graphs_and_stay_in_range() {
        let features = FeatureSpec::OneHotDegree { max_degree: 5 };
        let m = model(&features);
        let (a, b, c) = (star(4, 1), path(6), star(2, 0));
        let config = GnnExplainerConfig { epochs: 20, batch_graphs: 2, ..Default::default() };
        let explanations = explain(&m, &[&a, &b, &c], &features, &config).unwrap();
        assert_eq!(explanations.len(), 3);
        for (e, g) in explanations.iter().zip([&a, &b, &c]) {
            assert_eq!(e.edge_mask.len(), g.edges.len());
            assert_eq!(e.feature_mask.len(), features.dim());
            assert_eq!(e.node_importance.len(), g.num_nodes);
            assert!(e.edge_mask.iter().chain(&e.feature_mask).all(|&v| v > 0.0 && v < 1.0));
            assert!(e.node_importance.iter().all(|v| v.is_finite() && *v >= 0.0));
        }
        // The star's centre meets every edge: it outranks each leaf.
        let centre = explanations[0].node_importance[0];
        assert!(explanations[0].node_importance[1..].iter().all(|&leaf| centre > leaf));
    }

    #[test]
    fn batching_does_not_change_an_explanation() {
        let features = FeatureSpec::OneHotDegree { max_degree: 5 };
        let m = model(&features);
        let (a, b, c) = (star(3, 1), path(5), star(4, 0));
        let config = GnnExplainerConfig { epochs: 30, ..Default::default() };
        let together = explain(&m, &[&a, &b, &c], &features, &config).unwrap();
        let one_by_one =
            explain(&m, &[&a, &b, &c], &features, &GnnExplainerConfig { batch_graphs: 1, ..config.clone() }).unwrap();
        for (x, y) in together.iter().zip(&one_by_one) {
            for (p, q) in x.node_importance.iter().zip(&y.node_importance) {
                assert!((p - q).abs() < 1e-4, "{x:?} vs {y:?}");
            }
        }
        assert_eq!(together, explain(&m, &[&a, &b, &c], &features, &config).unwrap());
        let reseeded = explain(&m, &[&a, &b, &c], &features, &GnnExplainerConfig { seed: 11, ..config }).unwrap();
        assert_ne!(together, reseeded);
    }

    #[test]
    fn size_penalty_shrinks_the_masks() {
        let features = FeatureSpec::OneHotDegree { max_degree: 5 };
        let m = model(&features);
        let g = star(5, 1);
        let light = GnnExplainerConfig { epochs: 100, edge_size: 0.0, edge_entropy: 0.0, ..Default::default() };
        let heavy = GnnExplainerConfig { edge_size: 5.0, ..light.clone() };
        let sum = |c: &GnnExplainerConfig| -> f32 { explain(&m, &[&g], &features, c).unwrap()[0].edge_mask.iter().sum() };
        assert!(sum(&heavy) < sum(&light), "a larger size weight must keep fewer edges");
    }

    #[test]
    fn bad_settings_and_inputs_are_errors() {
        let features = FeatureSpec::OneHotDegree { max_degree: 5 };
        let m = model(&features);
        let g = star(2, 0);
        for bad in [
            GnnExplainerConfig { epochs: 0, ..Default::default() },
            GnnExplainerConfig { lr: -1.0, ..Default::default() },
            GnnExplainerConfig { edge_size: f64::NAN, ..Default::default() },
            GnnExplainerConfig { batch_graphs: 0, ..Default::default() },
        ] {
            assert!(node_importance(&m, &[&g], &features, &bad).is_err(), "{bad:?}");
        }
        let wrong = FeatureSpec::OneHotDegree { max_degree: 2 };
        assert!(node_importance(&m, &[&g], &wrong, &GnnExplainerConfig::default()).is_err());
        let empty = Graph { num_nodes: 0, edges: vec![], node_labels: None, node_attributes: None, label: 0 };
        assert!(node_importance(&m, &[&empty], &features, &GnnExplainerConfig::default()).is_err());
    }
}
