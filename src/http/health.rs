//! Liveness, readiness, metrics and the OpenAPI document: the unauthenticated routes.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::error::ApiError;
use super::state::AppState;

static OPENAPI_YAML: &str = include_str!("../../openapi/openapi.yaml");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
}

/// The process is up (it answers).
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The database is reachable and every migration is applied.
async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let applied = crate::db::migrations_applied(&state.pool)
        .await
        .map_err(|e| ApiError::Unavailable(format!("database unreachable: {e}")))?;
    if !applied {
        return Err(ApiError::Unavailable("database migrations are not applied; run gcleaner migrate".into()));
    }
    Ok(Json(json!({ "status": "ready" })))
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = crate::metrics::render(&state.pool, &state.metrics).await?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], text).into_response())
}

/// The OpenAPI document as JSON, converted once from the YAML source in openapi/.
pub fn openapi_document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_yaml::from_str(OPENAPI_YAML).expect("openapi/openapi.yaml is valid YAML (checked by tests)"))
}

async fn openapi() -> Json<Value> {
    Json(openapi_document().clone())
}
