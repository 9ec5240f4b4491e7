//! Everything checked before a job is queued, so a worker never sees input that cannot run:
//! formats by content, archive safety, the model's header, spec and weights, the data's size and
//! its fit with the model, and the config's callback host.

use std::io::Read;
use std::path::Path;

use gcleaner_engine::data::Dataset;
use gcleaner_engine::models::{ModelSpec, SPEC_FORMAT, SPEC_FORMAT_V2};
use serde_json::Value;

use super::archive::{self, ArchiveLimits};
use super::engine_checks;
use super::sniff::{self, Sniffed};
use super::{StagedFile, StagedUpload, UploadError};
use crate::config::LimitsConfig;
use crate::queue::JobRunner;

/// Facts about a validated upload.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ValidatedUpload {
    pub spec: ModelSpec,
    pub graphs: usize,
    pub classes: usize,
}

pub fn validate(
    upload: &StagedUpload,
    limits: &LimitsConfig,
    callback_hosts: &[String],
    runner: &dyn JobRunner,
) -> Result<ValidatedUpload, UploadError> {
    let model = upload.model.as_ref().ok_or(UploadError::MissingPart("model"))?;
    let data = upload.data.as_ref().ok_or(UploadError::MissingPart("data"))?;

    let spec_override = upload.spec.as_ref().map(read_spec).transpose()?;
    match sniff_file(&model.path)? {
        Sniffed::Safetensors => {}
        Sniffed::Pickle => return Err(UploadError::Pickle),
        // torch.save archives are zips of pickles.
        Sniffed::Zip if zip_holds_pickle(&model.path) => return Err(UploadError::Pickle),
        other => {
            return Err(UploadError::UnsupportedFormat {
                part: "model".into(),
                found: sniff::describe(other),
                expected: "safetensors",
            })
        }
    }
    if let Some(config) = &upload.config {
        check_config(config, callback_hosts)?;
        runner.check_config(config).map_err(UploadError::InvalidConfig)?;
    }
    let declared = match &spec_override {
        Some(spec) => spec.clone(),
        None => engine_checks::embedded_spec(&model.path).map_err(|e| invalid_model(&e, &model.path))?,
    };
    check_spec(&declared, limits)?;
    let spec = engine_checks::inspect_model(&model.path, spec_override.as_ref(), limits.max_model_bytes)
        .map_err(|e| invalid_model(&e, &model.path))?;

    let dataset = load_data("data", data, limits)?;
    let pseudo_requested = upload.config.as_ref().and_then(|c| c.get("pseudo_labels")).and_then(Value::as_bool).unwrap_or(false);
    let dataset = engine_checks::prepare_sample(dataset, &spec, pseudo_requested).map_err(UploadError::SpecMismatch)?;
    if let Some(eval) = &upload.eval {
        check_eval(eval, &spec, limits)?;
    }
    Ok(ValidatedUpload { spec, graphs: dataset.graphs.len(), classes: dataset.num_classes() })
}

fn sniff_file(path: &Path) -> Result<Sniffed, UploadError> {
    let mut head = Vec::with_capacity(512);
    std::fs::File::open(path)?.take(512).read_to_end(&mut head)?;
    Ok(sniff::sniff(&head))
}

fn zip_holds_pickle(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else { return false };
    let Ok(archive) = zip::ZipArchive::new(file) else { return false };
    let found = archive.file_names().any(|n| n.ends_with(".pkl") || n.ends_with("/data.pkl"));
    found
}

fn read_spec(file: &StagedFile) -> Result<ModelSpec, UploadError> {
    let bytes = std::fs::read(&file.path)?;
    serde_json::from_slice(&bytes).map_err(|e| UploadError::InvalidSpec(e.to_string()))
}

fn check_spec(spec: &ModelSpec, limits: &LimitsConfig) -> Result<(), UploadError> {
    if spec.format != SPEC_FORMAT && spec.format != SPEC_FORMAT_V2 {
        return Err(UploadError::InvalidSpec(format!(
            "format is {:?}, expected {SPEC_FORMAT:?} or {SPEC_FORMAT_V2:?}",
            spec.format
        )));
    }
    let bounded = [
        ("hidden", spec.hidden, limits.max_hidden),
        ("num_layers", spec.num_layers, limits.max_layers),
        ("in_features", spec.in_features, limits.max_in_features),
        ("num_classes", spec.num_classes, 10_000),
    ];
    for (name, value, max) in bounded {
        if value == 0 || value > max {
            return Err(UploadError::LimitExceeded(format!("spec {name} = {value} is outside 1..={max}")));
        }
    }
    if spec.num_classes < 2 {
        return Err(UploadError::InvalidSpec("num_classes must be at least 2".into()));
    }
    let dim = engine_checks::feature_dim(spec);
    if dim != spec.in_features {
        return Err(UploadError::InvalidSpec(format!("features give {dim} columns but in_features is {}", spec.in_features)));
    }
    if let Some(labels) = &spec.class_labels {
        if labels.len() != spec.num_classes {
            return Err(UploadError::InvalidSpec("class_labels must have num_classes entries".into()));
        }
    }
    Ok(())
}

