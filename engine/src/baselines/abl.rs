//! Anti-backdoor learning (Li et al., "Anti-Backdoor Learning: Training Clean Models on
//! Poisoned Data", NeurIPS 2021), a training-time defence: it needs the poisoned training set.
//!
//! Backdoored samples are learnt much faster than clean ones. ABL exploits that in three phases:
//! 1. Isolation: train with local gradient ascent (LGA), `sign(CE - gamma) * CE` on each batch's
//!    mean cross-entropy, so the model never fits the data below `gamma` on average while the
//!    easy (poisoned) samples still fall well below it; then take the `isolation_ratio` share of
//!    training graphs with the lowest loss as suspected poisoned.
//! 2. Training: continue training with plain cross-entropy on the remaining graphs.
//! 3. Unlearning: gradient ascent on the isolated graphs (maximise their cross-entropy) for a
//!    few epochs, which breaks the trigger-to-target association the model kept from the
//!    poisoned graphs that escaped isolation. A model certain of those graphs gives cross-entropy
//!    no gradient to ascend; [`UnlearningObjective::Complementary`] is the non-saturating option.
//!
//! The LGA sign is taken on the batch mean, as in the authors' code: a per-graph sign would
//! push every graph's loss up to `gamma`, erasing the gap isolation relies on.

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use tch::nn::OptimizerConfig;
use tch::{nn, Kind, Tensor};

use crate::data::{make_batches, Dataset, GraphBatch};
use crate::models::GnnModel;
use crate::progress::{Progress, ProgressEvent};
use crate::rng::rng_for;
use crate::train::{train, EpochStats, TrainConfig};
use crate::{Error, Result};

/// The objective of ABL's unlearning phase on the isolated graphs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnlearningObjective {
    /// Gradient ascent on cross-entropy, as published. Its gradient `p - onehot(y)` vanishes
    /// when the model is certain of the isolated graphs (GIN with sum pooling often is: losses
    /// of 1e-40 and below), and unlearning then changes nothing.
    GradientAscent,
    /// Descent on `-log(1 - p_y)` (complementary cross-entropy): pushes the same probability
    /// down, but its gradient stays near 1 while `p_y` is near 1 and fades once the graph is
    /// no longer assigned its (poisoned) label, so it neither stalls nor diverges.
    Complementary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AblConfig {
    /// LGA epochs before isolation.
    pub isolation_epochs: usize,
    /// LGA loss floor.
    pub gamma: f64,
    /// Share of the training graphs isolated as suspected poisoned (at least one graph).
    pub isolation_ratio: f64,
    /// Cross-entropy epochs on the graphs not isolated.
    pub training_epochs: usize,
    /// Adam learning rate of isolation and training.
    pub lr: f64,
    /// Training's learning rate is multiplied by `lr_gamma` every `lr_step` epochs.
    pub lr_step: usize,
    pub lr_gamma: f64,
    /// Gradient-ascent epochs on the isolated graphs.
    pub unlearning_epochs: usize,
    /// Adam learning rate of unlearning.
    pub unlearning_lr: f64,
    pub unlearning_objective: UnlearningObjective,
    pub batch_size: usize,
}

impl Default for AblConfig {
    fn default() -> Self {
        AblConfig {
            isolation_epochs: 20,
            gamma: 0.5,
            isolation_ratio: 0.01,
            training_epochs: 60,
            lr: 0.005,
            lr_step: 30,
            lr_gamma: 0.5,
            unlearning_epochs: 20,
            unlearning_lr: 5e-4,
            unlearning_objective: UnlearningObjective::Complementary,
            batch_size: 64,
        }
    }
}

impl AblConfig {
    pub fn validate(&self) -> Result<()> {
        if self.isolation_epochs == 0 {
            return Err(Error::invalid("ABL needs at least 1 isolation epoch"));
        }
        if !(self.gamma.is_finite() && self.gamma > 0.0) {
            return Err(Error::invalid(format!("ABL gamma must be positive, got {}", self.gamma)));
        }
        if !(self.isolation_ratio > 0.0 && self.isolation_ratio < 1.0) {
            return Err(Error::invalid(format!("ABL isolation ratio must be in (0, 1), got {}", self.isolation_ratio)));
        }
        for (name, lr) in [("learning rate", self.lr), ("unlearning learning rate", self.unlearning_lr)] {
            if !(lr.is_finite() && lr > 0.0) {
                return Err(Error::invalid(format!("ABL {name} must be positive, got {lr}")));
            }
        }
        if self.batch_size == 0 {
            return Err(Error::invalid("ABL batch size must be at least 1"));
        }
        if self.training_epochs > 0 {
            self.training_config(0).validate()?;
        }
        Ok(())
    }

