//! Failures of workers and the database while jobs run.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;
use crate::worker_process::spawn_worker_process;

const WAIT: Duration = Duration::from_secs(40);

fn api_only() -> std::sync::Arc<crate::runner::ScriptedRunner> {
    std::sync::Arc::new(crate::runner::ScriptedRunner)
}

async fn wait_running_on_attempt(app: &TestApp, id: &str, attempt: i64) -> Value {
    app.wait_for(id, WAIT, |j| {
        j["status"] == "running" && j["attempts"] == attempt && j["progress"]["epoch"].as_i64().unwrap_or(0) >= 1
    })
    .await
}

pub fn wait_exit(child: &mut std::process::Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "worker process did not exit within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn sigterm(child: &std::process::Child) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
}

#[tokio::test]
async fn killed_worker_process_job_completes_elsewhere_exactly_once() {
    let app = spawn_app_with(&["--workers", "0"], api_only()).await;
    let mut first = spawn_worker_process(&app, &[]);
    let id = job_id(&app.submit_job(json!({ "epochs": 15, "epoch_ms": 100 })).await);
    wait_running_on_attempt(&app, &id, 1).await;
    first.kill().unwrap(); // SIGKILL: no cleanup at all
    first.wait().unwrap();

    let mut second = spawn_worker_process(&app, &[]);
    let done = app.wait_status(&id, "succeeded", WAIT).await;
    sigterm(&second);
    assert!(wait_exit(&mut second, Duration::from_secs(10)).success());

    assert_eq!(done["attempts"], 2);
    let outcomes: Vec<String> =
        sqlx::query_scalar("SELECT outcome FROM job_attempts ORDER BY attempt").fetch_all(&app.pool).await.unwrap();
    assert_eq!(outcomes, ["lease_expired", "succeeded"]);
    assert_eq!(app.count("SELECT count(*) FROM artifacts WHERE kind = 'output_model'").await, 1);
    let report: Value = app.get(&format!("/v1/jobs/{id}/report")).send().await.unwrap().json().await.unwrap();
    assert_eq!(report["attempt"], 2);
}

#[tokio::test]
async fn sigterm_hands_a_long_job_back_and_the_worker_exits_zero() {
    let app = spawn_app_with(&["--workers", "0"], api_only()).await;
    let mut worker = spawn_worker_process(&app, &["--shutdown-grace-secs", "0.5"]);
    let id = job_id(&app.submit_job(json!({ "epochs": 300, "epoch_ms": 50 })).await);
    wait_running_on_attempt(&app, &id, 1).await;
    sigterm(&worker);
    let status = wait_exit(&mut worker, Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");

    let row = app.job_row(&id).await;
    assert_eq!(row.state, "queued", "released, not left running");
    assert!(row.lease_owner.is_none());
    assert_eq!(row.max_attempts, 4, "a hand-back does not use up a try");
    let outcome: String =
        sqlx::query_scalar("SELECT outcome FROM job_attempts WHERE attempt = 1").fetch_one(&app.pool).await.unwrap();
    assert_eq!(outcome, "released");
}

#[tokio::test]
async fn sigterm_lets_a_short_job_finish_within_the_grace_period() {
    let app = spawn_app_with(&["--workers", "0"], api_only()).await;
    let mut worker = spawn_worker_process(&app, &["--shutdown-grace-secs", "20"]);
    let id = job_id(&app.submit_job(json!({ "epochs": 10, "epoch_ms": 100 })).await);
    wait_running_on_attempt(&app, &id, 1).await;
    sigterm(&worker);
    assert!(wait_exit(&mut worker, Duration::from_secs(20)).success());
    let row = app.job_row(&id).await;
    assert_eq!(row.state, "succeeded");
    assert_eq!(row.attempt, 1);
}

#[tokio::test]
async fn in_process_server_shutdown_releases_running_jobs() {
    let app = spawn_app_with(&["--shutdown-grace-secs", "0.2"], api_only()).await;
    let id = job_id(&app.submit_job(json!({ "epochs": 300, "epoch_ms": 50 })).await);
    wait_running_on_attempt(&app, &id, 1).await;
    let mut app = app;
    app.shutdown.cancel();
    let server = app.server.take().unwrap();
    tokio::time::timeout(Duration::from_secs(10), server).await.expect("server stops").unwrap().unwrap();
    assert_eq!(app.job_row(&id).await.state, "queued");
}

#[tokio::test]
async fn database_restart_during_a_job_recovers_with_one_result() {
    let Some(cluster) = crate::pg_cluster::PrivateCluster::start() else { return };
    let db = TestDatabase::create_on(&cluster.admin_url()).await;
    let app = spawn_app_on(db, &["--lease-secs", "3"], api_only()).await;
    let id = job_id(&app.submit_job(json!({ "epochs": 40, "epoch_ms": 100 })).await);
    wait_running_on_attempt(&app, &id, 1).await;

    cluster.pg_stop();
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503, "not ready while the database is down");
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.pg_start();

    let done = app.wait_status(&id, "succeeded", Duration::from_secs(60)).await;
    assert!(done["attempts"].as_i64().unwrap() >= 1);
    assert_eq!(app.count("SELECT count(*) FROM artifacts WHERE kind = 'output_model'").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM job_attempts WHERE outcome = 'succeeded'").await, 1);
    assert_eq!(app.client.get(app.url("/readyz")).send().await.unwrap().status(), 200);
    // Drop the app (and its pool) before the cluster.
    drop(app);
}
