//! Database access: the pool, migrations and the queries of the API's resources. The queue's own
//! statements (claim, heartbeat, fenced writes) live in [`crate::queue`].
//!
//! Queries are bound at run time (`sqlx::query_as`), so building needs no live database.

pub mod artifacts;
pub mod jobs;
pub mod tokens;

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::config::DatabaseConfig;

pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Opens a pool. Connections are made lazily so a process can start while the database is
/// still coming up; `readyz` reports when it is reachable.
pub fn connect(config: &DatabaseConfig) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = config.url()?.parse().map_err(|e| anyhow::anyhow!("invalid database URL: {e}"))?;
    let options = options.application_name("gcleaner");
    Ok(PgPoolOptions::new()
        .max_connections(config.db_max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options))
}

/// Applies pending migrations.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await.map_err(|e| anyhow::anyhow!("database migration failed: {e}"))
}

/// Whether every embedded migration has been applied.
pub async fn migrations_applied(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let applied: Vec<i64> =
        match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version").fetch_all(pool).await {
            Ok(v) => v,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => return Ok(false),
            Err(e) => return Err(e),
        };
    Ok(MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration()).all(|m| applied.contains(&m.version)))
}

/// Name of a violated constraint, when `err` is a constraint violation.
pub fn violated_constraint(err: &sqlx::Error) -> Option<&str> {
    match err {
        sqlx::Error::Database(e) => e.constraint(),
        _ => None,
    }
}
