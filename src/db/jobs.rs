//! The jobs table as the API sees it: create, read, list, cancel, delete. Workers change jobs
//! only through the fenced statements in [`crate::queue`].

use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgExecutor, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

pub const TERMINAL_STATES: [&str; 3] = ["succeeded", "failed", "canceled"];
pub const ALL_STATES: [&str; 5] = ["queued", "running", "succeeded", "failed", "canceled"];

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub state: String,
    pub phase: Option<String>,
    pub progress_step: Option<i32>,
    pub progress_total: Option<i32>,
    pub priority: i16,
    pub attempt: i32,
    pub max_attempts: i32,
    pub run_at: OffsetDateTime,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<OffsetDateTime>,
    pub cancel_requested: bool,
    pub config: Json<Value>,
    pub error: Option<Json<Value>>,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub started_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
}

impl JobRow {
    pub fn is_terminal(&self) -> bool {
        TERMINAL_STATES.contains(&self.state.as_str())
    }
}

pub const JOB_COLUMNS: &str = "id, tenant_id, state, phase, progress_step, progress_total, priority, attempt, \
     max_attempts, run_at, lease_owner, lease_expires_at, cancel_requested, config, error, idempotency_key, \
     request_hash, created_at, updated_at, started_at, finished_at";

pub struct NewJob<'a> {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub max_attempts: i32,
    pub priority: i16,
    pub config: &'a Value,
    pub idempotency_key: Option<&'a str>,
    pub request_hash: &'a str,
}

pub async fn insert<'e>(db: impl PgExecutor<'e>, job: &NewJob<'_>) -> Result<JobRow, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO jobs (id, tenant_id, max_attempts, priority, config, idempotency_key, request_hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {JOB_COLUMNS}"
    ))
    .bind(job.id)
    .bind(job.tenant_id)
    .bind(job.max_attempts)
    .bind(job.priority)
    .bind(Json(job.config))
    .bind(job.idempotency_key)
    .bind(job.request_hash)
    .fetch_one(db)
    .await
}

/// A tenant's job; another tenant's job is indistinguishable from a missing one.
pub async fn get_for_tenant<'e>(db: impl PgExecutor<'e>, tenant_id: Uuid, id: Uuid) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND tenant_id = $2"))
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(db)
        .await
}

pub async fn get<'e>(db: impl PgExecutor<'e>, id: Uuid) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1")).bind(id).fetch_optional(db).await
}

pub async fn find_by_idempotency_key<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    key: &str,
) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE tenant_id = $1 AND idempotency_key = $2"))
        .bind(tenant_id)
        .bind(key)
        .fetch_optional(db)
        .await
}

/// Position in the newest-first listing: the last row of the previous page.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ListCursor {
    pub created_at: OffsetDateTime,
    pub id: Uuid,
}

/// One page of a tenant's jobs, newest first, optionally of one state. Returns up to `limit + 1`
/// rows so the caller can tell whether another page follows.
pub async fn list_page(
    pool: &PgPool,
    tenant_id: Uuid,
    state: Option<&str>,
    after: Option<ListCursor>,
    limit: i64,
) -> Result<Vec<JobRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs
         WHERE tenant_id = $1
           AND ($2::text IS NULL OR state = $2)
           AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
         ORDER BY created_at DESC, id DESC
         LIMIT $5"
    ))
    .bind(tenant_id)
    .bind(state)
    .bind(after.map(|c| c.created_at))
    .bind(after.map(|c| c.id).unwrap_or_else(Uuid::nil))
    .bind(limit + 1)
    .fetch_all(pool)
    .await
}

pub enum CancelOutcome {
    /// The job was queued and is now canceled.
    Canceled(JobRow),
    /// The job is running; its worker stops at the next epoch boundary.
    Requested(JobRow),
    /// The job had already finished.
    AlreadyFinished(JobRow),
    NotFound,
}

