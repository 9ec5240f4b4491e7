//! /v1/jobs: submit (multipart upload), list, read, cancel and delete jobs.

use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

use time::OffsetDateTime;
use uuid::Uuid;

use super::auth::Caller;
use super::error::ApiError;
use super::job_view::JobView;
use super::state::AppState;
use crate::db::artifacts::{self, ArtifactKind};
use crate::db::jobs::{self, CancelOutcome, JobRow, ListCursor, NewJob};
use crate::storage::{self, StoredObject};
use crate::upload::{self, StagedFile, StagedUpload};

pub const MAX_PAGE_SIZE: i64 = 100;
pub const DEFAULT_PAGE_SIZE: i64 = 20;

pub fn router(state: &AppState) -> Router<AppState> {
    let limits = &state.api.limits;
    // The multipart route alone may carry large bodies.
    let upload_limit = limits.max_model_bytes + 2 * limits.max_data_bytes + 2 * limits.max_config_bytes + 1024 * 1024;
    Router::new()
        .route(
            "/v1/jobs",
            post(create_job).layer(DefaultBodyLimit::max(usize::try_from(upload_limit).unwrap_or(usize::MAX))).get(list_jobs),
        )
        .route("/v1/jobs/{id}", get(get_job).delete(delete_job))
        .route("/v1/jobs/{id}/cancel", post(cancel_job))
}

/// Parses a job id from the path; a malformed id is simply not found.
pub fn parse_job_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound)
}

fn location(id: Uuid) -> HeaderValue {
    HeaderValue::from_str(&format!("/v1/jobs/{id}")).expect("a job path is a valid header value")
}

fn accepted(job: &JobRow) -> Response {
    let mut response = (StatusCode::ACCEPTED, Json(JobView::from_row(job))).into_response();
    response.headers_mut().insert(header::LOCATION, location(job.id));
    response
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let key = value.to_str().ok().map(str::trim).filter(|k| !k.is_empty() && k.len() <= 255).ok_or_else(|| {
        ApiError::bad_request("invalid_idempotency_key", "Idempotency-Key must be 1 to 255 visible ASCII characters")
    })?;
    Ok(Some(key.to_string()))
}

/// The earlier job created with this key: the same job for the same payload, an error for a
/// different one.
fn replay(existing: JobRow, request_hash: &str) -> Result<Response, ApiError> {
    if existing.request_hash.as_deref() == Some(request_hash) {
        Ok(accepted(&existing))
    } else {
        Err(ApiError::unprocessable("idempotency_key_reused", "this Idempotency-Key was already used with a different payload"))
    }
}

async fn create_job(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let multipart = multipart.map_err(|e| {
        ApiError::Upload(upload::UploadError::Malformed(format!("{e}; send multipart/form-data with model and data parts")))
    })?;
    let key = idempotency_key(&headers)?;
    let staged = upload::receive(multipart, &state.api.limits, state.store.staging_dir()).await?;
    let request_hash = staged.request_hash();
    if let Some(key) = &key {
        if let Some(existing) = jobs::find_by_idempotency_key(&state.pool, caller.tenant_id, key).await? {
            return replay(existing, &request_hash);
        }
    }

    let (staged, validated) = {
        let limits = state.api.limits.clone();
        let hosts = state.queue.callback_allowed_hosts.clone();
        let runner = state.runner.clone();
        tokio::task::spawn_blocking(move || {
            let result = upload::validate::validate(&staged, &limits, &hosts, runner.as_ref());
            (staged, result)
        })
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("validation task failed: {e}")))?
    };
    let validated = validated?;

    let job_id = Uuid::new_v4();
    let config = staged.config.clone().unwrap_or_else(|| json!({}));
    let stored = commit_inputs(&state, job_id, staged_inputs(staged)).await?;
    let inserted = insert_job(&state, caller.tenant_id, job_id, key.as_deref(), &request_hash, &config, &stored).await;
    match inserted {
        Ok(job) => {
            tracing::info!(job_id = %job.id, graphs = validated.graphs, "job queued");
            Ok(accepted(&job))
        }
        Err(err) => {
            let _ = state.store.delete_job(job_id).await;
            // A concurrent request with the same key won the race.
            if let (Some(key), Some("jobs_idempotency_key")) = (&key, crate::db::violated_constraint(&err)) {
                if let Some(existing) = jobs::find_by_idempotency_key(&state.pool, caller.tenant_id, key).await? {
                    return replay(existing, &request_hash);
                }
            }
            Err(err.into())
        }
    }
}

fn staged_inputs(staged: StagedUpload) -> Vec<(ArtifactKind, &'static str, StagedFile)> {
    let mut inputs = Vec::new();
    let StagedUpload { model, spec, data, eval, .. } = staged;
    for (kind, name, file) in [
        (ArtifactKind::InputModel, "input/model.safetensors", model),
        (ArtifactKind::InputSpec, "input/spec.json", spec),
        (ArtifactKind::InputData, "input/data", data),
        (ArtifactKind::InputEval, "input/eval", eval),
    ] {
        if let Some(file) = file {
            inputs.push((kind, name, file));
        }
    }
    inputs
}

