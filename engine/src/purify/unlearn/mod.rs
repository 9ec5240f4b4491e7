//! Unlearning a recovered trigger.
//!
//! Two modes. `Paper` is the loss as published: a teacher (the model fine-tuned on the clean
//! sample) anchors the student's clean logits, triggered logits are pulled to clean ones, and
//! Grad-CAM heat maps of triggered graphs are pulled to those of their clean originals. `Robust`
//! (the default) replaces the consistency terms by cross-entropy of triggered clean graphs with
//! their true labels, up-weights graphs whose label is not the suspected target (they carry the
//! signal), holds clean graphs to the input model's own answers (its teacher is the input model),
//! and trains only the last conv block and the head. Both montage the trigger at the
//! explainer's positions plus fresh random node sets every epoch, keep BatchNorm in evaluation
//! mode, and roll back when a class's recall collapses.
//!
//! The loop is here; its configuration (`config`), loss terms (`losses`) and collapse guard
//! (`guard`) each have a file.

mod config;
mod guard;
mod losses;

pub use config::{UnlearnConfig, UnlearnMode};
use guard::{collapsed, worst_drop, WatchedGraphs};
use losses::{class_weights, logit_scale, paper_loss, RobustStep, RobustTerms};

use rand::seq::SliceRandom;
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use tch::nn::OptimizerConfig;
use tch::{nn, Kind, Tensor};

use super::evidence;
use super::frozen::FrozenInputs;
use super::recovery::{random_node_set, random_placements, Pattern};
use crate::data::Graph;
use crate::models::GnnModel;
use crate::montage::{MontageBatch, MontageInputs};
use crate::optim::FlatAdam;
use crate::progress::{Progress, ProgressEvent};
use crate::rng::rng_for;
use crate::{Error, Result};

/// One triggered copy of an unlearning graph: the graph's index and the nodes the trigger takes.
type PlacedCopy = (usize, Vec<usize>);

/// The clean graphs unlearning sees, with their labels and the explainer's node ranking.
pub struct UnlearnSet<'a> {
    pub graphs: Vec<&'a Graph>,
    pub labels: Vec<usize>,
    /// Every graph's nodes, least important first: the explainer's trigger positions for a
    /// trigger of `n` nodes are the first `n`.
    pub node_order: Vec<Vec<usize>>,
}

