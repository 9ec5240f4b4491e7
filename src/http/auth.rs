//! Bearer-token authentication as an extractor: a handler that takes a [`Caller`] only runs for
//! a known, enabled token (or every request under `--insecure-no-auth`), within its rate limit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
                let hash = tokens::hash_secret(secret);
                match state.auth_cache.get(&hash) {
                    Some(caller) => caller,
                    None => {
                        let found = tokens::authenticate_hash(&state.pool, &hash).await?.ok_or(ApiError::Unauthenticated)?;
                        let caller = Caller { tenant_id: found.tenant_id, token_id: found.token_id };
                        state.auth_cache.put(hash, caller);
                        caller
                    }
                }
            }
        };
        state
            .rate_limiter
            .check(caller.token_id.unwrap_or(caller.tenant_id))
            .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })?;
        Ok(caller)
    }
}

/// Recently verified tokens (by hash), so hot clients do not cost a query per request.
pub struct AuthCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Caller, Instant)>>,
}

impl AuthCache {
    pub fn new(ttl: Duration) -> AuthCache {
        AuthCache { ttl, entries: Mutex::new(HashMap::new()) }
    }

    fn get(&self, hash: &str) -> Option<Caller> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(hash).filter(|(_, at)| at.elapsed() < self.ttl).map(|(c, _)| *c)
    }

    fn put(&self, hash: String, caller: Caller) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() > 10_000 {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
        }
        entries.insert(hash, (caller, Instant::now()));
    }
}