    fn training_config(&self, seed: u64) -> TrainConfig {
        TrainConfig {
            epochs: self.training_epochs,
            lr: self.lr,
            lr_step: self.lr_step,
            lr_gamma: self.lr_gamma,
            weight_decay: 0.0,
            seed,
        }
    }
}

/// What ABL did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AblReport {
    pub config: AblConfig,
    /// Training graphs ABL saw.
    pub n_train: usize,
    /// Dataset indices of the isolated graphs, lowest loss first.
    pub isolated: Vec<usize>,
    /// Their cross-entropy after the isolation phase, same order.
    pub isolated_losses: Vec<f64>,
    /// Median cross-entropy of all training graphs after the isolation phase.
    pub median_loss: f64,
    /// Mean cross-entropy per isolation epoch (train-mode forward passes, before the LGA sign).
    pub isolation_loss: Vec<f64>,
    pub training: Vec<EpochStats>,
    /// Mean cross-entropy of the isolated graphs per unlearning epoch (before its steps; in f64,
    /// so a saturated model shows losses like 1e-40 rather than 0).
    pub unlearning_loss: Vec<f64>,
}

impl AblReport {
    /// Share of the isolated graphs that are in `poisoned` (dataset indices), for reports that
    /// know the attack.
    pub fn isolation_precision(&self, poisoned: &[usize]) -> f64 {
        if self.isolated.is_empty() {
            return 0.0;
        }
        let hits = self.isolated.iter().filter(|i| poisoned.contains(i)).count();
        hits as f64 / self.isolated.len() as f64
    }
}

/// How many graphs of `n` ABL isolates: `max(1, round(ratio * n))`.
pub fn isolation_count(n: usize, ratio: f64) -> usize {
    ((ratio * n as f64).round() as usize).max(1)
}

/// The `count` entries of `indices` with the lowest `losses` (ties to the smaller index),
/// lowest loss first.
pub fn lowest_loss(indices: &[usize], losses: &[f64], count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..indices.len().min(losses.len())).collect();
    order.sort_by(|&a, &b| losses[a].total_cmp(&losses[b]).then(indices[a].cmp(&indices[b])));
    order.into_iter().take(count).map(|k| indices[k]).collect()
}

/// Cross-entropy of every graph of `indices` under `model` in evaluation mode, in order.
///
/// Computed in f64 from the logits: in f32 a graph predicted with a logit margin above about 17
/// has a loss of exactly 0, and a confident model puts many graphs there (the poisoned ones
/// first), which would leave isolation to break ties by index.
pub fn per_graph_losses(model: &GnnModel, ds: &Dataset, indices: &[usize], batch_size: usize) -> Result<Vec<f64>> {
    let batches = make_batches(ds, indices, batch_size, &model.spec().features, model.device())?;
    let num_classes = model.spec().num_classes;
    let mut losses = Vec::with_capacity(indices.len());
    for batch in &batches {
        let logits = tch::no_grad(|| model.forward_t(&batch.input(), false).logits);
        let logits = Vec::<f64>::try_from(logits.to_kind(Kind::Double).to_device(tch::Device::Cpu).flatten(0, -1))?;
        let labels = Vec::<i64>::try_from(batch.labels.to_device(tch::Device::Cpu))?;
        for (row, &label) in logits.chunks(num_classes).zip(&labels) {
            losses.push(cross_entropy(row, label as usize));
        }
    }
    Ok(losses)
}

/// `-log softmax(logits)[label]` without cancellation: `log sum_j exp(l_j - l_label)`, with
/// `log1p` when the label has the largest logit (the loss is then tiny but still ordered).
pub fn cross_entropy(logits: &[f64], label: usize) -> f64 {
    let Some(&own) = logits.get(label) else { return f64::INFINITY };
    let others = logits.iter().enumerate().filter(|&(j, _)| j != label).map(|(_, &l)| l - own);
    let top = others.clone().fold(f64::NEG_INFINITY, f64::max);
    if top <= 0.0 {
        others.map(f64::exp).sum::<f64>().ln_1p()
    } else {
        // log(exp(0) + sum_j exp(d_j)) = top + log(exp(-top) + sum_j exp(d_j - top))
        top + ((-top).exp() + others.map(|d| (d - top).exp()).sum::<f64>()).ln()
    }
}

