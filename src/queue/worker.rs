//! The worker loop: claim a job, run it on a blocking thread while an async task heartbeats the
//! lease and records progress, then write the outcome through the fence. Idle workers sleep
//! until a queue notification or the poll interval.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::claim::{claim_next, ClaimedJob};
use super::fenced::{self, Fence, Heartbeat, Written};
use super::runner::{JobContext, JobControl, JobError, JobInput, JobOutput, JobRunner, StopReason};
use crate::config::QueueConfig;
use crate::db::artifacts::{self, ArtifactKind};
use crate::notify::Notifications;
use crate::storage::{self, ArtifactStore, StoredObject};

/// Least time between two progress writes of one job.
const PROGRESS_WRITE_INTERVAL: Duration = Duration::from_millis(250);

pub struct Worker {
    pub id: String,
    pub pool: PgPool,
    pub store: Arc<dyn ArtifactStore>,
    pub runner: Arc<dyn JobRunner>,
    pub notifications: Arc<Notifications>,
    pub queue: QueueConfig,
    pub device: String,
    /// Stops claiming at once; a running job gets the grace period, then is stopped and released.
    pub shutdown: CancellationToken,
}

/// A worker id that tells operators where the worker runs.
pub fn worker_id(index: usize) -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "host".into());
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("{host}:{}:{index}:{suffix}", std::process::id())
}

impl Worker {
    pub async fn run(self) {
        let mut wake = self.notifications.queue_watch();
        tracing::info!(worker = %self.id, "worker started");
        while !self.shutdown.is_cancelled() {
            wake.borrow_and_update();
            match claim_next(&self.pool, &self.id, self.queue.lease()).await {
                Ok(Some(job)) => self.execute(job).await,
                Ok(None) => {
                    tokio::select! {
                        _ = wake.changed() => {}
                        _ = tokio::time::sleep(self.queue.poll()) => {}
                        _ = self.shutdown.cancelled() => {}
                    }
                }
                Err(err) => {
                    tracing::warn!(worker = %self.id, error = %err, "claim failed; retrying after the poll interval");
                    tokio::select! {
                        _ = tokio::time::sleep(self.queue.poll()) => {}
                        _ = self.shutdown.cancelled() => {}
                    }
                }
            }
        }
        tracing::info!(worker = %self.id, "worker stopped");
    }

    async fn execute(&self, job: ClaimedJob) {
        let span = tracing::info_span!("job", job_id = %job.id, attempt = job.attempt, worker = %self.id);
        self.execute_in_span(job).instrument(span).await
    }

