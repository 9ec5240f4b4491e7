//! Bearer-token authentication as an extractor: a handler that takes a [`Caller`] only runs for
//! a known, enabled token (or every request under `--insecure-no-auth`), within its rate limit.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use uuid::Uuid;

use super::error::ApiError;
use super::state::AppState;
use crate::db::tokens;

#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub tenant_id: Uuid,
    pub token_id: Option<Uuid>,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let caller = match state.insecure_tenant {
            Some(tenant_id) => Caller { tenant_id, token_id: None },
            None => {
                let secret = parts
                    .headers
                    .get(AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
                    .map(str::trim)
                    .filter(|s| !s.is_empty() && s.len() <= 256)
                    .ok_or(ApiError::Unauthenticated)?;
                let found = tokens::authenticate(&state.pool, secret).await?.ok_or(ApiError::Unauthenticated)?;
                Caller { tenant_id: found.tenant_id, token_id: found.token_id }
            }
        };
        state
            .rate_limiter
            .check(caller.token_id.unwrap_or(caller.tenant_id))
            .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })?;
        Ok(caller)
    }
}