/// Summed f64 cross-entropy of a batch, from its logits (see [`cross_entropy`]).
fn batch_cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<f64> {
    let num_classes = logits.size().last().copied().unwrap_or(1).max(1) as usize;
    let values = Vec::<f64>::try_from(logits.detach().to_kind(Kind::Double).to_device(tch::Device::Cpu).flatten(0, -1))?;
    let labels = Vec::<i64>::try_from(labels.to_device(tch::Device::Cpu))?;
    Ok(values.chunks(num_classes).zip(labels).map(|(row, y)| cross_entropy(row, y as usize)).sum())
}

/// Mean of `-log(1 - p_y)` over the batch: `logsumexp(all logits) - logsumexp(logits but y)`.
pub fn complementary_cross_entropy(logits: &Tensor, labels: &Tensor) -> Tensor {
    let num_classes = logits.size().last().copied().unwrap_or(1);
    let is_label = labels.one_hot(num_classes).to_kind(Kind::Bool);
    let others = logits.masked_fill(&is_label, f64::NEG_INFINITY).logsumexp([1], false);
    (logits.logsumexp([1], false) - others).mean(Kind::Float)
}

fn check_training_set(model: &GnnModel, ds: &Dataset, indices: &[usize], isolate: usize) -> Result<()> {
    if indices.is_empty() {
        return Err(Error::invalid("ABL: the poisoned training set holds no graphs"));
    }
    let num_classes = model.spec().num_classes;
    let mut seen = vec![false; ds.len()];
    for &i in indices {
        let g = ds.graphs.get(i).ok_or_else(|| {
            Error::invalid(format!("ABL: training index {i} is outside dataset {:?} ({} graphs)", ds.name, ds.len()))
        })?;
        if std::mem::replace(&mut seen[i], true) {
            return Err(Error::invalid(format!("ABL: training index {i} is given twice")));
        }
        if g.label >= num_classes {
            return Err(Error::invalid(format!(
                "ABL: training graph {i} has class {} but the model predicts {num_classes} classes",
                g.label
            )));
        }
    }
    if isolate >= indices.len() {
        return Err(Error::invalid(format!(
            "ABL would isolate {isolate} of {} training graphs and train on none",
            indices.len()
        )));
    }
    Ok(())
}

fn cancelled_unless(keep_going: bool) -> Result<()> {
    if keep_going {
        Ok(())
    } else {
        Err(Error::Cancelled)
    }
}

/// Batches of `indices` in a seeded random order (so batches mix classes), built once.
fn shuffled_batches(
    model: &GnnModel,
    ds: &Dataset,
    indices: &[usize],
    batch_size: usize,
    seed: u64,
    stream: &str,
) -> Result<Vec<GraphBatch>> {
    let mut order = indices.to_vec();
    order.shuffle(&mut rng_for(seed, stream));
    make_batches(ds, &order, batch_size, &model.spec().features, model.device())
}

