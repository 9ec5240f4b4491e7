//! The production runner: runs the engine's purification pipeline
//! (`gcleaner_engine::purify::pipeline`, the one `gcleaner purify` runs) on the job's files with
//! its parameters, and returns the purified model with the report (a scan, `"mode": "scan"`,
//! returns the report alone). Progress and cancellation
//! flow through the [`JobContext`], which the engine checks between epochs.

use serde_json::{Map, Value};

use gcleaner_engine::models::weights::WeightLimits;
use gcleaner_engine::purify::pipeline::{
    parse_device, run_purification as run_engine_pipeline, DeviceError, LabelMismatch, PipelineEvents, PurificationJob,
};
use gcleaner_engine::purify::settings::Overrides;
use gcleaner_engine::purify::PurifyConfig;

use super::runner::{JobContext, JobError, JobInput, JobOutput, JobRunner, Phase};
use crate::upload::engine_checks;

/// Config keys the service itself uses; everything else is a purification parameter.
const SERVICE_KEYS: [&str; 1] = ["callback_url"];

/// Upper bounds on the parameters that decide how long a job runs, so one submission cannot
/// occupy a worker for days.
const BOUNDS: [(&str, f64); 8] = [
    ("/recovery/epochs", 1000.0),
    ("/recovery/restarts", 50.0),
    ("/recovery/generator_hidden", 4096.0),
    ("/unlearn/epochs", 1000.0),
    ("/unlearn/max_epochs", 1000.0),
    ("/unlearn/teacher_epochs", 1000.0),
    ("/unlearn/positions", 100.0),
    ("/unlearn/batch_size", 4096.0),
];

/// The upload already enforced the size limit; the worker reads whatever was accepted.
const UNBOUNDED_MODEL_BYTES: u64 = 1 << 50;

pub struct EngineRunner;

/// Error details go to clients: name the uploads, not the server's paths.
fn without_paths(err: JobError, job: &JobInput) -> JobError {
    if !matches!(err, JobError::Stopped) {
        tracing::warn!(error = %err, "purification failed");
    }
    let scrub = |message: String| {
        // libtorch appends C++ stack frames with library paths: the first line says what failed.
        let mut message = message.lines().next().unwrap_or_default().chars().take(1000).collect::<String>();
        for (path, name) in
            [(Some(&job.model), "model"), (job.spec.as_ref(), "spec"), (Some(&job.data), "data"), (job.eval.as_ref(), "eval")]
        {
            if let Some(path) = path {
                message = message.replace(&path.display().to_string(), name);
            }
        }
        message.replace(&job.work_dir.display().to_string(), "work")
    };
    match err {
        JobError::Invalid(m) => JobError::Invalid(scrub(m)),
        JobError::Transient(m) => JobError::Transient(scrub(m)),
        JobError::Permanent(m) => JobError::Permanent(scrub(m)),
        JobError::Stopped => JobError::Stopped,
    }
}

/// The purification settings a job config changes (everything but [`SERVICE_KEYS`]); a field the
/// config does not have is refused by name (typos would otherwise be silently ignored).
pub fn job_overrides(config: &Value) -> Result<Overrides, String> {
    let mut params: Map<String, Value> = config.as_object().cloned().unwrap_or_default();
    for key in SERVICE_KEYS {
        params.remove(key);
    }
    Overrides::from_object(&Value::Object(params)).map_err(|e| e.to_string())
}

/// The purification parameters of a job config: the defaults (auxiliary data's own with
/// `"pseudo_labels": true`) with the submitted values laid over them, validated and within
/// [`BOUNDS`].
pub fn purify_config(config: &Value) -> Result<PurifyConfig, String> {
    let overrides = job_overrides(config)?;
    let parsed = overrides.apply(overrides.pseudo_labels()).map_err(|e| e.to_string())?;
    let merged = serde_json::to_value(&parsed).map_err(|e| e.to_string())?;
    for (pointer, max) in BOUNDS {
        if let Some(v) = merged.pointer(pointer).and_then(Value::as_f64) {
            if v > max {
                return Err(format!("{} = {v} is above the limit {max}", pointer.trim_start_matches('/').replace('/', ".")));
            }
        }
    }
    Ok(parsed)
}

impl JobRunner for EngineRunner {
    fn check_config(&self, config: &Value) -> Result<(), String> {
        purify_config(config).map(|_| ())
    }

    fn run(&self, job: &JobInput, ctx: &mut JobContext) -> Result<JobOutput, JobError> {
        run_purification(job, ctx).map_err(|e| without_paths(e, job))
    }
}