    async fn execute_in_span(&self, job: ClaimedJob) {
        let fence = Fence { job_id: job.id, attempt: job.attempt, worker: self.id.clone() };
        tracing::info!("job claimed");
        let control = Arc::new(JobControl::default());
        let work_dir = work_dir(&self.store, &job);

        let heartbeat =
            tokio::spawn(heartbeat_loop(self.pool.clone(), fence.clone(), control.clone(), self.queue.clone()).in_current_span());
        let grace = {
            let control = control.clone();
            let shutdown = self.shutdown.clone();
            let grace = self.queue.shutdown_grace();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                tokio::time::sleep(grace).await;
                control.stop(StopReason::Shutdown);
            })
        };

        let result = match self.prepare_input(&job, &work_dir).await {
            Ok(input) => {
                let runner = self.runner.clone();
                let ctl = control.clone();
                crate::telemetry::spawn_blocking_with_tracing(move || {
                    let mut ctx = JobContext::new(ctl);
                    runner.run(&input, &mut ctx)
                })
                .await
                .unwrap_or_else(|panic| {
                    tracing::error!(error = %panic, "job runner panicked");
                    Err(JobError::Permanent("internal error while running the job".into()))
                })
            }
            Err(err) => Err(err),
        };
        heartbeat.abort();
        grace.abort();

        if let Err(err) = self.record_outcome(&job, &fence, &control, result).await {
            // The lease will expire and the reaper will retry the job.
            tracing::error!(error = %err, "could not record the job outcome");
        }
        if let Err(err) = tokio::fs::remove_dir_all(&work_dir).await {
            if err.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(error = %err, "could not remove the work directory");
            }
        }
    }

    async fn prepare_input(&self, job: &ClaimedJob, work_dir: &std::path::Path) -> Result<JobInput, JobError> {
        tokio::fs::create_dir_all(work_dir)
            .await
            .map_err(|e| JobError::Transient(format!("cannot create the work directory: {e}")))?;
        let rows =
            artifacts::list_for_job(&self.pool, job.id).await.map_err(|e| JobError::Transient(format!("database: {e}")))?;
        // An input the store cannot hand over now (unreachable, or not yet visible) is a
        // transient failure: the job is retried, not failed.
        let wanted = [ArtifactKind::InputModel, ArtifactKind::InputSpec, ArtifactKind::InputData, ArtifactKind::InputEval];
        let mut inputs = std::collections::HashMap::new();
        for row in rows.iter().filter(|r| wanted.iter().any(|k| k.as_str() == r.kind)) {
            // Keep the stored name (and so its extension) for the engine.
            let name = row.storage_key.rsplit('/').next().unwrap_or("file");
            let scratch = work_dir.join(format!("input-{name}"));
            let path = self
                .store
                .fetch(&row.storage_key, &scratch)
                .await
                .map_err(|e| JobError::Transient(format!("artifact {}: {e}", row.kind)))?;
            inputs.insert(row.kind.clone(), path);
        }
        let path_of =
            |kind: ArtifactKind| -> Result<Option<std::path::PathBuf>, JobError> { Ok(inputs.get(kind.as_str()).cloned()) };
        let missing = |what: &str| JobError::Permanent(format!("the job's {what} upload is missing from storage"));
        Ok(JobInput {
            job_id: job.id,
            attempt: job.attempt,
            model: path_of(ArtifactKind::InputModel)?.ok_or_else(|| missing("model"))?,
            spec: path_of(ArtifactKind::InputSpec)?,
            data: path_of(ArtifactKind::InputData)?.ok_or_else(|| missing("data"))?,
            eval: path_of(ArtifactKind::InputEval)?,
            config: job.config.0.clone(),
            work_dir: work_dir.to_path_buf(),
            device: self.device.clone(),
        })
    }

    async fn record_outcome(
        &self,
        job: &ClaimedJob,
        fence: &Fence,
        control: &JobControl,
        result: Result<JobOutput, JobError>,
    ) -> anyhow::Result<()> {
        if control.stop_reason() == Some(StopReason::LeaseLost) {
            tracing::warn!("lease lost while running; discarding this attempt's outcome");
            return Ok(());
        }
        // Outputs go to the store first; a store that cannot take them makes the attempt a
        // transient failure, retried like any other.
        let result = match result {
            Ok(output) => {
                // The last progress may not have been written yet: record it before the end.
                if let Some(progress) = control.latest_progress() {
                    fenced::heartbeat(&self.pool, fence, self.queue.lease(), Some(progress)).await?;
                }
                self.store_outputs(fence, output, &work_dir(&self.store, job))
                    .await
                    .map_err(|e| JobError::Transient(format!("storing the results: {e}")))
            }
            Err(err) => Err(err),
        };
        let written = match result {
            Ok(stored) => {
                let written = fenced::complete(&self.pool, fence, &stored).await?;
                if written == Written::Rejected {
                    for (_, object) in &stored {
                        let _ = self.store.delete(&object.key).await;
                    }
                } else {
                    tracing::info!("job succeeded");
                }
                written
            }
            Err(JobError::Stopped) => match control.stop_reason() {
                Some(StopReason::CancelRequested) => {
                    tracing::info!("job canceled at an epoch boundary");
                    let error = problem("canceled", "Job canceled", 409, "canceled while running, at an epoch boundary");
                    fenced::finish(&self.pool, fence, "canceled", &error).await?
                }
                Some(StopReason::Shutdown) => {
                    tracing::warn!("shutdown grace period over; handing the job back to the queue");
                    fenced::requeue(&self.pool, fence, Duration::ZERO, None, false).await?
                }
                _ => {
                    let error = problem("job_failed", "Job failed", 500, "the job stopped without a reason");
                    fenced::finish(&self.pool, fence, "failed", &error).await?
                }
            },
            Err(JobError::Invalid(detail)) => {
                tracing::info!(%detail, "job input rejected");
                let error = problem("invalid_input", "Invalid job input", 422, &detail);
                fenced::finish(&self.pool, fence, "failed", &error).await?
            }
            Err(JobError::Permanent(detail)) => {
                tracing::warn!(%detail, "job failed");
                let error = problem("job_failed", "Job failed", 500, &detail);
                fenced::finish(&self.pool, fence, "failed", &error).await?
            }
            Err(JobError::Transient(detail)) if job.attempt < job.max_attempts => {
                let delay = super::retry_delay(Duration::from_secs_f64(self.queue.retry_base_secs), job.attempt);
                tracing::warn!(%detail, retry_in_s = delay.as_secs_f64(), "transient failure; retrying");
                let error = problem("transient_failure", "Attempt failed; retrying", 503, &detail);
                fenced::requeue(&self.pool, fence, delay, Some(&error), true).await?
            }
            Err(JobError::Transient(detail)) => {
                tracing::warn!(%detail, "transient failure on the last attempt");
                let detail = format!("failed on all {} attempts; last error: {detail}", job.max_attempts);
                let error = problem("attempts_exhausted", "Job failed", 500, &detail);
                fenced::finish(&self.pool, fence, "failed", &error).await?
            }
        };
        if written == Written::Rejected {
            tracing::warn!("the job was taken from this worker; its write was rejected");
        }
        Ok(())
    }

    /// Moves the runner's files into the store under attempt-specific keys, so a stale worker can
    /// never overwrite the files of the attempt that won. On failure nothing of this attempt is
    /// left in the store.
    async fn store_outputs(
        &self,
        fence: &Fence,
        output: JobOutput,
        work_dir: &std::path::Path,
    ) -> anyhow::Result<Vec<(ArtifactKind, StoredObject)>> {
        let job_id = fence.job_id;
        let attempt = fence.attempt;
        // The reports are written into the work directory, which is removed after the attempt
        // whatever happens here.
        let work_dir = work_dir.to_path_buf();
        let files = crate::telemetry::spawn_blocking_with_tracing(move || {
            let report_json = storage::staging_path(&work_dir, "report-json");
            std::fs::write(&report_json, serde_json::to_vec_pretty(&output.report)?)?;
            let report_html = storage::staging_path(&work_dir, "report-html");
            std::fs::write(&report_html, output.report_html.as_bytes())?;
            // A scan has no model to store: its job answers /model with a problem instead.
            let model = output.model.map(|path| (ArtifactKind::OutputModel, path, "purified.safetensors"));
            let reports =
                [(ArtifactKind::ReportJson, report_json, "report.json"), (ArtifactKind::ReportHtml, report_html, "report.html")];
            let mut files = Vec::new();
            for (kind, path, name) in model.into_iter().chain(reports) {
                let (sha256, size) = storage::hash_file(&path)?;
                files.push((kind, path, name, sha256, size));
            }
            Ok::<_, anyhow::Error>(files)
        })
        .await??;
        let mut stored = Vec::new();
        for (kind, path, name, sha256, size) in files {
            let key = storage::job_key(job_id, &format!("attempt-{attempt}/{name}"));
            match self.store.commit(&path, &key, &sha256, size).await {
                Ok(object) => stored.push((kind, object)),
                Err(err) => {
                    for (_, object) in &stored {
                        let _ = self.store.delete(&object.key).await;
                    }
                    return Err(err.into());
                }
            }
        }
        Ok(stored)
    }
}