/// Runs ABL on the training graphs `indices` of the poisoned dataset `ds` (classes already the
/// model's): a fresh model with `model`'s spec is trained, isolated and unlearnt (ABL is a
/// training-time defence; started from already trained weights, which have fitted clean graphs
/// as tightly as poisoned ones, isolation found a quarter of the poisoned graphs in a test
/// where it finds nearly all from scratch). Returns the trained model and what happened.
pub fn abl(
    model: &GnnModel,
    ds: &Dataset,
    indices: &[usize],
    config: &AblConfig,
    seed: u64,
    progress: &mut dyn Progress,
) -> Result<(GnnModel, AblReport)> {
    config.validate()?;
    let isolate = isolation_count(indices.len(), config.isolation_ratio);
    check_training_set(model, ds, indices, isolate)?;
    // ABL trains the model itself: only the input model's spec and device are used.
    let _torch_seed = crate::rng::seed_torch(seed);
    let learner = GnnModel::new(model.spec().clone(), model.device())?;

    // Phase 1: local gradient ascent, then isolation.
    let batches = shuffled_batches(&learner, ds, indices, config.batch_size, seed, "baselines/abl-batches")?;
    let mut opt = nn::Adam::default().build(learner.var_store(), config.lr)?;
    let mut order: Vec<usize> = (0..batches.len()).collect();
    let mut rng = rng_for(seed, "baselines/abl-order");
    let mut isolation_loss = Vec::with_capacity(config.isolation_epochs);
    for epoch in 0..config.isolation_epochs {
        order.shuffle(&mut rng);
        let mut loss_sum = Tensor::zeros([], (Kind::Float, learner.device()));
        for &b in &order {
            let batch = &batches[b];
            let ce = learner.forward_t(&batch.input(), true).log_probs.nll_loss(&batch.labels);
            let lga = (ce.detach() - config.gamma).sign() * &ce;
            opt.backward_step(&lga);
            tch::no_grad(|| loss_sum += ce.detach() * batch.num_graphs as f64);
        }
        let loss = loss_sum.double_value(&[]) / indices.len() as f64;
        if !loss.is_finite() {
            return Err(Error::invalid(format!(
                "ABL isolation diverged at epoch {} (loss is {loss}); lower the learning rate",
                epoch + 1
            )));
        }
        isolation_loss.push(loss);
        cancelled_unless(progress.step(ProgressEvent {
            phase: "abl-isolation",
            step: epoch + 1,
            total: config.isolation_epochs,
            message: format!("loss {loss:.4}"),
        }))?;
    }
    let losses = per_graph_losses(&learner, ds, indices, config.batch_size)?;
    let isolated = lowest_loss(indices, &losses, isolate);
    let loss_of = |i: usize| losses[indices.iter().position(|&j| j == i).unwrap_or(0)];
    let isolated_losses: Vec<f64> = isolated.iter().map(|&i| loss_of(i)).collect();
    let mut sorted = losses.clone();
    sorted.sort_by(f64::total_cmp);
    let median_loss = sorted[sorted.len() / 2];
    let remaining: Vec<usize> = indices.iter().copied().filter(|i| !isolated.contains(i)).collect();

    // Phase 2: plain training on what was not isolated.
    let mut learner = learner;
    let training = if config.training_epochs > 0 {
        let batches = shuffled_batches(&learner, ds, &remaining, config.batch_size, seed, "baselines/abl-train")?;
        let mut renamed = |e: ProgressEvent<'_>| progress.step(ProgressEvent { phase: "abl-training", ..e });
        train(&mut learner, &batches, &config.training_config(seed), &mut renamed)?
    } else {
        Vec::new()
    };

    // Phase 3: unlearning the isolated graphs. BatchNorm stays in evaluation mode: the isolated
    // set is a handful of graphs whose batch statistics say nothing about the data.
    let batches = make_batches(ds, &isolated, config.batch_size, &learner.spec().features, learner.device())?;
    let mut opt = nn::Adam::default().build(learner.var_store(), config.unlearning_lr)?;
    let mut unlearning_loss = Vec::with_capacity(config.unlearning_epochs);
    for epoch in 0..config.unlearning_epochs {
        let mut loss_sum = 0.0;
        for batch in &batches {
            let logits = learner.forward_t(&batch.input(), false).logits;
            loss_sum += batch_cross_entropy(&logits, &batch.labels)?;
            let objective = match config.unlearning_objective {
                UnlearningObjective::GradientAscent => logits.log_softmax(-1, Kind::Float).nll_loss(&batch.labels).neg(),
                UnlearningObjective::Complementary => complementary_cross_entropy(&logits, &batch.labels),
            };
            opt.backward_step(&objective);
        }
        let loss = loss_sum / isolated.len() as f64;
        if !loss.is_finite() {
            return Err(Error::invalid(format!(
                "ABL unlearning diverged at epoch {} (loss is {loss}); lower the unlearning \
                 learning rate",
                epoch + 1
            )));
        }
        unlearning_loss.push(loss);
        cancelled_unless(progress.step(ProgressEvent {
            phase: "abl-unlearning",
            step: epoch + 1,
            total: config.unlearning_epochs,
            message: format!("isolated loss {loss:.3e}"),
        }))?;
    }

    let report = AblReport {
        config: config.clone(),
        n_train: indices.len(),
        isolated,
        isolated_losses,
        median_loss,
        isolation_loss,
        training,
        unlearning_loss,
    };
    Ok((learner, report))
}
