//! Workers outside the API: in this process with their own pool and listener (as a separate
//! process would have), or as real child processes (this test binary re-run with an env var so
//! it only runs [`worker_process_entry`]) that tests can SIGKILL or SIGTERM.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use gcleaner::app::WorkerPool;
use gcleaner::config::WorkerConfig;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;
use crate::runner::ScriptedRunner;

const DB_ENV: &str = "GCLEANER_TEST_WORKER_DB";
const DATA_ENV: &str = "GCLEANER_TEST_WORKER_DATA";
const ARGS_ENV: &str = "GCLEANER_TEST_WORKER_ARGS";

fn worker_config(db: &str, data: &str, extra: &[String]) -> WorkerConfig {
    let mut args = vec!["--database-url".to_string(), db.to_string(), "--data-dir".to_string(), data.to_string()];
    args.extend(fast_queue_args());
    args.extend(extra.iter().cloned());
    WorkerConfig::from_args(args).expect("worker configuration parses")
}

/// A worker pool sharing nothing in memory with `app`; cancel the token to stop it.
pub async fn start_in_process_worker(app: &TestApp) -> CancellationToken {
    start_in_process_worker_at(app, &app.data_dir, &[]).await
}

/// The same with its own data directory and extra flags (e.g. an S3 store).
pub async fn start_in_process_worker_at(app: &TestApp, data_dir: &std::path::Path, extra: &[String]) -> CancellationToken {
    let config = worker_config(&app.db.url, &data_dir.display().to_string(), extra);
    let pool = WorkerPool::connect(config, Arc::new(ScriptedRunner)).await.unwrap();
    let token = pool.shutdown_token();
    let running = pool.start();
    tokio::spawn(running.join());
    token
}

/// Starts a worker child process against `app`'s database and storage.
pub fn spawn_worker_process(app: &TestApp, extra: &[&str]) -> Child {
    spawn_worker_process_at(&app.db.url, &app.data_dir, extra)
}

/// Starts a worker child process against the database `db_url` with `data_dir` as its data
/// directory (flags in `extra` must not contain spaces).
pub fn spawn_worker_process_at(db_url: &str, data_dir: &std::path::Path, extra: &[&str]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "worker_process::worker_process_entry", "--nocapture", "--test-threads=1"])
        .env(DB_ENV, db_url)
        .env(DATA_ENV, data_dir)
        .env(ARGS_ENV, extra.join(" "))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(if std::env::var("TEST_LOG").is_ok() { Stdio::inherit() } else { Stdio::null() })
        .spawn()
        .expect("start worker process")
}

/// Entry point of worker child processes; does nothing in a normal test run.
#[test]
fn worker_process_entry() {
    let (Ok(db), Ok(data)) = (std::env::var(DB_ENV), std::env::var(DATA_ENV)) else {
        return;
    };
    let extra: Vec<String> = std::env::var(ARGS_ENV).unwrap_or_default().split_whitespace().map(String::from).collect();
    init_telemetry();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let pool = WorkerPool::connect(worker_config(&db, &data, &extra), Arc::new(ScriptedRunner)).await.unwrap();
        let shutdown = pool.shutdown_token();
        let running = pool.start();
        gcleaner::app::shutdown_signal().await;
        shutdown.cancel();
        running.join().await;
    });
    std::process::exit(0);
}
