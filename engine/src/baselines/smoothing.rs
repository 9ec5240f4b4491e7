//! Randomized smoothing: classify many random subgraphs of each graph and return the majority
//! class. A trigger that a subsample breaks up (one of its nodes or edges missing) stops
//! working in that subsample; when that happens in most subsamples the vote goes to the class
//! of the rest of the graph (Zhang et al.'s randomized subsampling, Wang et al.'s smoothing of
//! graph structure).
//!
//! Each subsample keeps every node with probability `node_keep` (at least one node) and every
//! edge between kept nodes with probability `edge_keep`. The draws come from the defence's
//! seed and a hash of the graph's content (not its label, not its position in the list), so
//! the smoothed classifier is a fixed function of the graph.

use rand::Rng as _;
use serde::{Deserialize, Serialize};

use super::inference::{batch_features, prepare, FeatureSource};
use crate::data::Graph;
use crate::metrics::predict_classes;
use crate::models::GnnModel;
use crate::rng::{rng_for, Rng};
use crate::{Error, Result};

/// Most subsamples per graph accepted (each is a forward pass over a graph).
pub const MAX_SAMPLES: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmoothingConfig {
    /// Subsamples per graph (votes).
    pub samples: usize,
    /// Probability that an edge between two kept nodes is kept, in (0, 1].
    pub edge_keep: f64,
    /// Probability that a node is kept, in (0, 1]; a dropped node takes its edges with it.
    pub node_keep: f64,
    /// Features the model sees for a subsample.
    pub features: FeatureSource,
}

impl Default for SmoothingConfig {
    fn default() -> Self {
        SmoothingConfig { samples: 20, edge_keep: 0.8, node_keep: 1.0, features: FeatureSource::Original }
    }
}

impl SmoothingConfig {
    pub fn validate(&self) -> Result<()> {
        if self.samples == 0 || self.samples > MAX_SAMPLES {
            return Err(Error::invalid(format!(
                "smoothing needs between 1 and {MAX_SAMPLES} samples per graph, got {}",
                self.samples
            )));
        }
        for (name, p) in [("edge_keep", self.edge_keep), ("node_keep", self.node_keep)] {
            if !(p > 0.0 && p <= 1.0) {
                return Err(Error::invalid(format!("smoothing {name} must be a probability in (0, 1], got {p}")));
            }
        }
        Ok(())
    }
}

/// A classifier of subsamples, as [`smoothed_predictions`] calls it: the subsamples and, for
/// each, the position of the graph it came from (for errors); one class per subsample.
pub type SubsampleClassifier<'a> = dyn FnMut(&[&Graph], &[usize]) -> Result<Vec<usize>> + 'a;

/// The vote of one graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmoothedPrediction {
    /// The majority class (ties to the smallest class index).
    pub class: usize,
    /// `votes[c]`: subsamples classified as class `c`.
    pub votes: Vec<usize>,
}

/// The class with the most votes; ties go to the smallest class index (as `argmax` breaks
/// them), so the vote never depends on the order votes were cast in.
pub fn majority_vote(votes: &[usize]) -> usize {
    let mut best = 0;
    for (class, &count) in votes.iter().enumerate() {
        if count > votes[best] {
            best = class;
        }
    }
    best
}