fn run_purification(job: &JobInput, ctx: &mut JobContext) -> Result<JobOutput, JobError> {
    ctx.phase(Phase::Validating, 3);
    let device = parse_device(&job.device).map_err(|e| {
        JobError::Permanent(match e {
            DeviceError::Unknown(other) => {
                format!("unknown device {other:?} (expected cpu, auto, cuda or cuda:N)")
            }
            DeviceError::NoCuda(i) => format!("this worker has no CUDA device {i}"),
        })
    })?;
    // Checked at submission too; the limits may have changed since.
    purify_config(&job.config).map_err(JobError::Invalid)?;
    let overrides = job_overrides(&job.config).map_err(JobError::Invalid)?;
    let spec = match &job.spec {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| JobError::Transient(format!("reading the spec: {e}")))?;
            Some(serde_json::from_slice(&bytes).map_err(|e| JobError::Invalid(format!("invalid spec: {e}")))?)
        }
        None => None,
    };
    let sample = engine_checks::load_dataset(&job.data)?;
    tracing::info!(graphs = sample.graphs.len(), ?device, "purifying");
    let output = run_engine_pipeline(
        PurificationJob {
            model: &job.model,
            spec,
            weight_limits: WeightLimits { max_file_bytes: UNBOUNDED_MODEL_BYTES },
            sample,
            attack: job.eval.as_deref(),
            device,
            overrides: &overrides,
            out_dir: Some(&job.work_dir),
        },
        ctx,
    )?;
    let report = serde_json::to_value(&output.report).map_err(|e| JobError::Permanent(format!("report: {e}")))?;
    tracing::info!(verdict = %report["verdict"]["summary"], "purification finished");
    for warning in report["warnings"].as_array().into_iter().flatten() {
        tracing::warn!(%warning, "purification result to check");
    }
    Ok(JobOutput { model: output.model, report, report_html: output.report_html })
}

/// The worker's side of a purification: progress and cancellation through the context, notes
/// to the log, and a refusal when the sample's labels do not fit the model (the service never
/// falls back to pseudo-labels by itself, see [`engine_checks::prepare_sample`]).
impl PipelineEvents for JobContext {
    fn note(&mut self, text: &str) {
        tracing::info!(note = text, "purification note");
    }

    fn labels_do_not_fit(&mut self, why: &LabelMismatch) -> gcleaner_engine::Result<()> {
        Err(gcleaner_engine::Error::invalid(engine_checks::unfit_labels(why)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gcleaner_engine::purify::unlearn::UnlearnConfig;
    use serde_json::json;

    #[test]
    fn config_overlays_defaults_and_refuses_unknown_or_unbounded_keys() {
        let c = purify_config(&json!({ "seed": 3, "unlearn": { "epochs": 7 }, "callback_url": "x" })).unwrap();
        assert_eq!(c.seed, 3);
        assert_eq!(c.unlearn.epochs, 7);
        assert_eq!(c.recovery, PurifyConfig::default().recovery);
        assert!(purify_config(&json!({ "sead": 3 })).unwrap_err().contains("sead"));
        assert!(purify_config(&json!({ "unlearn": { "epoch": 3 } })).is_err());
        // Removed settings are unknown ones: a job naming one is refused by name.
        let err = purify_config(&json!({ "unlearn": { "anchor_weight": 0.0 } })).unwrap_err();
        assert_eq!(err, "unknown purification parameter \"unlearn.anchor_weight\"");
        assert!(purify_config(&json!({ "unlearn": { "epochs": 1_000_000 } })).unwrap_err().contains("limit"));
        assert!(purify_config(&json!({ "unlearn": 5 })).is_err());
        assert!(purify_config(&json!({ "seed": "x" })).is_err());
        assert!(purify_config(&json!({ "holdout_fraction": 1.5 })).is_err());
        // Values the engine would refuse only after recovering a trigger are refused on arrival.
        let err = purify_config(&json!({ "unlearn": { "mixup_weight": -1.0 } })).unwrap_err();
        assert!(err.contains("unlearn.mixup_weight"), "{err}");
        assert!(purify_config(&json!({ "unlearn": { "pattern_dropout": 1.0 } })).is_err());
        let err = purify_config(&json!({ "evidence_threshold": 2.0 })).unwrap_err();
        assert!(err.starts_with("evidence_threshold"), "{err}");
        assert!(purify_config(&json!({ "recovery": { "sizes": [] } })).is_err());
        assert!(purify_config(&json!({ "recovery": { "restarts": 0 } })).is_err());
        assert!(purify_config(&json!({ "unlearn": { "lr": 0.0 } })).is_err());
    }

    #[test]
    fn auxiliary_data_starts_from_its_own_unlearning_defaults() {
        let aux = purify_config(&json!({ "pseudo_labels": true })).unwrap();
        assert!(aux.pseudo_labels);
        assert_eq!(aux.unlearn, UnlearnConfig::auxiliary());
        assert_ne!(aux.unlearn, UnlearnConfig::default());
        // Submitted values still win.
        let c = purify_config(&json!({ "pseudo_labels": true, "unlearn": { "epochs": 30 } })).unwrap();
        assert_eq!((c.unlearn.epochs, c.unlearn.train_last_conv), (30, false));
        assert_eq!(purify_config(&json!({})).unwrap().unlearn, UnlearnConfig::default());
    }
}
