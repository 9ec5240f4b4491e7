//! The one place the service calls the engine to check uploads: the engine's weights inspection
//! and dataset loader, plus the spec-vs-data fit checks the purification itself relies on.

use std::io::Read;
use std::path::Path;

use gcleaner_engine::attacks::evaluate::{check_eval_sets, load_eval_sets, AttackSource, CLEAN_MODEL_FILE};
use gcleaner_engine::data::Dataset;
use gcleaner_engine::models::weights::{self, WeightLimits};
use gcleaner_engine::models::{GnnModel, ModelSpec, SPEC_METADATA_KEY};
use gcleaner_engine::purify::pipeline::{align_labels, LabelMismatch};
use gcleaner_engine::{Error, Result};

/// Largest safetensors JSON header read when looking for the embedded spec.
const MAX_HEADER_BYTES: u64 = weights::MAX_HEADER_BYTES;

/// The spec embedded in a safetensors header, read without looking at the tensors, so the
/// service's size limits apply before the engine derives any shape from the spec.
pub fn embedded_spec(path: &Path) -> Result<ModelSpec> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes).map_err(|_| Error::weights(path, "file too short for a safetensors header"))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_BYTES || header_len + 8 > file_len {
        return Err(Error::weights(path, format!("header length {header_len} exceeds the file or the limit")));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(|e| Error::io(path, e))?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| Error::weights(path, format!("header is not valid JSON: {e}")))?;
    let raw = header.get("__metadata__").and_then(|m| m.get(SPEC_METADATA_KEY)).and_then(|s| s.as_str()).ok_or_else(|| {
        Error::weights(path, format!("no model spec: metadata key {SPEC_METADATA_KEY:?} is missing and no spec part was given"))
    })?;
    serde_json::from_str(raw).map_err(|e| Error::weights(path, format!("embedded spec is invalid: {e}")))
}

/// Checks every tensor of a weights file (presence, dtype, shape, finite values) against
/// `spec_override` or else the embedded spec; returns the spec.
pub fn inspect_model(path: &Path, spec_override: Option<&ModelSpec>, max_bytes: u64) -> Result<ModelSpec> {
    let limits = WeightLimits { max_file_bytes: max_bytes };
    match spec_override {
        None => weights::inspect_with_limits(path, &limits),
        // The engine checks a separate spec only while loading; a CPU model of a spec within
        // the service's limits is small.
        Some(spec) => weights::load(path, Some(spec.clone()), tch::Device::Cpu, &limits).map(|l| l.model.spec().clone()),
    }
}

pub fn load_dataset(path: &Path) -> Result<Dataset> {
    gcleaner_engine::data::load_dataset(path)
}

pub fn feature_dim(spec: &ModelSpec) -> usize {
    spec.features.dim()
}

fn check_features(ds: &Dataset, spec: &ModelSpec) -> std::result::Result<(), String> {
    for (i, g) in ds.graphs.iter().enumerate() {
        spec.features.node_features(g).map_err(|e| format!("graph {i}: {e}"))?;
    }
    Ok(())
}

/// Why a sample's labels do not fit the model, as the service says it: with the way out for
/// graphs of another dataset.
pub fn unfit_labels(why: &LabelMismatch) -> String {
    format!("{why}; for graphs without labels in the model's label space, set \"pseudo_labels\": true in the config")
}

/// A clean sample ready for purification: its node features fit the model, and either its
/// labels are put in the model's class order or, when `pseudo_labels` is asked for, they are
/// left to the engine, which labels every graph with the model's own prediction (the paper's
/// auxiliary-data setting: graphs from another dataset carry no labels in the model's label
/// space). Unlike `gcleaner purify`, the service does not fall back to pseudo-labels by itself: a
/// pipeline that uploads the wrong dataset gets a refusal, not a silently relabelled run.
pub fn prepare_sample(ds: Dataset, spec: &ModelSpec, pseudo_labels: bool) -> std::result::Result<Dataset, String> {
    check_features(&ds, spec)?;
    if pseudo_labels {
        return Ok(ds);
    }
    align_labels(ds, spec).map_err(|why| unfit_labels(&why))
}

/// Loads a model for purification.
pub fn load_model(path: &Path, spec_override: Option<ModelSpec>, device: tch::Device, max_bytes: u64) -> Result<GnnModel> {
    Ok(weights::load(path, spec_override, device, &WeightLimits { max_file_bytes: max_bytes })?.model)
}

/// An attack archive (the service's `eval` part) checked against the model: it unpacks, holds
/// attack.json and both evaluation sets, and those fit the model's classes and features.
/// Errors name files inside the archive, never the server's paths.
pub fn check_attack_archive(path: &Path, spec: &ModelSpec) -> std::result::Result<usize, String> {
    let source = AttackSource::open(path).map_err(|e| e.to_string().replace(&path.display().to_string(), "eval"))?;
    let scrub = |e: gcleaner_engine::Error| {
        let text = e.to_string();
        text.replace(&format!("{}/", source.dir().display()), "").replace(&path.display().to_string(), "eval")
    };
    let sets = load_eval_sets(spec, source.dir()).map_err(scrub)?;
    check_eval_sets(&sets.clean, &sets.triggered, sets.target_class, spec.num_classes).map_err(scrub)?;
    for (what, ds) in [("clean", &sets.clean), ("triggered", &sets.triggered)] {
        for (i, g) in ds.graphs.iter().enumerate() {
            spec.features.node_features(g).map_err(|e| format!("{what} evaluation graph {i}: {e}"))?;
        }
    }
    if let Some(reference) = source.clean_model_path() {
        let found = inspect_model(&reference, None, MAX_REFERENCE_MODEL_BYTES).map_err(scrub)?;
        if found.num_classes != spec.num_classes {
            return Err(format!("{CLEAN_MODEL_FILE} predicts {} classes but the model {}", found.num_classes, spec.num_classes));
        }
    }
    Ok(sets.clean.graphs.len() + sets.triggered.graphs.len())
}

/// The reference model travels inside the eval archive, which the data limit already bounds.
const MAX_REFERENCE_MODEL_BYTES: u64 = 1 << 30;
