//! Fine-tuning only: train a copy of the model on the defender's clean sample with cross-entropy
//! and nothing else (no trigger recovery). It shows how much of G-Cleaner's effect clean data
//! alone buys: a backdoor the clean sample never exercises usually survives it.

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use tch::nn::OptimizerConfig;
use tch::{nn, Tensor};

use crate::data::{make_batches, Dataset};
use crate::models::check_sample;
use crate::models::GnnModel;
use crate::progress::{Progress, ProgressEvent};
use crate::rng::rng_for;
use crate::{Error, Result};

/// Which parameters fine-tuning trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinetuneScope {
    /// Every parameter.
    All,
    /// The last conv block and the head (G-Cleaner's unlearning setup).
    LastConvAndHead,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FinetuneConfig {
    pub epochs: usize,
    /// Adam learning rate.
    pub lr: f64,
    pub batch_size: usize,
    pub scope: FinetuneScope,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        FinetuneConfig { epochs: 30, lr: 1e-3, batch_size: 64, scope: FinetuneScope::All }
    }
}

impl FinetuneConfig {
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::invalid("fine-tuning needs at least 1 epoch"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::invalid(format!("fine-tuning learning rate must be positive, got {}", self.lr)));
        }
        if self.batch_size == 0 {
            return Err(Error::invalid("fine-tuning batch size must be at least 1"));
        }
        Ok(())
    }
}

/// The fine-tuning history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneReport {
    pub config: FinetuneConfig,
    /// Graphs in the clean sample.
    pub n_sample: usize,
    /// Mean cross-entropy over the sample, per epoch (evaluation-mode forward passes).
    pub epoch_loss: Vec<f64>,
}

/// A copy of `model` fine-tuned on `sample` (classes already mapped to the model's) with Adam and
/// cross-entropy. BatchNorm stays in evaluation mode throughout: with a few dozen graphs, batch
/// statistics would overwrite the running statistics learnt on the whole training set, and
/// inference never uses batch statistics.
pub fn fine_tune(
    model: &GnnModel,
    sample: &Dataset,
    config: &FinetuneConfig,
    seed: u64,
    progress: &mut dyn Progress,
) -> Result<(GnnModel, FinetuneReport)> {
    config.validate()?;
    check_sample(model, sample)?;
    let _torch_seed = crate::rng::seed_torch(seed);
    let tuned = model.try_clone()?;
    match config.scope {
        FinetuneScope::All => tuned.set_all_trainable(),
        FinetuneScope::LastConvAndHead => tuned.train_only_last_conv_and_head(),
    }
    let mut order: Vec<usize> = (0..sample.len()).collect();
    let mut rng = rng_for(seed, "baselines/finetune");
    order.shuffle(&mut rng);
    let batches = make_batches(sample, &order, config.batch_size, &tuned.spec().features, tuned.device())?;
    let mut opt = nn::Adam::default().build(tuned.var_store(), config.lr)?;
    let mut batch_order: Vec<usize> = (0..batches.len()).collect();
    let mut epoch_loss = Vec::with_capacity(config.epochs);
    for epoch in 0..config.epochs {
        batch_order.shuffle(&mut rng);
        let mut loss_sum = Tensor::zeros([], (tch::Kind::Float, tuned.device()));
        for &b in &batch_order {
            let batch = &batches[b];
            let out = tuned.forward_t(&batch.input(), false);
            let loss = out.log_probs.nll_loss(&batch.labels);
            opt.backward_step(&loss);
            tch::no_grad(|| loss_sum += loss.detach() * batch.num_graphs as f64);
        }
        let loss = loss_sum.double_value(&[]) / sample.len() as f64;
        if !loss.is_finite() {
            return Err(Error::invalid(format!(
                "fine-tuning diverged at epoch {} (loss is {loss}); lower the learning rate",
                epoch + 1
            )));
        }
        epoch_loss.push(loss);
        let keep_going = progress.step(ProgressEvent {
            phase: "finetune",
            step: epoch + 1,
            total: config.epochs,
            message: format!("loss {loss:.4}"),
        });
        if !keep_going {
            return Err(Error::Cancelled);
        }
    }
    tuned.set_all_trainable();
    let report = FinetuneReport { config: config.clone(), n_sample: sample.len(), epoch_loss };
    Ok((tuned, report))
}