/// Rejects unsafe archives and executable formats; returns the sniffed kind.
fn check_data_container(part: &str, file: &StagedFile, limits: &LimitsConfig) -> Result<Sniffed, UploadError> {
    let kind = sniff_file(&file.path)?;
    let archive_limits = ArchiveLimits { max_unpacked_bytes: limits.max_unpacked_bytes, max_entries: limits.max_archive_entries };
    let archive_error = |source| UploadError::Archive { part: part.to_string(), source };
    match kind {
        Sniffed::Zip => archive::check_zip(&file.path, archive_limits).map_err(archive_error)?,
        Sniffed::Gzip => archive::check_tar_gz(&file.path, archive_limits).map_err(archive_error)?,
        Sniffed::Json | Sniffed::Text => {}
        other => {
            return Err(UploadError::UnsupportedFormat {
                part: part.to_string(),
                found: sniff::describe(other),
                expected: "a TU zip/tar.gz, GIN text or gcleaner JSON dataset",
            })
        }
    }
    Ok(kind)
}

/// The `eval` part: an archive of an attack directory (attack.json, eval_clean.json,
/// eval_triggered.json, optionally clean_model.safetensors) whose sets fit the model.
fn check_eval(file: &StagedFile, spec: &ModelSpec, limits: &LimitsConfig) -> Result<(), UploadError> {
    let invalid = |detail: String| UploadError::InvalidData { part: "eval".into(), detail };
    match check_data_container("eval", file, limits)? {
        Sniffed::Zip | Sniffed::Gzip => {}
        _ => return Err(invalid("expected a zip or tar.gz of an attack directory (written by `gcleaner attack`)".into())),
    }
    let graphs = engine_checks::check_attack_archive(&file.path, spec).map_err(invalid)?;
    if graphs > 2 * limits.max_graphs {
        return Err(UploadError::LimitExceeded(format!(
            "eval holds {graphs} graphs; the limit is {} per set",
            limits.max_graphs
        )));
    }
    Ok(())
}

fn load_data(part: &str, file: &StagedFile, limits: &LimitsConfig) -> Result<Dataset, UploadError> {
    check_data_container(part, file, limits)?;
    let dataset = engine_checks::load_dataset(&file.path)
        .map_err(|e| UploadError::InvalidData { part: part.to_string(), detail: strip_path(&e.to_string(), &file.path) })?;
    if dataset.graphs.is_empty() {
        return Err(UploadError::InvalidData { part: part.to_string(), detail: "it holds no graphs".into() });
    }
    if dataset.graphs.len() > limits.max_graphs {
        return Err(UploadError::LimitExceeded(format!(
            "{part} holds {} graphs; the limit is {}",
            dataset.graphs.len(),
            limits.max_graphs
        )));
    }
    if let Some((i, g)) = dataset.graphs.iter().enumerate().find(|(_, g)| g.num_nodes > limits.max_nodes_per_graph) {
        return Err(UploadError::LimitExceeded(format!(
            "{part} graph {i} has {} nodes; the limit is {}",
            g.num_nodes, limits.max_nodes_per_graph
        )));
    }
    Ok(dataset)
}

fn invalid_model(err: &gcleaner_engine::Error, path: &Path) -> UploadError {
    UploadError::InvalidModel(strip_path(&err.to_string(), path))
}

fn check_config(config: &Value, callback_hosts: &[String]) -> Result<(), UploadError> {
    if let Some(url) = config.get("callback_url") {
        let url = url.as_str().ok_or_else(|| UploadError::InvalidConfig("callback_url must be a string".into()))?;
        crate::queue::callbacks::check_allowed(url, callback_hosts).map_err(UploadError::InvalidConfig)?;
    }
    Ok(())
}

/// Error messages name the file; the client's view of it is the part, not our staging path.
fn strip_path(message: &str, path: &Path) -> String {
    message.replace(&path.display().to_string(), "upload")
}
