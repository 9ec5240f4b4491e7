//! The HTTP API: one router per resource, merged, with request tracing, latency metrics and
//! problem+json for every error, including unknown routes.

pub mod artifacts;
pub mod auth;
pub mod error;
pub mod events;
pub mod health;
pub mod job_view;
pub mod jobs;
pub mod rate_limit;
pub mod state;

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tower_http::trace::TraceLayer;

pub use state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(jobs::router(&state))
        .merge(artifacts::router())
        .merge(events::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), record_latency))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            let route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or("unmatched");
            tracing::info_span!("http_request", method = %request.method(), route, uri = %request.uri())
        }))
        .with_state(state)
}

async fn not_found() -> Response {
    error::problem_response(StatusCode::NOT_FOUND, "not_found", "Not found", "no such route")
}

async fn method_not_allowed() -> Response {
    error::problem_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed",
        "this route does not support the request's method",
    )
}

async fn record_latency(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route =
        request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".to_string());
    let response = next.run(request).await;
    state.metrics.observe(&method, &route, response.status().as_u16(), started.elapsed());
    response
}