async fn commit_inputs(
    state: &AppState,
    job_id: Uuid,
    inputs: Vec<(ArtifactKind, &'static str, StagedFile)>,
) -> Result<Vec<(ArtifactKind, StoredObject)>, ApiError> {
    let mut stored = Vec::new();
    for (kind, name, file) in inputs {
        let key = storage::job_key(job_id, name);
        match state.store.commit(&file.path, &key, &file.sha256, file.size).await {
            Ok(object) => stored.push((kind, object)),
            Err(err) => {
                // No job row exists yet: remove what was stored so nothing is left behind.
                let _ = state.store.delete_job(job_id).await;
                return Err(ApiError::storage(err));
            }
        }
    }
    Ok(stored)
}

async fn insert_job(
    state: &AppState,
    tenant_id: Uuid,
    job_id: Uuid,
    key: Option<&str>,
    request_hash: &str,
    config: &serde_json::Value,
    stored: &[(ArtifactKind, StoredObject)],
) -> Result<JobRow, sqlx::Error> {
    let mut tx = state.pool.begin().await?;
    let job = jobs::insert(
        &mut *tx,
        &NewJob {
            id: job_id,
            tenant_id,
            max_attempts: state.queue.max_attempts.max(1),
            priority: 0,
            config,
            idempotency_key: key,
            request_hash,
        },
    )
    .await?;
    for (kind, object) in stored {
        artifacts::insert(&mut *tx, job_id, *kind, &object.key, &object.sha256, object.size).await?;
    }
    tx.commit().await?;
    Ok(job)
}

#[derive(Debug, Deserialize)]
pub struct ListParams {
    status: Option<String>,
    limit: Option<String>,
    page_token: Option<String>,
}

fn encode_cursor(c: ListCursor) -> String {
    let micros = c.created_at.unix_timestamp_nanos() / 1000;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{micros}.{}", c.id))
}

fn decode_cursor(token: &str) -> Option<ListCursor> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (micros, id) = raw.split_once('.')?;
    let micros: i128 = micros.parse().ok()?;
    let created_at = OffsetDateTime::from_unix_timestamp_nanos(micros * 1000).ok()?;
    Some(ListCursor { created_at, id: id.parse().ok()? })
}

async fn list_jobs(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request("invalid_parameter", e.body_text()))?;
    let status = match params.status.as_deref() {
        None | Some("") => None,
        Some(s) if jobs::ALL_STATES.contains(&s) => Some(s),
        Some(s) => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("status {s:?} is not one of queued, running, succeeded, failed, canceled"),
            ))
        }
    };
    let limit = match params.limit.as_deref() {
        None | Some("") => DEFAULT_PAGE_SIZE,
        Some(raw) => raw.parse::<i64>().unwrap_or(0),
    };
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(ApiError::bad_request("invalid_parameter", format!("limit must be between 1 and {MAX_PAGE_SIZE}")));
    }
    let after = match params.page_token.as_deref() {
        None | Some("") => None,
        Some(token) => {
            Some(decode_cursor(token).ok_or_else(|| ApiError::bad_request("invalid_page_token", "page_token is not valid"))?)
        }
    };
    let mut rows = jobs::list_page(&state.pool, caller.tenant_id, status, after, limit).await?;
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| encode_cursor(ListCursor { created_at: r.created_at, id: r.id }))
    } else {
        None
    };
    let views: Vec<JobView> = rows.iter().map(JobView::from_row).collect();
    Ok(Json(json!({ "jobs": views, "next_page_token": next })))
}

async fn get_job(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_job_id(&id)?;
    let job = match state.job_cache.get(id) {
        Some(job) => job,
        None => {
            let ticket = state.job_cache.ticket();
            // Read without the tenant filter so the row can be cached for its owner; the
            // ownership check below answers another tenant exactly as a missing job.
            let job = Arc::new(jobs::get(&state.pool, id).await?.ok_or(ApiError::NotFound)?);
            state.job_cache.put(ticket, job.clone());
            job
        }
    };
    if job.tenant_id != caller.tenant_id {
        return Err(ApiError::NotFound);
    }
    let mut response = Json(JobView::from_row(&job)).into_response();
    if !job.is_terminal() {
        let secs = if job.state == "running" { "2" } else { "5" };
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(secs));
    }
    Ok(response)
}

async fn cancel_job(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_job_id(&id)?;
    let outcome = jobs::request_cancel(&state.pool, caller.tenant_id, id).await;
    // Read-your-writes: this client's next poll must not see the row from before the cancel.
    state.job_cache.invalidate(id);
    match outcome? {
        CancelOutcome::Canceled(job) | CancelOutcome::Requested(job) => {
            Ok((StatusCode::ACCEPTED, Json(JobView::from_row(&job))).into_response())
        }
        CancelOutcome::AlreadyFinished(job) => {
            Err(ApiError::conflict("job_finished", format!("the job already ended ({}); there is nothing to cancel", job.state)))
        }
        CancelOutcome::NotFound => Err(ApiError::NotFound),
    }
}

async fn delete_job(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let id = parse_job_id(&id)?;
    let deleted = jobs::delete(&state.pool, caller.tenant_id, id).await;
    state.job_cache.invalidate(id);
    deleted?.ok_or(ApiError::NotFound)?;
    remove_job_files(state.store.as_ref(), id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a deleted job's files. A worker finishing the job may still be moving its outputs in
/// (a local directory is then "not empty"; a bucket briefly unreachable): try again briefly. The
/// job itself is already gone, and a worker whose outputs land later removes them itself when its
/// fenced write is rejected, so files that still cannot be removed are logged, not answered as a
/// failed deletion.
async fn remove_job_files(store: &dyn storage::ArtifactStore, id: Uuid) {
    const ATTEMPTS: u32 = 5;
    for attempt in 1..=ATTEMPTS {
        match store.delete_job(id).await {
            Ok(()) => return,
            Err(err) if attempt == ATTEMPTS => {
                tracing::error!(job_id = %id, error = %err, "a deleted job's files remain");
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20 * u64::from(attempt))).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let c = ListCursor {
            created_at: OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_000).unwrap(),
            id: Uuid::new_v4(),
        };
        assert_eq!(decode_cursor(&encode_cursor(c)), Some(c));
        assert_eq!(decode_cursor("not-a-token"), None);
        assert_eq!(decode_cursor(""), None);
    }
}
