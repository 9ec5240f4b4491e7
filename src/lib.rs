//! gcleaner: the CLI and the HTTP purification service around `gcleaner-engine`.
//!
//! The service half: [`app::Application`] wires the HTTP API ([`http`]), the Postgres job queue
//! and its workers ([`queue`]), artifact storage ([`storage`]) and upload validation
//! ([`upload`]).

pub mod app;
pub mod config;
pub mod db;
pub mod http;
pub mod job_cache;
pub mod metrics;
pub mod notify;
pub mod queue;
pub mod storage;
pub mod telemetry;
pub mod upload;
