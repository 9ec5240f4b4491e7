//! The baseline defences G-Cleaner is compared with, behind one entry point ([`run`]) so the
//! comparison table measures every defence the same way: each turns a (possibly backdoored)
//! model into a [`DefendedModel`] that predicts classes for a list of graphs.
//!
//! | defence     | changes the model                         | changes inference            |
//! |-------------|-------------------------------------------|------------------------------|
//! | `finetune`  | cross-entropy on the clean sample          | no                           |
//! | `prune`     | no                                        | drops dissimilar edges       |
//! | `smoothing` | no                                        | majority vote of subsamples  |
//! | `abl`       | retrained on the poisoned training set     | no                           |
//!
//! Details and defaults: docs/baselines.md.

pub mod abl;
pub mod finetune;
pub(crate) mod inference;
pub mod prune;
pub mod smoothing;

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::data::{Dataset, Graph};
use crate::models::GnnModel;
use crate::progress::Progress;
use crate::{Error, Result};

pub use abl::{AblConfig, AblReport, UnlearningObjective};
pub use finetune::{FinetuneConfig, FinetuneReport, FinetuneScope};
pub use inference::FeatureSource;
pub use prune::PruneConfig;
pub use smoothing::SmoothingConfig;

/// Which baseline defence to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefenceKind {
    /// Fine-tuning on the defender's clean sample, no trigger recovery.
    Finetune,
    /// GNNGuard-style pruning of edges between dissimilar nodes, at inference.
    Prune,
    /// Randomized smoothing: majority vote over random subgraphs, at inference.
    Smoothing,
    /// Anti-backdoor learning (Li et al., NeurIPS 2021) on the poisoned training set.
    Abl,
}

impl DefenceKind {
    pub const ALL: [DefenceKind; 4] = [DefenceKind::Finetune, DefenceKind::Prune, DefenceKind::Smoothing, DefenceKind::Abl];

    pub fn name(self) -> &'static str {
        match self {
            DefenceKind::Finetune => "finetune",
            DefenceKind::Prune => "prune",
            DefenceKind::Smoothing => "smoothing",
            DefenceKind::Abl => "abl",
        }
    }

    /// Whether the defence needs the poisoned training set (only ABL, a training-time defence).
    pub fn needs_poisoned_training_set(self) -> bool {
        self == DefenceKind::Abl
    }

    /// Whether the defence needs the defender's clean sample.
    pub fn needs_clean_sample(self) -> bool {
        self == DefenceKind::Finetune
    }
}

impl std::fmt::Display for DefenceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DefenceKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "finetune" | "fine-tune" | "fine-tuning" | "finetuning" => Ok(DefenceKind::Finetune),
            "prune" | "pruning" => Ok(DefenceKind::Prune),
            "smoothing" | "randomized-smoothing" | "rs" => Ok(DefenceKind::Smoothing),
            "abl" => Ok(DefenceKind::Abl),
            other => Err(format!("unknown baseline defence {other:?} (expected finetune, prune, smoothing or abl)")),
        }
    }
}

/// Settings of every baseline; [`run`] reads the part of its defence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BaselineConfig {
    pub finetune: FinetuneConfig,
    pub prune: PruneConfig,
    pub smoothing: SmoothingConfig,
    pub abl: AblConfig,
    /// Graphs per forward pass when predicting (each smoothing subsample counts as a graph).
    pub inference_batch_size: usize,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            finetune: FinetuneConfig::default(),
            prune: PruneConfig::default(),
            smoothing: SmoothingConfig::default(),
            abl: AblConfig::default(),
            inference_batch_size: 512,
        }
    }
}

impl BaselineConfig {
    /// Checks the settings `kind` uses.
    pub fn validate(&self, kind: DefenceKind) -> Result<()> {
        if self.inference_batch_size == 0 {
            return Err(Error::invalid("inference batch size must be at least 1"));
        }
        match kind {
            DefenceKind::Finetune => self.finetune.validate(),
            DefenceKind::Prune => self.prune.validate(),
            DefenceKind::Smoothing => self.smoothing.validate(),
            DefenceKind::Abl => self.abl.validate(),
        }
    }
}

/// What a defence did, for the reproduce command's JSON. Only the entry of the defence that ran
/// is present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefenceReport {
    pub defence: DefenceKind,
    pub seed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finetune: Option<FinetuneReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smoothing: Option<SmoothingConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abl: Option<AblReport>,
    /// Seconds [`run`] took (training; inference-time defences cost at prediction instead).
    pub elapsed_s: f64,
}

/// How a defended model turns graphs into predictions.
#[derive(Debug, Clone)]
enum Inference {
    Plain,
    Prune(PruneConfig),
    Smoothing { config: SmoothingConfig, seed: u64 },
}