/// The process-local directory where one attempt's inputs and outputs live.
fn work_dir(store: &Arc<dyn ArtifactStore>, job: &ClaimedJob) -> std::path::PathBuf {
    store.staging_dir().join(format!("work-{}-{}", job.id, job.attempt))
}

/// A problem object (RFC 9457 members plus a stable code) stored as a job's error.
pub fn problem(code: &str, title: &str, status: u16, detail: &str) -> Value {
    json!({ "type": format!("urn:gcleaner:problem:{code}"), "code": code, "title": title, "status": status, "detail": detail })
}

/// Renews the lease every heartbeat interval and writes progress soon after it changes; turns
/// a lost lease or a cancel request into a stop signal for the runner.
async fn heartbeat_loop(pool: PgPool, fence: Fence, control: Arc<JobControl>, queue: QueueConfig) {
    let mut last_written = None;
    loop {
        let progress = control.latest_progress();
        let changed = progress != last_written;
        match fenced::heartbeat(&pool, &fence, queue.lease(), if changed { progress } else { None }).await {
            Ok(Heartbeat::Held { cancel_requested }) => {
                if changed {
                    last_written = progress;
                }
                if cancel_requested {
                    control.stop(StopReason::CancelRequested);
                }
            }
            Ok(Heartbeat::Lost) => {
                tracing::warn!("lease lost: the job was reclaimed, canceled or deleted");
                control.stop(StopReason::LeaseLost);
                return;
            }
            Err(err) => tracing::warn!(error = %err, "heartbeat failed; will retry"),
        }
        let beat = tokio::time::sleep(queue.heartbeat());
        tokio::select! {
            _ = beat => {}
            _ = control.progress_changed.notified() => {
                tokio::time::sleep(PROGRESS_WRITE_INTERVAL).await;
            }
        }
    }
}
