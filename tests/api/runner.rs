//! A test-only job runner driven by the job's config `{"test": {...}}`: it sleeps through epochs
//! (reporting progress, honouring stop requests at epoch boundaries) and can fail on purpose.
//! It exists so queue mechanics can be tested without the engine; it never claims to purify.

use std::time::Duration;

use gcleaner::queue::{JobContext, JobError, JobInput, JobOutput, JobRunner, Phase};
use serde_json::json;

pub struct ScriptedRunner;

impl JobRunner for ScriptedRunner {
    fn run(&self, job: &JobInput, ctx: &mut JobContext) -> Result<JobOutput, JobError> {
        let script = job.config.get("test").cloned().unwrap_or_default();
        let epochs = script.get("epochs").and_then(|v| v.as_u64()).unwrap_or(2) as u32;
        let epoch_ms = script.get("epoch_ms").and_then(|v| v.as_u64()).unwrap_or(20);
        let fail = script.get("fail").and_then(|v| v.as_str()).unwrap_or("");
        // Fail only on attempts up to this one (0 = every attempt).
        let fail_until = script.get("fail_attempts").and_then(|v| v.as_i64()).unwrap_or(0);
        let failing = !fail.is_empty() && (fail_until == 0 || i64::from(job.attempt) <= fail_until);

        ctx.phase(Phase::Validating, 1);
        ctx.checkpoint()?;
        if failing && fail == "invalid" {
            return Err(JobError::Invalid("scripted invalid input".into()));
        }
        ctx.phase(Phase::Recovery, epochs);
        for epoch in 1..=epochs {
            if epoch == epochs / 2 + 1 {
                ctx.phase(Phase::Unlearning, epochs);
            }
            ctx.checkpoint()?;
            std::thread::sleep(Duration::from_millis(epoch_ms));
            ctx.progress(epoch, epochs);
        }
        if failing && fail == "transient" {
            return Err(JobError::Transient("scripted transient failure".into()));
        }
        if failing && fail == "permanent" {
            return Err(JobError::Permanent("scripted permanent failure".into()));
        }
        ctx.phase(Phase::Evaluating, 1);
        let model = job.work_dir.join("purified.safetensors");
        std::fs::copy(&job.model, &model).map_err(|e| JobError::Transient(e.to_string()))?;
        let report = json!({ "job_id": job.job_id, "attempt": job.attempt, "epochs": epochs, "runner": "scripted" });
        let report_html = format!("<!doctype html><title>report</title><p>job {} attempt {}</p>", job.job_id, job.attempt);
        Ok(JobOutput { model: Some(model), report, report_html })
    }
}
