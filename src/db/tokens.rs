//! Tenants and their API tokens. A token's secret is random, shown once, and stored as its
//! sha256 so a leaked table does not leak credentials.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

/// Prefix that makes gcleaner tokens recognisable in logs and secret scanners.
pub const TOKEN_PREFIX: &str = "gcl_";

/// The tenant used when the server runs with `--insecure-no-auth`.
pub const LOCAL_TENANT: &str = "local";

#[derive(Debug, Clone)]
pub struct NewToken {
    pub token_id: Uuid,
    pub tenant_id: Uuid,
    /// The secret, to show once.
    pub secret: String,
}

#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub token_id: Option<Uuid>,
    pub tenant_id: Uuid,
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The tenant called `name`, created if missing.
pub async fn ensure_tenant(pool: &PgPool, name: &str) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO tenants (id, name) VALUES ($1, $2)
         ON CONFLICT ON CONSTRAINT tenants_name_key DO UPDATE SET name = EXCLUDED.name
         RETURNING id",
    )
    .bind(Uuid::new_v4())
    .bind(name)
    .fetch_one(pool)
    .await
}

/// Creates a token named `name` for tenant `tenant` (created if missing).
pub async fn create_token(pool: &PgPool, tenant: &str, name: &str) -> Result<NewToken, sqlx::Error> {
    let tenant_id = ensure_tenant(pool, tenant).await?;
    let secret = new_secret();
    let token_id = Uuid::new_v4();
    sqlx::query("INSERT INTO api_tokens (id, tenant_id, name, token_hash) VALUES ($1, $2, $3, $4)")
        .bind(token_id)
        .bind(tenant_id)
        .bind(name)
        .bind(hash_secret(&secret))
        .execute(pool)
        .await?;
    Ok(NewToken { token_id, tenant_id, secret })
}

/// The caller a bearer secret belongs to, if it is a known, enabled token.
pub async fn authenticate(pool: &PgPool, secret: &str) -> Result<Option<Caller>, sqlx::Error> {
    authenticate_hash(pool, &hash_secret(secret)).await
}

/// As [`authenticate`], given the secret's hash.
pub async fn authenticate_hash(pool: &PgPool, hash: &str) -> Result<Option<Caller>, sqlx::Error> {
    let row: Option<(Uuid, Uuid)> =
        sqlx::query_as("SELECT id, tenant_id FROM api_tokens WHERE token_hash = $1 AND disabled_at IS NULL")
            .bind(hash)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(token_id, tenant_id)| Caller { token_id: Some(token_id), tenant_id }))
}

/// Disables every token with this name; returns how many.
pub async fn disable_token(pool: &PgPool, name: &str) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("UPDATE api_tokens SET disabled_at = now() WHERE name = $1 AND disabled_at IS NULL")
        .bind(name)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

#[derive(Debug, sqlx::FromRow)]
pub struct TokenInfo {
    pub id: Uuid,
    pub name: String,
    pub tenant: String,
    pub created_at: time::OffsetDateTime,
    pub disabled_at: Option<time::OffsetDateTime>,
}

pub async fn list_tokens(pool: &PgPool) -> Result<Vec<TokenInfo>, sqlx::Error> {
    sqlx::query_as(
        "SELECT t.id, t.name, n.name AS tenant, t.created_at, t.disabled_at
         FROM api_tokens t JOIN tenants n ON n.id = t.tenant_id ORDER BY t.created_at",
    )
    .fetch_all(pool)
    .await
}
