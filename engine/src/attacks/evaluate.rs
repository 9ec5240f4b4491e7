//! How well an attack works on a model: attack success rate on the triggered evaluation set, and
//! clean accuracy, balanced accuracy and per-class recall on the clean evaluation set.
//!
//! Any model can be measured against an attack directory (the backdoored one, the clean
//! reference, a purified one): the sets are re-mapped to the model's class order first. The
//! directory may also come packed as a zip or tar(.gz) archive (how the service receives it).

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use serde::{Deserialize, Serialize};

use super::description::AttackDescription;
use crate::data::archive::{extract_archive, sniff_archive};
use crate::data::batch::make_batches;
use crate::data::json::load_json_dataset;
use crate::data::Dataset;
use crate::metrics::{self, attack_success_rate};
use crate::models::{GnnModel, ModelSpec};
use crate::{Error, Result};

/// File names inside an attack directory.
pub const ATTACK_FILE: &str = "attack.json";
pub const EVAL_CLEAN_FILE: &str = "eval_clean.json";
pub const EVAL_TRIGGERED_FILE: &str = "eval_triggered.json";
pub const DEFENDER_FILE: &str = "defender_clean.json";
pub const MODEL_FILE: &str = "model.safetensors";
pub const CLEAN_MODEL_FILE: &str = "clean_model.safetensors";
pub const METRICS_FILE: &str = "metrics.json";

/// Graphs per forward pass when measuring.
const EVAL_BATCH_SIZE: usize = 256;

/// One model measured against one attack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackMetrics {
    /// Share of triggered graphs (true class not the target) predicted as the target.
    pub asr: f64,
    /// Accuracy on the clean evaluation graphs.
    pub clean_accuracy: f64,
    /// Mean recall over the classes present in the clean evaluation graphs.
    pub balanced_accuracy: f64,
    /// Recall of every class of the model on the clean evaluation graphs (0 for absent classes).
    pub per_class_recall: Vec<f64>,
    /// The target as a class index of the model.
    pub target_label: usize,
    pub n_triggered: usize,
    pub n_clean: usize,
}

/// Measures `model` on the clean and triggered evaluation sets, both already in the model's
/// class order.
pub fn evaluate_sets(model: &GnnModel, clean: &Dataset, triggered: &Dataset, target_class: usize) -> Result<AttackMetrics> {
    let num_classes = model.spec().num_classes;
    check_eval_sets(clean, triggered, target_class, num_classes)?;
    let clean_predictions = predict_all(model, clean)?;
    let triggered_predictions = predict_all(model, triggered)?;
    Ok(metrics_from_predictions(
        &clean_predictions.classes,
        clean,
        &triggered_predictions.classes,
        triggered,
        target_class,
        num_classes,
    ))
}

/// The metrics of [`evaluate_sets`] from predicted classes, in dataset order, of the clean and
/// triggered sets, for defences whose predictions come from elsewhere than a plain forward pass
/// (pruning, smoothing).
pub fn metrics_from_predictions(
    clean_predicted: &[usize],
    clean: &Dataset,
    triggered_predicted: &[usize],
    triggered: &Dataset,
    target_class: usize,
    num_classes: usize,
) -> AttackMetrics {
    let labels = |ds: &Dataset| ds.graphs.iter().map(|g| g.label).collect::<Vec<_>>();
    let evaluation = metrics::evaluate(clean_predicted, &labels(clean), num_classes);
    let (asr, n_triggered) = attack_success_rate(triggered_predicted, &labels(triggered), target_class);
    AttackMetrics {
        asr,
        clean_accuracy: evaluation.accuracy,
        balanced_accuracy: evaluation.balanced_accuracy,
        per_class_recall: evaluation.per_class.iter().map(|c| c.recall).collect(),
        target_label: target_class,
        n_triggered,
        n_clean: evaluation.n,
    }
}

/// The checks `evaluate_sets` makes, for callers that hold only a spec (upload validation).
pub fn check_eval_sets(clean: &Dataset, triggered: &Dataset, target_class: usize, num_classes: usize) -> Result<()> {
    if target_class >= num_classes {
        return Err(Error::invalid(format!("target class {target_class} is not a class of the model ({num_classes} classes)")));
    }
    for (what, ds) in [("clean", clean), ("triggered", triggered)] {
        if ds.is_empty() {
            return Err(Error::invalid(format!("the {what} evaluation set holds no graphs")));
        }
        if let Some(i) = ds.graphs.iter().position(|g| g.label >= num_classes) {
            return Err(Error::invalid(format!(
                "{what} evaluation graph {i} has class {} but the model predicts {num_classes} classes",
                ds.graphs[i].label
            )));
        }
    }
    Ok(())
}

