//! The job resource as clients see it (GET /v1/jobs/{id}, lists, events, callbacks).

use serde::Serialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::jobs::JobRow;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct JobView {
    pub id: Uuid,
    pub status: String,
    /// `purify`, or `scan` (a verdict and report, no purified model).
    pub mode: &'static str,
    pub phase: Option<String>,
    pub progress: Option<ProgressView>,
    pub attempts: i32,
    pub max_attempts: i32,
    pub cancel_requested: bool,
    pub created_at: String,
    pub updated_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub error: Option<Value>,
    pub links: Links,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProgressView {
    pub epoch: i32,
    pub total: i32,
    pub fraction: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Links {
    #[serde(rename = "self")]
    pub self_: String,
    pub events: String,
    pub model: String,
    pub report: String,
    pub cancel: String,
}

/// Whether a job's config asks for a scan (`"mode": "scan"`; the default mode is purify).
pub fn is_scan(config: &Value) -> bool {
    config.get("mode").and_then(Value::as_str) == Some("scan")
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

impl JobView {
    pub fn from_row(row: &JobRow) -> JobView {
        let base = format!("/v1/jobs/{}", row.id);
        JobView {
            id: row.id,
            status: row.state.clone(),
            mode: if is_scan(&row.config) { "scan" } else { "purify" },
            phase: row.phase.clone(),
            progress: match (row.progress_step, row.progress_total) {
                (Some(epoch), Some(total)) => Some(ProgressView {
                    epoch,
                    total,
                    fraction: if total > 0 { (epoch as f64 / total as f64).clamp(0.0, 1.0) } else { 0.0 },
                }),
                _ => None,
            },
            attempts: row.attempt,
            max_attempts: row.max_attempts,
            cancel_requested: row.cancel_requested,
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
            started_at: row.started_at.map(rfc3339),
            finished_at: row.finished_at.map(rfc3339),
            error: row.error.as_ref().map(|e| e.0.clone()),
            links: Links {
                events: format!("{base}/events"),
                model: format!("{base}/model"),
                report: format!("{base}/report"),
                cancel: format!("{base}/cancel"),
                self_: base,
            },
        }
    }

    pub fn is_terminal(&self) -> bool {
        crate::db::jobs::TERMINAL_STATES.contains(&self.status.as_str())
    }
}
