//! Rows describing stored files: which job, what kind, where, and their sha256.

use sqlx::PgExecutor;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactKind {
    InputModel,
    InputSpec,
    InputData,
    InputEval,
    OutputModel,
    ReportJson,
    ReportHtml,
}

impl ArtifactKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::InputModel => "input_model",
            ArtifactKind::InputSpec => "input_spec",
            ArtifactKind::InputData => "input_data",
            ArtifactKind::InputEval => "input_eval",
            ArtifactKind::OutputModel => "output_model",
            ArtifactKind::ReportJson => "report_json",
            ArtifactKind::ReportHtml => "report_html",
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ArtifactRow {
    pub job_id: Uuid,
    pub kind: String,
    pub storage_key: String,
    pub sha256: String,
    pub size_bytes: i64,
}

pub async fn insert<'e>(
    db: impl PgExecutor<'e>,
    job_id: Uuid,
    kind: ArtifactKind,
    storage_key: &str,
    sha256: &str,
    size_bytes: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO artifacts (job_id, kind, storage_key, sha256, size_bytes) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (job_id, kind) DO UPDATE
         SET storage_key = EXCLUDED.storage_key, sha256 = EXCLUDED.sha256, size_bytes = EXCLUDED.size_bytes,
             created_at = now()",
    )
    .bind(job_id)
    .bind(kind.as_str())
    .bind(storage_key)
    .bind(sha256)
    .bind(size_bytes as i64)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn get<'e>(db: impl PgExecutor<'e>, job_id: Uuid, kind: ArtifactKind) -> Result<Option<ArtifactRow>, sqlx::Error> {
    sqlx::query_as("SELECT job_id, kind, storage_key, sha256, size_bytes FROM artifacts WHERE job_id = $1 AND kind = $2")
        .bind(job_id)
        .bind(kind.as_str())
        .fetch_optional(db)
        .await
}

pub async fn list_for_job<'e>(db: impl PgExecutor<'e>, job_id: Uuid) -> Result<Vec<ArtifactRow>, sqlx::Error> {
    sqlx::query_as("SELECT job_id, kind, storage_key, sha256, size_bytes FROM artifacts WHERE job_id = $1")
        .bind(job_id)
        .fetch_all(db)
        .await
}