pub async fn request_cancel(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> Result<CancelOutcome, sqlx::Error> {
    let canceled: Option<JobRow> = sqlx::query_as(&format!(
        "UPDATE jobs SET state = 'canceled', cancel_requested = true, finished_at = now(), updated_at = now(),
             error = jsonb_build_object('type', 'urn:gcleaner:problem:canceled', 'code', 'canceled', 'title', 'Job canceled', 'status', 409,
                                         'detail', 'canceled before a worker started it')
         WHERE id = $1 AND tenant_id = $2 AND state = 'queued'
         RETURNING {JOB_COLUMNS}"
    ))
    .bind(id)
    .bind(tenant_id)
    .fetch_optional(pool)
    .await?;
    if let Some(job) = canceled {
        return Ok(CancelOutcome::Canceled(job));
    }
    let requested: Option<JobRow> = sqlx::query_as(&format!(
        "UPDATE jobs SET cancel_requested = true, updated_at = now()
         WHERE id = $1 AND tenant_id = $2 AND state = 'running'
         RETURNING {JOB_COLUMNS}"
    ))
    .bind(id)
    .bind(tenant_id)
    .fetch_optional(pool)
    .await?;
    if let Some(job) = requested {
        return Ok(CancelOutcome::Requested(job));
    }
    Ok(match get_for_tenant(pool, tenant_id, id).await? {
        Some(job) if job.is_terminal() => CancelOutcome::AlreadyFinished(job),
        // Raced with a claim or a requeue between the two updates: try once more.
        Some(_) => return Box::pin(request_cancel(pool, tenant_id, id)).await,
        None => CancelOutcome::NotFound,
    })
}

/// Deletes the job row (attempts, artifacts rows and callbacks cascade) and announces it, so
/// event streams end. Returns the storage keys whose files the caller must remove.
pub async fn delete(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> Result<Option<Vec<String>>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT storage_key FROM artifacts WHERE job_id = $1").bind(id).fetch_all(&mut *tx).await?;
    let done =
        sqlx::query("DELETE FROM jobs WHERE id = $1 AND tenant_id = $2").bind(id).bind(tenant_id).execute(&mut *tx).await?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    sqlx::query("SELECT pg_notify('gcleaner_job_events', $1)").bind(id.to_string()).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(Some(keys))
}

/// Finished jobs older than `days`, for the retention sweep.
pub async fn expired_ids(pool: &PgPool, days: u32, limit: i64) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, tenant_id FROM jobs
         WHERE finished_at IS NOT NULL AND finished_at < now() - make_interval(days => $1)
         ORDER BY finished_at LIMIT $2",
    )
    .bind(days as i32)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Job counts by state, for metrics.
pub async fn count_by_state(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT state, count(*) FROM jobs GROUP BY state").fetch_all(pool).await
}

/// Queued jobs that are due now.
pub async fn queue_depth(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = 'queued' AND run_at <= now()").fetch_one(pool).await
}

/// Cumulative counts of finished jobs whose run (first start to finish) took at most each bound,
/// plus the total count and sum of seconds: a Prometheus histogram computed from the table, so
/// every API process reports the same numbers whichever worker ran the job.
pub async fn duration_histogram(pool: &PgPool, bounds: &[f64]) -> Result<(Vec<i64>, i64, f64), sqlx::Error> {
    let (counts, total, sum): (Vec<i64>, i64, Option<f64>) = sqlx::query_as(
        "WITH d AS (
             SELECT extract(epoch FROM finished_at - started_at)::float8 AS secs
             FROM jobs WHERE finished_at IS NOT NULL AND started_at IS NOT NULL)
         SELECT ARRAY(SELECT count(*) FILTER (WHERE d.secs <= b) FROM unnest($1::float8[]) AS b, d GROUP BY b ORDER BY b),
                (SELECT count(*) FROM d), (SELECT sum(secs) FROM d)",
    )
    .bind(bounds)
    .fetch_one(pool)
    .await?;
    let counts = if counts.len() == bounds.len() { counts } else { vec![0; bounds.len()] };
    Ok((counts, total, sum.unwrap_or(0.0)))
}
