//! Downloads of a job's results: the purified model (with an sha256 ETag) and the report. A scan
//! job (`"mode": "scan"`) has a report and never a model: its /model is 409 `scan_has_no_model`.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::auth::Caller;
use super::error::ApiError;
use super::job_view::is_scan;
use super::jobs::parse_job_id;
use super::state::AppState;
use crate::db::artifacts::{self, ArtifactKind};
use crate::db::jobs;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/jobs/{id}/model", get(download_model))
        .route("/v1/jobs/{id}/report", get(report))
        .route("/v1/jobs/{id}/report.html", get(report_html))
}

/// The artifact of a succeeded job; 409 while the job has not succeeded, and 409
/// `scan_has_no_model` for the model of a scan whatever its state: the job exists (so not 404)
/// but its mode rules a model out, and unlike `job_not_succeeded` waiting will not help.
async fn succeeded_artifact(
    state: &AppState,
    caller: &Caller,
    id: &str,
    kind: ArtifactKind,
) -> Result<artifacts::ArtifactRow, ApiError> {
    let id = parse_job_id(id)?;
    let job = jobs::get_for_tenant(&state.pool, caller.tenant_id, id).await?.ok_or(ApiError::NotFound)?;
    if kind == ArtifactKind::OutputModel && is_scan(&job.config) {
        return Err(ApiError::conflict(
            "scan_has_no_model",
            format!("job {id} is a scan (config mode scan): it judges the model and writes no purified one; the verdict is in its report"),
        ));
    }
    if job.state != "succeeded" {
        return Err(ApiError::conflict(
            "job_not_succeeded",
            format!("the job is {}; results exist only once it has succeeded", job.state),
        ));
    }
    artifacts::get(&state.pool, id, kind)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("succeeded job {id} has no {} artifact", kind.as_str())))
}

/// The artifact streamed from the store, never held whole in memory.
async fn file_body(state: &AppState, row: &artifacts::ArtifactRow) -> Result<Body, ApiError> {
    let stream = state.store.read(&row.storage_key).await.map_err(ApiError::storage)?;
    Ok(Body::from_stream(stream))
}

fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

async fn download_model(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let row = succeeded_artifact(&state, &caller, &id, ArtifactKind::OutputModel).await?;
    let etag = format!("\"{}\"", row.sha256);
    let etag_value = HeaderValue::from_str(&etag).map_err(|e| ApiError::Internal(e.into()))?;
    if etag_matches(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response());
    }
    let body = file_body(&state, &row).await?;
    let disposition = format!("attachment; filename=\"purified-{}.safetensors\"", row.job_id);
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")),
            (header::ETAG, etag_value),
            (header::CONTENT_LENGTH, HeaderValue::from(row.size_bytes)),
            (header::CONTENT_DISPOSITION, HeaderValue::from_str(&disposition).map_err(|e| ApiError::Internal(e.into()))?),
        ],
        body,
    )
        .into_response())
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|accept| {
        let html = accept.find("text/html");
        let json = accept.find("application/json");
        matches!((html, json), (Some(h), Some(j)) if h < j) || (html.is_some() && json.is_none())
    })
}

async fn report(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if wants_html(&headers) {
        return report_html(State(state), caller, Path(id)).await;
    }
    let row = succeeded_artifact(&state, &caller, &id, ArtifactKind::ReportJson).await?;
    let body = file_body(&state, &row).await?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response())
}

async fn report_html(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let row = succeeded_artifact(&state, &caller, &id, ArtifactKind::ReportHtml).await?;
    let body = file_body(&state, &row).await?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"))], body).into_response())
}