impl UnlearnSet<'_> {
    /// The explainer's positions for a trigger of `size` nodes in graph `g`.
    pub fn explainer_positions(&self, g: usize, size: usize) -> Vec<usize> {
        self.node_order.get(g).map(|order| order.iter().take(size).copied().collect()).unwrap_or_default()
    }

    /// Per graph: the explainer's positions for a `size`-node trigger, then `count` random node
    /// sets drawn from the seeded stream `stream` (sets too small to carry an edge are dropped).
    pub fn placements(&self, size: usize, count: usize, seed: u64, stream: &str) -> Vec<Vec<Vec<usize>>> {
        let count = count.max(1);
        let mut rng = rng_for(seed, stream);
        let random = random_placements(&self.graphs, size, count, &mut rng);
        (0..self.graphs.len())
            .map(|g| {
                let mut sets = vec![self.explainer_positions(g, size)];
                sets.extend(random[g * count..(g + 1) * count].iter().cloned());
                sets.retain(|s| s.len() >= 2.min(self.graphs[g].num_nodes));
                sets
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnlearnEpoch {
    pub epoch: usize,
    pub loss: f64,
    /// Accuracy on the held-out clean graphs after the epoch.
    pub holdout_accuracy: f64,
    /// Conditional flip rate of the recovered trigger on held-out graphs after the epoch.
    pub holdout_flip_rate: f64,
    /// Lowest per-class recall change (vs. the start) over held-out and training graphs.
    pub worst_recall_drop: f64,
    /// Share of the epoch's triggered unlearning copies of non-target graphs that the model
    /// sent to the target, as it met them (before each step's update): what decides whether
    /// robust mode trains past `epochs`.
    #[serde(default)]
    pub train_flip_rate: f64,
    /// The rate unlearning aimed the trigger's flip rate at after this epoch: natural patches'
    /// flip rate re-measured on the changed model (see [`unlearn_toward`]), when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub natural_flip_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnlearnOutcome {
    pub history: Vec<UnlearnEpoch>,
    /// Set when the collapse guard restored an earlier epoch's weights.
    pub rolled_back_to_epoch: Option<usize>,
    /// The logit scale the robust losses divided by (1 when scaling was off).
    #[serde(default = "one")]
    pub logit_scale: f64,
}

fn one() -> f64 {
    1.0
}

/// How many conv blocks robust unlearning leaves untrained: all but the last, or all of them
/// when the head alone is trained. Everything after them is trained (see [`trained_by_unlearning`]).
fn robust_frozen_blocks(num_layers: usize, last_conv_too: bool) -> usize {
    if last_conv_too {
        num_layers.saturating_sub(1)
    } else {
        num_layers
    }
}

/// Whether unlearning trains the variable `name` when the first `frozen_blocks` conv blocks stay
/// as they are: a block's variables (`conv3.…`, `bn3.…`, 1-based) are trained when the block comes
/// after the frozen ones, the head's (`fc1.…`, `fc2.…`) always. One rule for both the optimiser
/// and [`FrozenInputs`], which forwards the clean inputs through the same frozen blocks once.
fn trained_by_unlearning(name: &str, frozen_blocks: usize) -> bool {
    block_of(name).is_none_or(|block| block > frozen_blocks)
}

/// The 1-based conv block a variable belongs to, or `None` for the head (either layout).
fn block_of(name: &str) -> Option<usize> {
    crate::models::block_of_variable(name)
}

/// One unlearning step's model outputs.
enum StepOutputs {
    /// The triggered copies' logits, and the whole clean unlearning sample's (one row per
    /// graph) with its pooled embeddings.
    Robust { triggered_logits: Tensor, sample_logits: Tensor, sample_embedding: Tensor },
    /// The triggered copies' full forward pass (the heat maps need every block's output).
    Paper(crate::models::ForwardOutput),
}

impl StepOutputs {
    fn triggered_logits(&self) -> &Tensor {
        match self {
            StepOutputs::Robust { triggered_logits, .. } => triggered_logits,
            StepOutputs::Paper(out) => &out.logits,
        }
    }
}

fn forward(model: &GnnModel, batch: &MontageBatch, inputs: &MontageInputs) -> crate::models::ForwardOutput {
    model.forward_t(&inputs.graph_input(batch), false)
}

/// Fine-tunes a copy of `model` on the clean graphs of `batch` (assembled as `clean`) with
/// cross-entropy for [`UnlearnConfig::teacher_epochs_for_mode`] epochs (none: the copy is the
/// input model): the teacher's logits on those graphs, one row per graph.
fn fine_tuned_teacher(model: &GnnModel, batch: &MontageBatch, clean: &MontageInputs, config: &UnlearnConfig) -> Result<Tensor> {
    let teacher = model.try_clone()?;
    let epochs = config.teacher_epochs_for_mode();
    if epochs > 0 {
        let mut opt = nn::Adam::default().build(teacher.var_store(), config.lr)?;
        for _ in 0..epochs {
            let out = forward(&teacher, batch, clean);
            opt.backward_step(&out.log_probs.nll_loss(&batch.labels));
        }
    }
    for var in teacher.var_store().variables().values() {
        let _ = var.shallow_clone().set_requires_grad(false);
    }
    Ok(tch::no_grad(|| forward(&teacher, batch, clean).logits))
}

/// Unlearns `triggers` from `model` in place, using `train` for the loss and `holdout` only to
/// monitor (accuracy, flip rate of `triggers[0]`, collapse guard).
///
/// Robust mode unlearns every given trigger (the purifier passes each recovered size that
/// points at the target with evidence: the size search cannot tell which one is the
/// attacker's): each triggered copy carries one of them, drawn at random. The paper mode, as
/// published, unlearns `triggers[0]` alone and without pattern dropout.
#[allow(clippy::too_many_arguments)]
pub fn unlearn(
    model: &mut GnnModel,
    train: &UnlearnSet,
    holdout: &UnlearnSet,
    triggers: &[Pattern],
    target: usize,
    config: &UnlearnConfig,
    seed: u64,
    progress: &mut dyn Progress,
) -> Result<UnlearnOutcome> {
    unlearn_toward(model, train, holdout, triggers, target, config, None, seed, progress)
}

/// The flip rate natural patches give the model as it is now: the level down to which the
/// trigger's effect is an attacker's excess. Re-measured after every epoch because on a
/// backdoored model natural pieces set part of the backdoor off themselves, so the rate
/// measured before unlearning sets the goal too high; as the backdoor goes, so does that part.
pub type NaturalFlipRate<'a> = &'a dyn Fn(&GnnModel) -> Result<f64>;

/// [`unlearn`], converging once the trigger flips no more of the copies than
/// `max(config.converged_flip_rate, natural(model))` after the last epoch.
#[allow(clippy::too_many_arguments)]
pub fn unlearn_toward(
    model: &mut GnnModel,
    train: &UnlearnSet,
    holdout: &UnlearnSet,
    triggers: &[Pattern],
    target: usize,
    config: &UnlearnConfig,
    natural: Option<NaturalFlipRate>,
    seed: u64,
    progress: &mut dyn Progress,
) -> Result<UnlearnOutcome> {
    if train.graphs.is_empty() {
        return Err(Error::invalid("unlearning needs at least one clean graph"));
    }
    let Some(trigger) = triggers.first() else {
        return Err(Error::invalid("unlearning needs at least one trigger"));
    };
    config.validate()?;
    let (triggers, dropout) = match config.mode {
        UnlearnMode::Robust => (triggers, config.pattern_dropout),
        UnlearnMode::Paper => (&triggers[..1], 0.0),
    };
    let spec = model.spec().clone();
    let device = model.device();
    let _torch_seed = crate::rng::seed_torch(seed);
    // The frozen teacher only ever sees the clean graphs, which no placement changes: its
    // outputs are computed once, one row per unlearning graph, and looked up per copy.
    let train_clean = MontageBatch::clean(&train.graphs, &train.labels, &spec.features, device)?;
    // Robust mode trains the last block and the head, or the head alone: the blocks before
    // stay as they are, so the clean sample's features at the first trained block are
    // computed once (about a seventh of an epoch on an AIDS GIN).
    let frozen_blocks = match config.mode {
        UnlearnMode::Robust => robust_frozen_blocks(model.spec().num_layers, config.train_last_conv),
        UnlearnMode::Paper => 0,
    };
    let train_clean_frozen = FrozenInputs::new(model, &train_clean, train_clean.assemble_clean(), frozen_blocks);
    let teacher_logits_clean = fine_tuned_teacher(model, &train_clean, train_clean_frozen.inputs(), config)?;
    let scale = robust_logit_scale(model, &train_clean_frozen, config);
    let teacher_scaled = (&teacher_logits_clean / scale).log_softmax(-1, Kind::Float);
    let teacher_probs = teacher_scaled.exp();
    let mut opt = trained_weights_optimiser(model, frozen_blocks, config.lr)?;

    let mut rng = rng_for(seed, "unlearning-positions");
    let mut epochs = EpochRunner {
        train,
        triggers,
        adjacencies: triggers.iter().map(|t| t.adjacency(device)).collect(),
        slot_features: triggers.iter().map(|t| t.features(device)).collect(),
        dropout,
        config,
        train_clean_frozen: &train_clean_frozen,
        teacher_logits_clean: &teacher_logits_clean,
        target_label: Tensor::from(target as i64).to_device(device),
        robust: RobustTerms {
            config,
            target,
            scale,
            class_w: class_weights(&train.labels, spec.num_classes),
            teacher_scaled: &teacher_scaled,
            teacher_probs: &teacher_probs,
            mixup_rng: rng_for(seed, "unlearning-mixup"),
        },
    };
    let holdout_positions = holdout.placements(trigger.size, config.positions, seed, "holdout-positions");

    // The guard watches every clean graph it has, unlearning and held-out together: recall on
    // a handful of held-out graphs alone moves in steps of one graph, far too coarse.
    let watched = WatchedGraphs::new(model, train, holdout, frozen_blocks)?;
    let start = watched.measure(model)?;
    let (start_recall, support, start_balanced) = (start.recall, start.support, start.balanced_accuracy);
    let mut holdout_monitor =
        HoldoutMonitor::new(model, holdout, &holdout_positions, trigger, frozen_blocks, start.holdout_predicted)?;
    // Only the trained weights change (BatchNorm stays in eval mode), and they live in the
    // optimiser's one flat buffer: a snapshot is one copy of it.
    let mut snapshot = opt.snapshot();
    let mut snapshot_epoch = 0usize;
    let mut history: Vec<UnlearnEpoch> = Vec::with_capacity(config.epochs);
    let max_epochs = config.epoch_cap();
    for epoch in 0..max_epochs {
        if finished(config, epoch, history.last()) {
            break;
        }
        let tally = epochs.run(model, &mut opt, &mut rng)?;
        let now = watched.measure(model)?;
        let (recall, hold_acc, now_balanced) = (now.recall, now.holdout_accuracy, now.balanced_accuracy);
        let drop = worst_drop(&start_recall, &recall, &support);
        let flip = holdout_monitor.flip_rate(model, now.holdout_predicted, target)?;
        history.push(UnlearnEpoch {
            epoch: epoch + 1,
            loss: tally.mean_loss(),
            holdout_accuracy: hold_acc,
            holdout_flip_rate: flip,
            worst_recall_drop: drop,
            train_flip_rate: tally.flip_rate(),
            natural_flip_rate: natural.map(|rate| rate(model)).transpose()?,
        });
        // A collapsed epoch is not kept, but training goes on: the first epochs of a large
        // loss can wreck a class that later epochs restore (the paper mode's logit MSE on AIDS
        // starts near 10^4 and rebuilds held-out accuracy by epoch 25), so the run returns the
        // last epoch that kept every class.
        if !collapsed(drop, config.collapse_drop, start_balanced, now_balanced) {
            opt.snapshot_into(&mut snapshot);
            snapshot_epoch = epoch + 1;
        }
        if !progress.step(ProgressEvent {
            phase: "unlearning",
            step: epoch + 1,
            // Past `epochs` the run goes on only while unlearning has not converged.
            total: if epoch < config.epochs { config.epochs } else { max_epochs },
            message: format!("loss {:.4} holdout acc {:.3} flip {:.3}", tally.mean_loss(), hold_acc, flip),
        }) {
            return Err(Error::Cancelled);
        }
    }
    let rolled_back_to_epoch = (snapshot_epoch < history.len()).then_some(snapshot_epoch);
    if rolled_back_to_epoch.is_some() {
        opt.restore(&snapshot);
    }
    for var in model.var_store().variables().values() {
        let _ = var.shallow_clone().set_requires_grad(false);
    }
    Ok(UnlearnOutcome { history, rolled_back_to_epoch, logit_scale: scale })
}

/// The scale the robust losses divide logits by: the input model's on the clean sample, or 1
/// when scaling is off or the paper's loss is used.
fn robust_logit_scale(model: &GnnModel, clean: &FrozenInputs, config: &UnlearnConfig) -> f64 {
    if config.mode == UnlearnMode::Robust && config.logit_scaling {
        logit_scale(&tch::no_grad(|| clean.forward(model).logits))
    } else {
        1.0
    }
}

/// Whether unlearning stops before `epoch` (0-based), given the last epoch's record: after
/// `epochs` once converged (or when nothing ran), and after `min_epochs` once converged, where
/// converged means the trigger flipped no more copies than the goal (natural patches' rate, or
/// `converged_flip_rate`, whichever is higher).
fn finished(config: &UnlearnConfig, epoch: usize, last: Option<&UnlearnEpoch>) -> bool {
    let converged = last.is_some_and(|h| h.train_flip_rate <= config.converged_flip_rate.max(h.natural_flip_rate.unwrap_or(0.0)));
    (epoch >= config.epochs && (converged || last.is_none())) || (epoch >= config.min_epochs && converged)
}

/// Marks the weights unlearning trains (those after the `frozen_blocks`) and returns one fused
/// Adam over them: libtorch's own Adam costs about ten kernels per weight tensor, per step.
fn trained_weights_optimiser(model: &GnnModel, frozen_blocks: usize, lr: f64) -> Result<FlatAdam> {
    let variables = model.var_store().variables();
    for (name, var) in &variables {
        let trainable = trained_by_unlearning(name, frozen_blocks);
        // Running statistics are buffers, never trained.
        if !name.ends_with("running_mean") && !name.ends_with("running_var") && !name.ends_with("num_batches_tracked") {
            let _ = var.shallow_clone().set_requires_grad(trainable);
        }
    }
    // The parameters only: GIN's eps is a buffer, as in PyG.
    let trained: Vec<Tensor> = model
        .parameter_names()
        .iter()
        .filter_map(|name| variables.get(name))
        .filter(|v| v.requires_grad())
        .map(Tensor::shallow_clone)
        .collect();
    FlatAdam::over(trained, lr, 0.0)
}

/// The held-out copies with the first trigger, placed once for the whole run: batched once,
/// through the frozen blocks once, and measured each epoch against that epoch's clean
/// predictions (at the start, the guard's).
struct HoldoutMonitor {
    probe: Option<evidence::EvidenceProbe>,
    triggered: Option<FrozenInputs>,
}

impl HoldoutMonitor {
    fn new(
        model: &GnnModel,
        holdout: &UnlearnSet,
        positions: &[Vec<Vec<usize>>],
        trigger: &Pattern,
        frozen_blocks: usize,
        clean_predicted: Vec<usize>,
    ) -> Result<HoldoutMonitor> {
        if holdout.graphs.is_empty() {
            return Ok(HoldoutMonitor { probe: None, triggered: None });
        }
        let probe =
            evidence::EvidenceProbe::with_clean_predictions(model, &holdout.graphs, positions, trigger.size, clean_predicted)?;
        let device = model.device();
        let triggered = probe.copies().map(|copies| {
            let inputs = copies.assemble_fixed(&trigger.adjacency(device), trigger.features(device).as_ref());
            FrozenInputs::new(model, copies, inputs, frozen_blocks)
        });
        Ok(HoldoutMonitor { probe: Some(probe), triggered })
    }

    /// The trigger's flip rate to `target` on the held-out copies, given the model's clean
    /// predictions on the held-out graphs now (0 without held-out graphs).
    fn flip_rate(&mut self, model: &GnnModel, clean_predicted: Vec<usize>, target: usize) -> Result<f64> {
        let Some(probe) = self.probe.as_mut() else {
            return Ok(0.0);
        };
        probe.set_clean_predictions(clean_predicted)?;
        let triggered = match &self.triggered {
            Some(inputs) => inputs.predictions(model)?,
            None => Vec::new(),
        };
        Ok(probe.evidence_for(&triggered, Some(target)).flip_rate)
    }
}

/// What one epoch adds up, read from the device once the epoch is over.
struct EpochTally {
    loss_sum: f64,
    steps: usize,
    flipped: i64,
    non_target_copies: i64,
}

impl EpochTally {
    fn mean_loss(&self) -> f64 {
        self.loss_sum / self.steps.max(1) as f64
    }

    /// Share of the epoch's triggered non-target copies the model sent to the target.
    fn flip_rate(&self) -> f64 {
        if self.non_target_copies > 0 {
            self.flipped as f64 / self.non_target_copies as f64
        } else {
            0.0
        }
    }
}

/// Everything an unlearning epoch needs that stays the same from epoch to epoch.
struct EpochRunner<'a> {
    train: &'a UnlearnSet<'a>,
    triggers: &'a [Pattern],
    adjacencies: Vec<Tensor>,
    slot_features: Vec<Option<Tensor>>,
    dropout: f64,
    config: &'a UnlearnConfig,
    train_clean_frozen: &'a FrozenInputs,
    teacher_logits_clean: &'a Tensor,
    target_label: Tensor,
    robust: RobustTerms<'a>,
}

impl EpochRunner<'_> {
    /// Every graph at its explainer positions plus fresh random node sets, each copy with one
    /// of the triggers; copies are batched per trigger (a batch has one trigger size), and the
    /// batches shuffled.
    fn batches(&self, rng: &mut crate::rng::Rng) -> Vec<(usize, Vec<PlacedCopy>)> {
        let (train, triggers) = (self.train, self.triggers);
        let mut copies: Vec<Vec<PlacedCopy>> = vec![Vec::new(); triggers.len()];
        for g in 0..train.graphs.len() {
            for k in 0..=self.config.positions {
                let t = if triggers.len() == 1 { 0 } else { rng.gen_range(0..triggers.len()) };
                let size = triggers[t].size;
                let nodes = if k == 0 { train.explainer_positions(g, size) } else { random_node_set(train.graphs[g], size, rng) };
                copies[t].push((g, nodes));
            }
        }
        let mut batches: Vec<(usize, Vec<PlacedCopy>)> = Vec::new();
        for (t, group) in copies.iter_mut().enumerate() {
            group.shuffle(rng);
            batches.extend(group.chunks(self.config.batch_size.max(1)).map(|chunk| (t, chunk.to_vec())));
        }
        batches.shuffle(rng);
        batches
    }

    /// One pass over freshly placed copies, one optimiser step per batch.
    fn run(&mut self, model: &GnnModel, opt: &mut FlatAdam, rng: &mut crate::rng::Rng) -> Result<EpochTally> {
        let device = model.device();
        // The epoch's tallies stay on the model's device and are read once after the epoch, so
        // a CUDA step never waits on a copy back to the host.
        let mut loss_total = Tensor::zeros([], (Kind::Double, device));
        let mut steps = 0usize;
        let mut flipped_total = Tensor::zeros([], (Kind::Int64, device));
        let mut non_target_total = Tensor::zeros([], (Kind::Int64, device));
        for (t, chunk) in self.batches(rng) {
            let (loss, flipped, non_target) = self.step(model, t, &chunk, rng)?;
            opt.backward_step(&loss);
            loss_total += loss.detach().to_kind(Kind::Double);
            flipped_total += flipped;
            non_target_total += non_target;
            steps += 1;
        }
        Ok(EpochTally {
            loss_sum: loss_total.double_value(&[]),
            steps,
            flipped: flipped_total.int64_value(&[]),
            non_target_copies: non_target_total.int64_value(&[]),
        })
    }

    /// The loss of one batch of copies carrying trigger `t`, and how many of its non-target
    /// copies the model sent to the target (and how many non-target copies it had).
    fn step(
        &mut self,
        model: &GnnModel,
        t: usize,
        chunk: &[PlacedCopy],
        rng: &mut crate::rng::Rng,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (train, config, device) = (self.train, self.config, model.device());
        let graphs: Vec<&Graph> = chunk.iter().map(|(g, _)| train.graphs[*g]).collect();
        let labels: Vec<usize> = chunk.iter().map(|(g, _)| train.labels[*g]).collect();
        let places: Vec<Vec<usize>> = chunk.iter().map(|(_, p)| p.clone()).collect();
        let batch = MontageBatch::build(&graphs, &labels, &places, self.triggers[t].size, &model.spec().features, device)?;
        let adjacency = if self.dropout > 0.0 {
            // Drawn from this run's own generator, not libtorch's process-wide one, which
            // other threads (other jobs, parallel tests) may draw from at the same time.
            let pairs = self.adjacencies[t].size()[0];
            let keep: Vec<f32> =
                (0..chunk.len() as i64 * pairs).map(|_| f32::from(u8::from(rng.gen::<f64>() >= self.dropout))).collect();
            let keep = Tensor::from_slice(&keep).view([chunk.len() as i64, pairs]).to_device(device);
            &self.adjacencies[t].unsqueeze(0) * keep
        } else {
            self.adjacencies[t].shallow_clone()
        };
        // The pattern is fixed here (no gradient to it): the cheaper unweighted montage.
        let triggered_in = batch.assemble_fixed(&adjacency, self.slot_features[t].as_ref());
        let rows: Vec<i64> = chunk.iter().map(|(g, _)| *g as i64).collect();
        let rows = Tensor::from_slice(&rows).to_device(device);
        let outputs = match config.mode {
            // A copy's clean graph is its sample graph, whatever the placement: the robust
            // terms need only its logits, so the sample is forwarded once per step and each
            // copy takes its graph's row (a batch of 64 copies holds about 24 distinct
            // graphs; eval-mode BatchNorm makes a graph's output independent of its batch).
            // The sample and the copies share one pass through the trained blocks.
            UnlearnMode::Robust => {
                let joined = self.train_clean_frozen.forward_joined(model, &triggered_in.graph_input(&batch));
                let n_clean = self.train_clean_frozen.num_graphs();
                StepOutputs::Robust {
                    triggered_logits: joined.logits.narrow(0, n_clean, batch.num_graphs),
                    sample_logits: joined.logits.narrow(0, 0, n_clean),
                    sample_embedding: joined.embedding.narrow(0, 0, n_clean),
                }
            }
            UnlearnMode::Paper => StepOutputs::Paper(forward(model, &batch, &triggered_in)),
        };
        let non_target = batch.labels.ne_tensor(&self.target_label);
        let flipped = (outputs.triggered_logits().argmax(-1, false).eq_tensor(&self.target_label) * &non_target).sum(Kind::Int64);
        let loss = match outputs {
            StepOutputs::Robust { triggered_logits, sample_logits, sample_embedding } => self.robust.step_loss(
                model,
                &RobustStep {
                    triggered_logits,
                    sample_logits,
                    sample_embedding,
                    rows,
                    labels: &labels,
                    label_tensor: &batch.labels,
                },
            ),
            StepOutputs::Paper(trig_out) => {
                paper_loss(model, &batch, &trig_out, &self.teacher_logits_clean.index_select(0, &rows), config.lambda)
            }
        };
        Ok((loss, flipped, non_target.sum(Kind::Int64)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_teacher_is_fine_tuned_in_paper_mode_and_the_input_model_in_robust_mode() {
        let robust = UnlearnConfig::default();
        assert_eq!(robust.teacher_epochs_for_mode(), 0);
        assert_eq!(UnlearnConfig { mode: UnlearnMode::Paper, ..robust.clone() }.teacher_epochs_for_mode(), 20);
        // A configured value wins in either mode; reports written before it was optional load.
        assert_eq!(UnlearnConfig { teacher_epochs: Some(5), ..robust.clone() }.teacher_epochs_for_mode(), 5);
        let mut old = serde_json::to_value(&robust).unwrap();
        old["teacher_epochs"] = serde_json::json!(20);
        assert_eq!(serde_json::from_value::<UnlearnConfig>(old).unwrap().teacher_epochs_for_mode(), 20);
    }

    #[test]
    fn unlearning_trains_the_head_and_the_blocks_after_the_frozen_ones() {
        let names = ["conv1.nn.0.weight", "bn1.weight", "conv2.eps", "conv3.lin.weight", "bn3.bias", "fc1.weight", "fc2.bias"];
        let trained =
            |frozen: usize| -> Vec<&str> { names.iter().copied().filter(|n| trained_by_unlearning(n, frozen)).collect() };
        // Robust mode on a three-block model: the last block, its BatchNorm and the head.
        assert_eq!(trained(robust_frozen_blocks(3, true)), ["conv3.lin.weight", "bn3.bias", "fc1.weight", "fc2.bias"]);
        // The head alone.
        assert_eq!(trained(robust_frozen_blocks(3, false)), ["fc1.weight", "fc2.bias"]);
        // Nothing frozen (paper mode): everything.
        assert_eq!(trained(0), names);
        // Block numbers are compared as numbers, not as prefixes.
        assert!(trained_by_unlearning("conv10.nn.0.weight", 9) && !trained_by_unlearning("conv1.nn.0.weight", 9));
    }
}