fn predict_all(model: &GnnModel, ds: &Dataset) -> Result<metrics::Predictions> {
    let indices: Vec<usize> = (0..ds.len()).collect();
    let batches = make_batches(ds, &indices, EVAL_BATCH_SIZE, &model.spec().features, model.device())?;
    metrics::predict(model, &batches)
}

/// The evaluation sets and target of an attack directory, mapped to `model`'s classes.
pub struct AttackEvalSets {
    pub description: AttackDescription,
    pub clean: Dataset,
    pub triggered: Dataset,
    /// The target as a class index of the model.
    pub target_class: usize,
}

/// Reads attack.json, eval_clean.json and eval_triggered.json from `attack_dir` and maps them
/// onto the class order recorded in the model's `spec` (when it records one).
pub fn load_eval_sets(spec: &ModelSpec, attack_dir: &Path) -> Result<AttackEvalSets> {
    if !attack_dir.is_dir() {
        return Err(Error::file(attack_dir, "not an attack directory (written by `gcleaner attack`)"));
    }
    let description = AttackDescription::read(&attack_dir.join(ATTACK_FILE))?;
    let clean_path = attack_dir.join(EVAL_CLEAN_FILE);
    let triggered_path = attack_dir.join(EVAL_TRIGGERED_FILE);
    let mut clean = load_json_dataset(&clean_path)?;
    let mut triggered = load_json_dataset(&triggered_path)?;
    let target_class = match &spec.class_labels {
        Some(labels) => {
            let remap = |ds: Dataset, path: &Path| {
                ds.with_class_labels(labels).map_err(|e| Error::file(path, format!("does not match the model's classes: {e}")))
            };
            clean = remap(clean, &clean_path)?;
            triggered = remap(triggered, &triggered_path)?;
            labels.iter().position(|&l| l == description.target_label).ok_or_else(|| {
                Error::invalid(format!(
                    "the attack's target label {} is not one of the model's class labels {labels:?}",
                    description.target_label
                ))
            })?
        }
        None => description.params.target_class,
    };
    Ok(AttackEvalSets { description, clean, triggered, target_class })
}

/// ASR, clean accuracy, balanced accuracy and per-class recall of `model` on the evaluation sets
/// of the attack written by `gcleaner attack` to `attack` (its directory, or an archive of it).
pub fn evaluate_on_attack(model: &GnnModel, attack: &Path) -> Result<AttackMetrics> {
    let source = AttackSource::open(attack)?;
    let sets = load_eval_sets(model.spec(), source.dir())?;
    evaluate_sets(model, &sets.clean, &sets.triggered, sets.target_class)
}

/// An attack directory as given, or unpacked from an archive (removed again on drop).
pub struct AttackSource {
    dir: PathBuf,
    _unpacked: Option<TempDir>,
}

impl AttackSource {
    /// `path` is an attack directory, or a zip / tar / tar.gz archive holding one, either at the
    /// archive's root or as its single top-level folder. Archives are unpacked under the same
    /// limits as dataset archives (no absolute paths, `..` or links; bounded size and entries).
    pub fn open(path: &Path) -> Result<AttackSource> {
        if path.is_dir() {
            return Ok(AttackSource { dir: path.to_path_buf(), _unpacked: None });
        }
        if !path.is_file() {
            return Err(Error::file(path, "not an attack directory (written by `gcleaner attack`)"));
        }
        let Some(kind) = sniff_archive(path)? else {
            return Err(Error::file(path, "neither an attack directory nor a zip / tar.gz archive of one"));
        };
        let unpacked = extract_archive(path, kind)?;
        let root = unpacked.path();
        let dir = if root.join(ATTACK_FILE).is_file() {
            root.to_path_buf()
        } else {
            let entries: Vec<PathBuf> =
                std::fs::read_dir(root).map_err(|e| Error::io(path, e))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
            match entries.as_slice() {
                [only] if only.is_dir() && only.join(ATTACK_FILE).is_file() => only.clone(),
                _ => {
                    return Err(Error::file(
                        path,
                        format!("archive holds no {ATTACK_FILE} at its root or in its single top-level folder"),
                    ))
                }
            }
        };
        Ok(AttackSource { dir, _unpacked: Some(unpacked) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The never-backdoored reference model, when the attack ships one.
    pub fn clean_model_path(&self) -> Option<PathBuf> {
        Some(self.dir.join(CLEAN_MODEL_FILE)).filter(|p| p.is_file())
    }
}
