//! Claiming: one statement picks the next due job with `FOR UPDATE SKIP LOCKED`, marks it
//! running, bumps its attempt (the fencing token), sets the lease and opens an attempt row. It
//! commits at once; the work happens outside any transaction.

use std::time::Duration;

use serde_json::Value;
use sqlx::types::Json;
use sqlx::PgPool;
use uuid::Uuid;

/// A job this worker holds the lease on, identified for fencing by `(id, attempt)`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedJob {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub attempt: i32,
    pub max_attempts: i32,
    pub config: Json<Value>,
}

pub async fn claim_next(pool: &PgPool, worker: &str, lease: Duration) -> Result<Option<ClaimedJob>, sqlx::Error> {
    sqlx::query_as(
        "WITH next AS (
             SELECT id FROM jobs
             WHERE state = 'queued' AND run_at <= now()
             ORDER BY state, priority DESC, run_at, id
             LIMIT 1
             FOR UPDATE SKIP LOCKED
         ), claimed AS (
             UPDATE jobs j
             SET state = 'running', attempt = j.attempt + 1, lease_owner = $1,
                 lease_expires_at = now() + make_interval(secs => $2),
                 started_at = coalesce(j.started_at, now()), updated_at = now(),
                 phase = 'validating', progress_step = NULL, progress_total = NULL
             FROM next WHERE j.id = next.id
             RETURNING j.id, j.tenant_id, j.attempt, j.max_attempts, j.config
         ), opened AS (
             INSERT INTO job_attempts (job_id, attempt, worker)
             SELECT id, attempt, $1 FROM claimed
         )
         SELECT id, tenant_id, attempt, max_attempts, config FROM claimed",
    )
    .bind(worker)
    .bind(lease.as_secs_f64())
    .fetch_optional(pool)
    .await
}
