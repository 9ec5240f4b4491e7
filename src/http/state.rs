//! What handlers share. Only `Send + Sync` handles live here; tensors never do.

use std::sync::Arc;

use axum::extract::FromRef;
use sqlx::PgPool;

use super::rate_limit::RateLimiter;
use crate::config::{ApiConfig, QueueConfig};
use crate::metrics::HttpMetrics;
use crate::notify::Notifications;
use crate::queue::JobRunner;
use crate::storage::ArtifactStore;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub store: Arc<dyn ArtifactStore>,
    pub api: Arc<ApiConfig>,
    pub queue: Arc<QueueConfig>,
    pub notifications: Arc<Notifications>,
    pub metrics: Arc<HttpMetrics>,
    pub rate_limiter: Arc<RateLimiter>,
    pub auth_cache: Arc<super::auth::AuthCache>,
    /// Recent job rows for status polls; see [`crate::job_cache`].
    pub job_cache: Arc<crate::job_cache::JobCache>,
    /// Fires when the server stops; long-lived responses (event streams) end then.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The job runner, asked to check submitted configs.
    pub runner: Arc<dyn JobRunner>,
    /// Tenant every request acts as under `--insecure-no-auth`.
    pub insecure_tenant: Option<uuid::Uuid>,
}

impl FromRef<AppState> for PgPool {
    fn from_ref(state: &AppState) -> PgPool {
        state.pool.clone()
    }
}