/// A model together with the inference procedure of its defence.
#[derive(Debug)]
pub struct DefendedModel {
    kind: DefenceKind,
    model: GnnModel,
    inference: Inference,
    batch_size: usize,
    report: DefenceReport,
}

impl DefendedModel {
    pub fn kind(&self) -> DefenceKind {
        self.kind
    }

    /// The model's weights: retrained for `finetune` and `abl`, the input model's for `prune` and
    /// `smoothing` (whose defence lives in [`DefendedModel::predict`], not in the weights).
    pub fn model(&self) -> &GnnModel {
        &self.model
    }

    pub fn into_model(self) -> GnnModel {
        self.model
    }

    pub fn report(&self) -> &DefenceReport {
        &self.report
    }

    /// Predicted class index of every graph, in order. A graph whose features cannot be built
    /// (missing node labels, wrong attribute width, edges outside the graph) is an error naming
    /// its position in `graphs`. Prediction is deterministic: smoothing draws its subsamples
    /// from the defence's seed and each graph's content, so a graph gets the same class
    /// whatever list it is predicted in.
    pub fn predict(&self, graphs: &[&Graph]) -> Result<Vec<usize>> {
        if graphs.is_empty() {
            return Ok(Vec::new());
        }
        match &self.inference {
            Inference::Plain => crate::metrics::predict_plain(&self.model, graphs, self.batch_size),
            Inference::Prune(config) => prune::predict(&self.model, graphs, config, self.batch_size),
            Inference::Smoothing { config, seed } => {
                let smoothed = smoothing::predict(&self.model, graphs, config, *seed, self.batch_size)?;
                Ok(smoothed.into_iter().map(|s| s.class).collect())
            }
        }
    }

    /// [`DefendedModel::predict`] over dataset graphs picked by index.
    pub fn predict_indices(&self, ds: &Dataset, indices: &[usize]) -> Result<Vec<usize>> {
        let graphs = indices
            .iter()
            .map(|&i| {
                ds.graphs.get(i).ok_or_else(|| {
                    Error::invalid(format!("graph index {i} is outside dataset {:?} ({} graphs)", ds.name, ds.len()))
                })
            })
            .collect::<Result<Vec<&Graph>>>()?;
        self.predict(&graphs)
    }
}

/// The poisoned training set ABL trains on: a dataset (poisoned graphs already triggered and
/// relabelled) and the indices of its training split.
pub type PoisonedTrainingSet<'a> = (&'a Dataset, &'a [usize]);

/// Runs baseline `kind` on `model`.
///
/// `clean_sample` is the defender's clean labelled sample, already mapped to the model's classes
/// (used by `finetune`; the others ignore it). `poisoned_train` is the poisoned training set
/// (required by `abl`, ignored by the others). Everything random is drawn from `seed`: the same
/// inputs and seed give the same defended model and the same predictions.
pub fn run(
    kind: DefenceKind,
    model: &GnnModel,
    clean_sample: &Dataset,
    poisoned_train: Option<PoisonedTrainingSet<'_>>,
    config: &BaselineConfig,
    seed: u64,
    progress: &mut dyn Progress,
) -> Result<DefendedModel> {
    let started = Instant::now();
    config.validate(kind)?;
    inference::check_model(model)?;
    let mut report =
        DefenceReport { defence: kind, seed, finetune: None, prune: None, smoothing: None, abl: None, elapsed_s: 0.0 };
    let (defended, inference) = match kind {
        DefenceKind::Finetune => {
            let (tuned, history) = finetune::fine_tune(model, clean_sample, &config.finetune, seed, progress)?;
            report.finetune = Some(history);
            (tuned, Inference::Plain)
        }
        DefenceKind::Prune => {
            report.prune = Some(config.prune.clone());
            (model.try_clone()?, Inference::Prune(config.prune.clone()))
        }
        DefenceKind::Smoothing => {
            report.smoothing = Some(config.smoothing.clone());
            let inference = Inference::Smoothing { config: config.smoothing.clone(), seed };
            (model.try_clone()?, inference)
        }
        DefenceKind::Abl => {
            let (ds, indices) = poisoned_train.ok_or_else(|| {
                Error::invalid(
                    "ABL trains on the poisoned training set (the attack's training split), \
                     but none was given",
                )
            })?;
            let (trained, abl_report) = abl::abl(model, ds, indices, &config.abl, seed, progress)?;
            report.abl = Some(abl_report);
            (trained, Inference::Plain)
        }
    };
    report.elapsed_s = started.elapsed().as_secs_f64();
    Ok(DefendedModel { kind, model: defended, inference, batch_size: config.inference_batch_size, report })
}
