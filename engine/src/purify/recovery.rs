//! Trigger recovery: for each candidate trigger size, train generators so that triggered clean
//! graphs collapse into one dense region of the model's (centred) embedding space, keep the best
//! of several restarts, and distil a universal trigger from it.

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use tch::nn::OptimizerConfig;
use tch::{nn, Kind, Tensor};

use super::generator::TriggerGenerator;
use crate::data::Graph;
use crate::models::GnnModel;
use crate::montage::{feature_parts, generated_width, slot_pairs, MontageBatch, MontageInputs};
use crate::progress::{Progress, ProgressEvent};
use crate::rng::Rng;
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecoveryConfig {
    /// Trigger sizes (node counts) to try.
    pub sizes: Vec<usize>,
    /// Further sizes as shares of the sample's average graph: attacks scale their trigger with
    /// the graphs (Sub-BA plants 20% of the average graph, 15 nodes on COLLAB).
    pub size_fractions: Vec<f64>,
    pub epochs: usize,
    pub restarts: usize,
    /// Hinge threshold T on pairwise cosine similarity.
    pub threshold: f64,
    pub lr: f64,
    pub generator_hidden: usize,
    /// Also try every connected pattern of each size up to [`super::census::MAX_CENSUS_NODES`]
    /// nodes, judged by the same evidence as the generator's.
    pub census: bool,
    /// Most edges the generator's training batch holds: past it, the generator trains on a
    /// class-stratified subset of the unlearning graphs (see [`super::budget`]).
    pub batch_edges: usize,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            sizes: vec![2, 3, 4, 5],
            size_fractions: vec![0.1, 0.2, 0.3],
            epochs: 20,
            restarts: 5,
            threshold: 0.9,
            lr: 0.01,
            generator_hidden: 64,
            census: true,
            batch_edges: 20_000,
        }
    }
}

impl RecoveryConfig {
    /// Refuses settings that have no meaning (see [`super::PurifyConfig::validate`]).
    pub fn validate(&self) -> Result<()> {
        use super::config_check::{at_least, positive};
        if self.sizes.is_empty() {
            return Err(Error::setting("recovery.sizes", "must list at least one trigger size, got []"));
        }
        for &size in &self.sizes {
            at_least("recovery.sizes", size, 2)?;
        }
        for &f in &self.size_fractions {
            if !(f > 0.0 && f <= 0.5) {
                return Err(Error::setting("recovery.size_fractions", format!("each must be in (0, 0.5], got {f}")));
            }
        }
        at_least("recovery.epochs", self.epochs, 1)?;
        at_least("recovery.restarts", self.restarts, 1)?;
        at_least("recovery.generator_hidden", self.generator_hidden, 1)?;
        at_least("recovery.batch_edges", self.batch_edges, 1)?;
        positive("recovery.lr", self.lr)?;
        // A cosine similarity threshold: anything outside [-1, 1] makes the hinge constant.
        if !(-1.0..=1.0).contains(&self.threshold) {
            return Err(Error::setting("recovery.threshold", format!("must be in [-1, 1], got {}", self.threshold)));
        }
        Ok(())
    }
}

/// A recovered (or enumerated) universal pattern: an adjacency over `size` slots and, for
/// non-structural features, the slot nodes' features. The attacker's side has its own type,
/// [`crate::attacks::Trigger`], which is a graph on its own nodes and carries no features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pattern {
    pub size: usize,
    /// Edges among the slots, `(i, j)` with `i < j`.
    pub edges: Vec<(usize, usize)>,
    /// Generated features of each slot (the non-structural feature columns), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_features: Option<Vec<Vec<f32>>>,
}

impl Pattern {
    /// The adjacency vector over slot pairs, in [`slot_pairs`] order.
    pub fn adjacency(&self, device: tch::Device) -> Tensor {
        let values: Vec<f32> =
            slot_pairs(self.size).into_iter().map(|p| if self.edges.contains(&p) { 1.0 } else { 0.0 }).collect();
        Tensor::from_slice(&values).to_device(device)
    }

    /// Whether the pattern has an edge and every slot reaches every other along its edges.
    pub fn is_connected(&self) -> bool {
        let edges: Vec<(u32, u32)> = self.edges.iter().map(|&(u, v)| (u as u32, v as u32)).collect();
        !edges.is_empty() && crate::data::graph::components(self.size, &edges).iter().all(|&c| c == 0)
    }

    pub fn features(&self, device: tch::Device) -> Option<Tensor> {
        self.slot_features.as_ref().map(|rows| {
            let width = rows.first().map_or(0, Vec::len) as i64;
            let flat: Vec<f32> = rows.iter().flatten().copied().collect();
            Tensor::from_slice(&flat).view([self.size as i64, width]).to_device(device)
        })
    }
}

