//! The reaper: jobs whose lease expired (their worker died or stalled) go back to the queue
//! after a backoff, or fail visibly once their attempts are used up. Also the retention sweep.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::QueueConfig;
use crate::storage::ArtifactStore;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Reaped {
    pub id: Uuid,
    pub attempt: i32,
    /// The state the job was moved to: queued, failed or canceled.
    pub state: String,
}

/// Requeues or fails every job whose lease has expired. Safe to run in many processes at once.
pub async fn reap_expired(pool: &PgPool, retry_base: Duration) -> Result<Vec<Reaped>, sqlx::Error> {
    sqlx::query_as(
        "WITH expired AS (
             SELECT id FROM jobs
             WHERE state = 'running' AND lease_expires_at < now()
             ORDER BY lease_expires_at
             LIMIT 100
             FOR UPDATE SKIP LOCKED
         ), moved AS (
             UPDATE jobs j SET
                 state = CASE WHEN j.cancel_requested THEN 'canceled'
                              WHEN j.attempt >= j.max_attempts THEN 'failed'
                              ELSE 'queued' END,
                 finished_at = CASE WHEN j.cancel_requested OR j.attempt >= j.max_attempts THEN now() END,
                 run_at = now() + make_interval(secs => least(3600, $1 * power(2, j.attempt - 1) * (0.5 + random()))),
                 lease_owner = NULL, lease_expires_at = NULL,
                 phase = NULL, progress_step = NULL, progress_total = NULL, updated_at = now(),
                 error = CASE
                     WHEN j.cancel_requested THEN jsonb_build_object(
                         'type', 'urn:gcleaner:problem:canceled', 'code', 'canceled', 'title', 'Job canceled', 'status', 409,
                         'detail', 'canceled; its worker stopped responding before confirming')
                     WHEN j.attempt >= j.max_attempts THEN jsonb_build_object(
                         'type', 'urn:gcleaner:problem:attempts_exhausted', 'code', 'attempts_exhausted', 'title', 'Job failed', 'status', 500,
                         'detail', format('worker %s stopped renewing its lease on attempt %s of %s',
                                          j.lease_owner, j.attempt, j.max_attempts))
                     ELSE jsonb_build_object(
                         'type', 'urn:gcleaner:problem:lease_expired', 'code', 'lease_expired', 'title', 'Worker lost', 'status', 503,
                         'detail', format('worker %s stopped renewing its lease on attempt %s; retrying',
                                          j.lease_owner, j.attempt))
                 END
             FROM expired WHERE j.id = expired.id
             RETURNING j.id, j.attempt, j.state, j.error
         ), closed AS (
             UPDATE job_attempts a SET outcome = 'lease_expired', finished_at = now(), error = moved.error
             FROM moved WHERE a.job_id = moved.id AND a.attempt = moved.attempt AND a.outcome = 'running'
         )
         SELECT id, attempt, state FROM moved",
    )
    .bind(retry_base.as_secs_f64())
    .fetch_all(pool)
    .await
}

/// Deletes finished jobs (and their files) older than the retention period.
pub async fn purge_expired(pool: &PgPool, store: &dyn ArtifactStore, days: u32) -> anyhow::Result<usize> {
    if days == 0 {
        return Ok(0);
    }
    let mut purged = 0;
    for (id, tenant_id) in crate::db::jobs::expired_ids(pool, days, 100).await? {
        if crate::db::jobs::delete(pool, tenant_id, id).await?.is_some() {
            store.delete_job(id).await?;
            purged += 1;
        }
    }
    Ok(purged)
}

/// Runs the reaper, retention and callback deliveries every `reaper_secs` until `shutdown`.
pub async fn run_maintenance(pool: PgPool, store: Arc<dyn ArtifactStore>, config: QueueConfig, shutdown: CancellationToken) {
    let http = super::callbacks::client();
    loop {
        match reap_expired(&pool, Duration::from_secs_f64(config.retry_base_secs)).await {
            Ok(reaped) => {
                for job in reaped {
                    tracing::warn!(job_id = %job.id, attempt = job.attempt, state = %job.state,
                                   "lease expired; job moved");
                }
            }
            Err(err) => tracing::warn!(error = %err, "reaper sweep failed"),
        }
        match purge_expired(&pool, store.as_ref(), config.retention_days).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "removed jobs past retention"),
            Err(err) => tracing::warn!(error = %err, "retention sweep failed"),
        }
        if let Err(err) = super::callbacks::deliver_due(&pool, &http, &config).await {
            tracing::warn!(error = %err, "callback delivery sweep failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(config.reaper_interval()) => {}
        }
    }
}
