//! Every write a worker makes to its job, fenced on `(id, attempt, lease_owner)` and an unexpired
//! lease: once the lease is lost (expired, reaped, reclaimed, or the job deleted) the statement
//! matches no row and the worker learns it no longer owns the job.

use std::time::Duration;

use serde_json::Value;
use sqlx::types::Json;
use sqlx::PgPool;
use uuid::Uuid;

use super::runner::ProgressUpdate;
use crate::db::artifacts::{self, ArtifactKind};
use crate::storage::StoredObject;

/// The identity a worker writes under.
#[derive(Debug, Clone)]
pub struct Fence {
    pub job_id: Uuid,
    pub attempt: i32,
    pub worker: String,
}

const FENCE: &str = "id = $1 AND attempt = $2 AND lease_owner = $3 AND state = 'running' AND lease_expires_at > now()";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// The lease was extended; `cancel_requested` tells whether the owner asked to cancel.
    Held {
        cancel_requested: bool,
    },
    Lost,
}

/// Extends the lease and records the latest progress.
pub async fn heartbeat(
    pool: &PgPool,
    fence: &Fence,
    lease: Duration,
    progress: Option<ProgressUpdate>,
) -> Result<Heartbeat, sqlx::Error> {
    let row: Option<bool> = sqlx::query_scalar(&format!(
        "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $4), updated_at = now(),
             phase = coalesce($5, phase),
             progress_step = CASE WHEN $5 IS NULL THEN progress_step ELSE $6 END,
             progress_total = CASE WHEN $5 IS NULL THEN progress_total ELSE $7 END
         WHERE {FENCE} RETURNING cancel_requested"
    ))
    .bind(fence.job_id)
    .bind(fence.attempt)
    .bind(&fence.worker)
    .bind(lease.as_secs_f64())
    .bind(progress.map(|p| p.phase.as_str()))
    .bind(progress.map(|p| p.step as i32))
    .bind(progress.map(|p| p.total as i32))
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some(cancel_requested) => Heartbeat::Held { cancel_requested },
        None => Heartbeat::Lost,
    })
}

/// Whether a fenced write landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Applied,
    /// The worker had lost the job; nothing changed.
    Rejected,
}

/// Marks the job succeeded and records its outputs, in one transaction.
/// The job's progress is set to the end of its last phase.
pub async fn complete(pool: &PgPool, fence: &Fence, outputs: &[(ArtifactKind, StoredObject)]) -> Result<Written, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query(&format!(
        "UPDATE jobs SET state = 'succeeded', finished_at = now(), updated_at = now(), error = NULL,
             lease_owner = NULL, lease_expires_at = NULL, phase = coalesce(phase, 'evaluating'),
             progress_total = coalesce(nullif(progress_total, 0), 1),
             progress_step = coalesce(nullif(progress_total, 0), 1)
         WHERE {FENCE}"
    ))
    .bind(fence.job_id)
    .bind(fence.attempt)
    .bind(&fence.worker)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(Written::Rejected);
    }
    for (kind, object) in outputs {
        artifacts::insert(&mut *tx, fence.job_id, *kind, &object.key, &object.sha256, object.size).await?;
    }
    close_attempt(&mut tx, fence, "succeeded", None).await?;
    tx.commit().await?;
    Ok(Written::Applied)
}

/// Ends the job in `state` (`failed` or `canceled`) with `error`.
pub async fn finish(pool: &PgPool, fence: &Fence, state: &str, error: &Value) -> Result<Written, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query(&format!(
        "UPDATE jobs SET state = $4, finished_at = now(), updated_at = now(), error = $5,
             lease_owner = NULL, lease_expires_at = NULL
         WHERE {FENCE}"
    ))
    .bind(fence.job_id)
    .bind(fence.attempt)
    .bind(&fence.worker)
    .bind(state)
    .bind(Json(error))
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(Written::Rejected);
    }
    close_attempt(&mut tx, fence, state, Some(error)).await?;
    tx.commit().await?;
    Ok(Written::Applied)
}

/// Puts the job back in the queue to run again after `delay`. With `counts_as_attempt` false
/// (a shutdown hand-back) the job gets its try back.
pub async fn requeue(
    pool: &PgPool,
    fence: &Fence,
    delay: Duration,
    error: Option<&Value>,
    counts_as_attempt: bool,
) -> Result<Written, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query(&format!(
        "UPDATE jobs SET state = 'queued', run_at = now() + make_interval(secs => $4), updated_at = now(),
             error = coalesce($5, error), lease_owner = NULL, lease_expires_at = NULL,
             phase = NULL, progress_step = NULL, progress_total = NULL,
             max_attempts = max_attempts + CASE WHEN $6 THEN 0 ELSE 1 END
         WHERE {FENCE}"
    ))
    .bind(fence.job_id)
    .bind(fence.attempt)
    .bind(&fence.worker)
    .bind(delay.as_secs_f64())
    .bind(error.map(Json))
    .bind(counts_as_attempt)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(Written::Rejected);
    }
    let outcome = if counts_as_attempt { "retrying" } else { "released" };
    close_attempt(&mut tx, fence, outcome, error).await?;
    tx.commit().await?;
    Ok(Written::Applied)
}

async fn close_attempt(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    fence: &Fence,
    outcome: &str,
    error: Option<&Value>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE job_attempts SET outcome = $3, finished_at = now(), error = $4
         WHERE job_id = $1 AND attempt = $2 AND outcome = 'running'",
    )
    .bind(fence.job_id)
    .bind(fence.attempt)
    .bind(outcome)
    .bind(error.map(Json))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