/// The best trigger found for one size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveredTrigger {
    pub trigger: Pattern,
    /// Mean hinge loss of the universal trigger (lower = denser embedding cluster).
    pub objective: f64,
    /// Mean pairwise cosine similarity of the triggered graphs' centred embeddings.
    pub mean_similarity: f64,
    /// Which restart it came from, and every restart's objective.
    pub restart: usize,
    pub restart_objectives: Vec<f64>,
}

/// The `n` least important nodes of each graph (all nodes of graphs smaller than `n`), least
/// important first.
pub fn least_important_nodes(importance: &[Vec<f32>], n: usize) -> Vec<Vec<usize>> {
    importance
        .iter()
        .map(|scores| {
            let mut order: Vec<usize> = (0..scores.len()).collect();
            order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
            order.truncate(n);
            order
        })
        .collect()
}

/// `count` random node sets of up to `n` nodes per graph, in the same layout as the graphs
/// (graph-major: all sets of graph 0, then graph 1, ...).
pub fn random_placements(graphs: &[&Graph], n: usize, count: usize, rng: &mut Rng) -> Vec<Vec<usize>> {
    let mut out = Vec::with_capacity(graphs.len() * count);
    for g in graphs {
        for _ in 0..count {
            out.push(random_node_set(g, n, rng));
        }
    }
    out
}

/// `n` distinct random nodes of `graph` (all of them, shuffled, when it has fewer).
pub fn random_node_set(graph: &Graph, n: usize, rng: &mut Rng) -> Vec<usize> {
    let mut nodes: Vec<usize> = (0..graph.num_nodes).collect();
    nodes.shuffle(rng);
    nodes.truncate(n);
    nodes
}

/// Centred graph embeddings of a montaged batch.
fn centred_embeddings(model: &GnnModel, batch: &MontageBatch, inputs: &MontageInputs, centre: &Tensor) -> Tensor {
    model.forward_t(&inputs.graph_input(batch), false).embedding - centre
}

/// Hinge objective over all pairs: mean of max(0, T - cos), plus the mean cosine.
pub fn similarity_objective(embeddings: &Tensor, threshold: f64) -> (Tensor, Tensor) {
    let b = embeddings.size()[0];
    let normed = embeddings / embeddings.norm_scalaropt_dim(2, [1i64].as_slice(), true).clamp_min(1e-8);
    let cos = normed.matmul(&normed.tr());
    let upper = Tensor::ones([b, b], (Kind::Bool, embeddings.device())).triu(1);
    let pairs = cos.masked_select(&upper);
    let hinge = (-(&pairs) + threshold).relu().mean(Kind::Float);
    (hinge, pairs.mean(Kind::Float))
}

/// Mean embedding of the clean graphs: the centre of the embedding space.
pub fn embedding_centre(model: &GnnModel, batch: &MontageBatch) -> Tensor {
    tch::no_grad(|| {
        model.forward_t(&batch.assemble_clean().graph_input(batch), false).embedding.mean_dim(
            [0i64].as_slice(),
            true,
            Kind::Float,
        )
    })
}

