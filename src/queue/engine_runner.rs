//! The production runner. It validates a job's inputs with the engine the same way the upload
//! did (storage can change between upload and run). The engine has no purification entry point
//! yet, so a job that passes validation fails with a clear message rather than pretending to
//! purify; `gcleaner_engine::purify` plugs in here once it exists.

use super::runner::{JobContext, JobError, JobInput, JobOutput, JobRunner, Phase};
use crate::upload::engine_checks;

pub struct EngineRunner;

impl JobRunner for EngineRunner {
    fn run(&self, job: &JobInput, ctx: &mut JobContext) -> Result<JobOutput, JobError> {
        ctx.phase(Phase::Validating, 2);
        let spec_override = match &job.spec {
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|e| JobError::Transient(format!("reading the spec: {e}")))?;
                Some(serde_json::from_slice(&bytes).map_err(|e| JobError::Invalid(format!("invalid spec: {e}")))?)
            }
            None => None,
        };
        let spec = engine_checks::inspect_model(&job.model, spec_override.as_ref())?;
        ctx.progress(1, 2);
        ctx.checkpoint()?;
        let dataset = engine_checks::load_dataset(&job.data)?;
        engine_checks::check_features(&spec.features, &dataset).map_err(JobError::Invalid)?;
        ctx.progress(2, 2);
        ctx.checkpoint()?;
        tracing::info!(graphs = dataset.graphs.len(), arch = spec.arch.name(), "inputs validated");
        Err(JobError::Permanent(
            "purification is not available in this build: the engine's purification entry point has not landed yet".into(),
        ))
    }
}