/// A seed for `graph`'s subsamples from its structure, node labels and attributes.
pub fn graph_seed(seed: u64, graph: &Graph) -> u64 {
    let mut h = Fnv::new();
    h.write(&(graph.num_nodes as u64).to_le_bytes());
    h.write(&(graph.edges.len() as u64).to_le_bytes());
    for &(u, v) in &graph.edges {
        h.write(&u.to_le_bytes());
        h.write(&v.to_le_bytes());
    }
    match &graph.node_labels {
        Some(labels) => {
            h.write(&[1]);
            labels.iter().for_each(|l| h.write(&l.to_le_bytes()));
        }
        None => h.write(&[0]),
    }
    match &graph.node_attributes {
        Some(attributes) => {
            h.write(&[1]);
            attributes.iter().for_each(|a| h.write(&a.to_bits().to_le_bytes()));
        }
        None => h.write(&[0]),
    }
    seed ^ h.finish()
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// One random subgraph of `graph`: nodes kept with probability `node_keep` (one node drawn
/// uniformly when none survives), renumbered in their original order with their labels and
/// attribute rows, and the edges among them kept with probability `edge_keep`.
pub fn subsample(graph: &Graph, config: &SmoothingConfig, rng: &mut Rng) -> Graph {
    let n = graph.num_nodes;
    let mut kept: Vec<bool> = (0..n).map(|_| rng.gen_bool(config.node_keep)).collect();
    if n > 0 && !kept.contains(&true) {
        kept[rng.gen_range(0..n)] = true;
    }
    let mut new_index = vec![u32::MAX; n];
    let mut count = 0u32;
    for (v, &keep) in kept.iter().enumerate() {
        if keep {
            new_index[v] = count;
            count += 1;
        }
    }
    let mut edges = Vec::with_capacity(graph.edges.len());
    for &(u, v) in &graph.edges {
        // Draw for every edge, kept endpoints or not, so one node's fate does not shift the
        // draws of unrelated edges.
        let keep_edge = rng.gen_bool(config.edge_keep);
        let (nu, nv) = (new_index[u as usize], new_index[v as usize]);
        if keep_edge && nu != u32::MAX && nv != u32::MAX {
            edges.push((nu, nv));
        }
    }
    let node_labels =
        graph.node_labels.as_ref().map(|labels| labels.iter().zip(&kept).filter(|(_, &k)| k).map(|(&l, _)| l).collect());
    let dim = graph.attr_dim();
    let node_attributes = graph.node_attributes.as_ref().map(|attributes| {
        if dim == 0 {
            return Vec::new();
        }
        attributes.chunks_exact(dim).zip(&kept).filter(|(_, &k)| k).flat_map(|(row, _)| row.iter().copied()).collect()
    });
    Graph { num_nodes: count as usize, edges, node_labels, node_attributes, label: graph.label }
}

/// The `config.samples` subsamples of `graph` under the defence's `seed`.
pub fn samples(graph: &Graph, config: &SmoothingConfig, seed: u64) -> Vec<Graph> {
    samples_from(graph, config, graph_seed(seed, graph))
}

/// The subsamples drawn from one graph's seed (see [`graph_seed`]).
fn samples_from(graph: &Graph, config: &SmoothingConfig, graph_seed: u64) -> Vec<Graph> {
    let mut rng = rng_for(graph_seed, "baselines/smoothing");
    (0..config.samples).map(|_| subsample(graph, config, &mut rng)).collect()
}

/// Smoothed predictions of any classifier: `classify(subsamples, positions)` returns one class
/// per subsample (`positions[i]` is the index in `graphs` that subsample `i` came from, for
/// errors). `graph_seeds[i]` seeds the subsamples of `graphs[i]` (see [`graph_seed`]; the
/// defence hashes the graph as given, before its features are frozen). Classes at or above
/// `num_classes` are an error.
pub fn smoothed_predictions(
    graphs: &[&Graph],
    graph_seeds: &[u64],
    config: &SmoothingConfig,
    num_classes: usize,
    graphs_per_call: usize,
    classify: &mut SubsampleClassifier<'_>,
) -> Result<Vec<SmoothedPrediction>> {
    config.validate()?;
    if num_classes == 0 {
        return Err(Error::invalid("smoothing needs at least one class"));
    }
    if graph_seeds.len() != graphs.len() {
        return Err(Error::invalid(format!("{} subsample seeds for {} graphs", graph_seeds.len(), graphs.len())));
    }
    // Whole graphs per call, as many as fit, at least one.
    let per_call = (graphs_per_call / config.samples).max(1);
    let mut out = Vec::with_capacity(graphs.len());
    for (chunk_index, chunk) in graphs.chunks(per_call).enumerate() {
        let mut subsamples = Vec::with_capacity(chunk.len() * config.samples);
        let mut positions = Vec::with_capacity(chunk.len() * config.samples);
        for (offset, g) in chunk.iter().enumerate() {
            let position = chunk_index * per_call + offset;
            subsamples.extend(samples_from(g, config, graph_seeds[position]));
            positions.extend(std::iter::repeat_n(position, config.samples));
        }
        let refs: Vec<&Graph> = subsamples.iter().collect();
        let classes = classify(&refs, &positions)?;
        if classes.len() != refs.len() {
            return Err(Error::invalid(format!(
                "the classifier returned {} classes for {} subsamples",
                classes.len(),
                refs.len()
            )));
        }
        for votes_of_graph in classes.chunks(config.samples) {
            let mut votes = vec![0usize; num_classes];
            for &c in votes_of_graph {
                *votes
                    .get_mut(c)
                    .ok_or_else(|| Error::invalid(format!("the classifier returned class {c} of {num_classes}")))? += 1;
            }
            out.push(SmoothedPrediction { class: majority_vote(&votes), votes });
        }
    }
    Ok(out)
}

/// Smoothed predictions of `model`.
pub(super) fn predict(
    model: &GnnModel,
    graphs: &[&Graph],
    config: &SmoothingConfig,
    seed: u64,
    batch_size: usize,
) -> Result<Vec<SmoothedPrediction>> {
    let spec = &model.spec().features;
    let prepared = graphs
        .iter()
        .enumerate()
        .map(|(position, g)| prepare(g, spec, config.features, position))
        .collect::<Result<Vec<Graph>>>()?;
    let refs: Vec<&Graph> = prepared.iter().collect();
    let seeds: Vec<u64> = graphs.iter().map(|g| graph_seed(seed, g)).collect();
    let features = batch_features(spec, config.features);
    let mut classify =
        |subsamples: &[&Graph], positions: &[usize]| predict_classes(model, subsamples, positions, &features, batch_size);
    let num_classes = model.spec().num_classes;
    smoothed_predictions(&refs, &seeds, config, num_classes, batch_size, &mut classify)
}