/// Recovers the best trigger of one size from the clean sample.
#[allow(clippy::too_many_arguments)]
pub fn recover_size(
    model: &GnnModel,
    graphs: &[&Graph],
    labels: &[usize],
    placements: &[Vec<usize>],
    size: usize,
    config: &RecoveryConfig,
    seed: u64,
    progress: &mut dyn Progress,
) -> Result<RecoveredTrigger> {
    if graphs.len() < 2 {
        return Err(Error::invalid("trigger recovery needs at least 2 clean graphs"));
    }
    let spec = model.spec();
    let device = model.device();
    let parts = feature_parts(&spec.features);
    let batch = MontageBatch::build(graphs, labels, placements, size, &spec.features, device)?;
    let centre = embedding_centre(model, &batch);
    let mut best: Option<(f64, f64, usize, Pattern, bool)> = None;
    let mut restart_objectives = Vec::with_capacity(config.restarts);
    for restart in 0..config.restarts.max(1) {
        let _torch_seed = crate::rng::seed_torch(seed.wrapping_mul(1000) + restart as u64 * 7919 + size as u64);
        let generator = TriggerGenerator::new(size, spec.in_features, &parts, config.generator_hidden, device);
        let mut opt = nn::Adam::default().build(&generator.vs, config.lr)?;
        for epoch in 0..config.epochs {
            let proposal = generator.propose(&batch.slot_input);
            let inputs = batch.assemble(&proposal.adjacency, proposal.features.as_ref());
            let emb = centred_embeddings(model, &batch, &inputs, &centre);
            let (loss, _) = similarity_objective(&emb, config.threshold);
            opt.backward_step(&loss);
            if !progress.step(ProgressEvent {
                phase: "recovery",
                step: epoch + 1,
                total: config.epochs,
                message: format!("size {size} restart {}/{}", restart + 1, config.restarts.max(1)),
            }) {
                return Err(Error::Cancelled);
            }
        }
        let trigger = tch::no_grad(|| distil_universal(&generator, &batch, size, generated_width(&parts)))?;
        let (objective, similarity) = evaluate_pattern(model, &batch, &centre, &trigger, config.threshold);
        restart_objectives.push(objective);
        // A connected pattern beats any other: an edge-deleting or scattered pattern can score
        // a low objective by pushing graphs towards the majority class, but the attacks plant
        // one connected subgraph (on bitcoin the empty pattern won 3 sizes of 4 by objective).
        let connected = trigger.is_connected();
        if best.as_ref().is_none_or(|b| (connected, -objective) > (b.4, -b.0)) {
            best = Some((objective, similarity, restart, trigger, connected));
        }
    }
    let (objective, mean_similarity, restart, trigger, _) = best.expect("at least one restart");
    Ok(RecoveredTrigger { trigger, objective, mean_similarity, restart, restart_objectives })
}

/// The similarity objective and mean cosine of one fixed pattern.
fn evaluate_pattern(model: &GnnModel, batch: &MontageBatch, centre: &Tensor, trigger: &Pattern, threshold: f64) -> (f64, f64) {
    let device = model.device();
    tch::no_grad(|| {
        let inputs = batch.assemble_fixed(&trigger.adjacency(device), trigger.features(device).as_ref());
        let emb = centred_embeddings(model, batch, &inputs, centre);
        let (hinge, mean) = similarity_objective(&emb, threshold);
        (hinge.double_value(&[]), mean.double_value(&[]))
    })
}

/// [`RecoveredTrigger::objective`] and `mean_similarity` of a pattern found another way (the
/// census), measured exactly as recovery measures its own.
pub fn pattern_objective(
    model: &GnnModel,
    graphs: &[&Graph],
    labels: &[usize],
    placements: &[Vec<usize>],
    trigger: &Pattern,
    threshold: f64,
) -> Result<(f64, f64)> {
    let batch = MontageBatch::build(graphs, labels, placements, trigger.size, &model.spec().features, model.device())?;
    let centre = embedding_centre(model, &batch);
    Ok(evaluate_pattern(model, &batch, &centre, trigger, threshold))
}

/// Majority vote of the generator's per-graph proposals: an edge is in the universal trigger
/// when most graphs' proposals hold it; discrete features take the most frequent value, and
/// continuous ones the mean.
fn distil_universal(generator: &TriggerGenerator, batch: &MontageBatch, size: usize, width: usize) -> Result<Pattern> {
    let proposal = generator.propose(&batch.slot_input);
    let votes = Vec::<f32>::try_from(
        proposal.adjacency.detach().mean_dim([0i64].as_slice(), false, Kind::Float).to_device(tch::Device::Cpu),
    )?;
    let edges = slot_pairs(size).into_iter().zip(votes).filter(|(_, v)| *v >= 0.5).map(|(p, _)| p).collect();
    let slot_features = match (&proposal.features, width) {
        (Some(f), w) if w > 0 => {
            let mean = f.detach().mean_dim([0i64].as_slice(), false, Kind::Float).to_device(tch::Device::Cpu);
            let flat = Vec::<f32>::try_from(mean.contiguous().view([-1]))?;
            Some(flat.chunks(w).map(<[f32]>::to_vec).collect())
        }
        _ => None,
    };
    let mut trigger = Pattern { size, edges, slot_features };
    snap_discrete_features(&mut trigger, generator);
    Ok(trigger)
}

/// Averaged one-hot blocks are snapped back to one-hot (the most voted value).
fn snap_discrete_features(trigger: &mut Pattern, generator: &TriggerGenerator) {
    let Some(rows) = trigger.slot_features.as_mut() else { return };
    for (offset, dim) in generator.discrete_blocks() {
        for row in rows.iter_mut() {
            let block = &mut row[offset..offset + dim];
            let best = (0..dim).max_by(|&a, &b| block[a].total_cmp(&block[b])).unwrap_or(0);
            block.iter_mut().enumerate().for_each(|(i, v)| *v = if i == best { 1.0 } else { 0.0 });
        }
    }
}
