//! The service with its artifacts in an S3 bucket on a real S3-compatible server: the job API,
//! a store that goes down (at submission and under a worker), and an API plus two worker
//! processes that share nothing but PostgreSQL and the bucket.

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::faults::{sigterm, wait_exit};
use crate::helpers::*;
use crate::runner::ScriptedRunner;
use crate::s3_server::S3Server;
use crate::worker_process::{spawn_worker_process_at, start_in_process_worker_at};

const WAIT: Duration = Duration::from_secs(60);
const PREFIX: &str = "svc";

async fn spawn_s3_app(s3: &S3Server, extra: &[&str]) -> TestApp {
    let mut args: Vec<String> = s3.storage_args(PREFIX);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    spawn_app_with(&args, Arc::new(ScriptedRunner)).await
}

fn quoted_sha256(bytes: &[u8]) -> String {
    format!("\"{}\"", hex::encode(Sha256::digest(bytes)))
}

/// The job's model downloads byte for byte (the scripted runner returns its input) with the
/// sha256 ETag, and a matching If-None-Match answers 304.
async fn assert_model_served(app: &TestApp, id: &str) {
    let r = app.get(&format!("/v1/jobs/{id}/model")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let body = r.bytes().await.unwrap();
    assert!(body.as_ref() == model_bytes().as_slice(), "the downloaded model differs from the stored one");
    assert_eq!(etag, quoted_sha256(&body));
    let r = app.get(&format!("/v1/jobs/{id}/model")).header("If-None-Match", &etag).send().await.unwrap();
    assert_eq!(r.status(), 304);
}

#[tokio::test]
async fn a_job_on_s3_is_stored_served_and_deleted() {
    let s3 = S3Server::start().await;
    let app = spawn_s3_app(&s3, &[]).await;
    let id = job_id(&app.submit_job(json!({ "epochs": 2, "epoch_ms": 10 })).await);
    let job_prefix = format!("{PREFIX}/jobs/{id}");
    let keys = s3.keys(&job_prefix).await;
    for name in ["input/data", "input/model.safetensors"] {
        assert!(keys.contains(&format!("{job_prefix}/{name}")), "{name} in the bucket once accepted: {keys:?}");
    }

    app.wait_status(&id, "succeeded", WAIT).await;
    assert_model_served(&app, &id).await;
    let report: Value = app.get(&format!("/v1/jobs/{id}/report")).send().await.unwrap().json().await.unwrap();
    assert_eq!(report["attempt"], 1);
    let html = app.get(&format!("/v1/jobs/{id}/report.html")).send().await.unwrap().text().await.unwrap();
    assert!(html.contains(&format!("job {id} attempt 1")));
    let keys = s3.keys(&job_prefix).await;
    for name in ["attempt-1/purified.safetensors", "attempt-1/report.json", "attempt-1/report.html"] {
        assert!(keys.contains(&format!("{job_prefix}/{name}")), "{name} missing from {keys:?}");
    }
    // Nothing of the job stays on the process's disk: commits empty staging, and the worker
    // removes its work directory just after recording the outcome.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !app.files_on_disk().is_empty() {
        assert!(std::time::Instant::now() < deadline, "files left: {:?}", app.files_on_disk());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert_eq!(app.delete(&format!("/v1/jobs/{id}")).send().await.unwrap().status(), 204);
    assert!(s3.keys(&job_prefix).await.is_empty(), "deleting the job deletes its objects");
}

#[tokio::test]
async fn a_submission_while_the_store_is_down_is_503_and_queues_nothing() {
    let mut s3 = S3Server::start().await;
    let app = spawn_s3_app(&s3, &["--workers", "0"]).await;
    s3.kill();
    let r = app.submit(job_form(json!({ "test": {} }))).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert!(r.headers().contains_key("retry-after"));
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["code"], "storage_unavailable");
    assert_eq!(problem["type"], "urn:gcleaner:problem:storage_unavailable");
    assert!(!problem["detail"].as_str().unwrap().contains("127.0.0.1"), "the detail names no internal host: {problem}");
    assert_eq!(app.count("SELECT count(*) FROM jobs").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM artifacts").await, 0);
    assert!(app.files_on_disk().is_empty(), "staged parts are removed: {:?}", app.files_on_disk());
}

#[tokio::test]
async fn a_worker_retries_while_the_store_is_down_and_finishes_once_it_is_back() {
    let mut s3 = S3Server::start().await;
    let app = spawn_s3_app(&s3, &["--workers", "0", "--max-attempts", "20"]).await;
    let id = job_id(&app.submit_job(json!({ "epochs": 2, "epoch_ms": 10 })).await);
    let inputs = s3.keys(&format!("{PREFIX}/jobs/{id}")).await;
    let client = s3.client();
    let mut saved = Vec::new();
    for key in &inputs {
        let path = object_store::path::Path::from(key.as_str());
        saved.push((path.clone(), client.get(&path).await.unwrap().bytes().await.unwrap()));
    }

    s3.kill();
    let worker_dir = tempfile::tempdir().unwrap();
    let worker = start_in_process_worker_at(&app, worker_dir.path(), &s3.storage_args(PREFIX)).await;
    let deadline = std::time::Instant::now() + WAIT;
    while app.count("SELECT count(*) FROM job_attempts WHERE outcome = 'retrying'").await == 0 {
        assert!(std::time::Instant::now() < deadline, "no attempt was retried");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let row = app.job_row(&id).await;
    assert_ne!(row.state, "failed", "a store that is down fails no job");
    let codes: Vec<String> = sqlx::query_scalar("SELECT error->>'code' FROM job_attempts WHERE outcome = 'retrying'")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert!(codes.iter().all(|c| c == "transient_failure"), "{codes:?}");

    // The store comes back (empty, as moto keeps nothing): restore the inputs and the job ends well.
    let restarted = S3Server::start_on(s3.port).await.expect("moto restarts on its port");
    restarted.create_bucket().await;
    let client = restarted.client();
    for (path, bytes) in saved {
        client.put(&path, bytes.into()).await.unwrap();
    }
    let done = app.wait_status(&id, "succeeded", WAIT).await;
    assert!(done["attempts"].as_i64().unwrap() >= 2, "{done}");
    assert_model_served(&app, &id).await;
    worker.cancel();
}

/// The deployment of separate hosts: an API and two worker processes, each with its own empty
/// data directory, meeting only in PostgreSQL and the bucket. One worker is SIGKILLed mid-job;
/// the other takes the job over and every result is served by the API.
#[tokio::test]
async fn api_and_two_workers_sharing_only_postgres_and_a_bucket() {
    let s3 = S3Server::start().await;
    let app = spawn_s3_app(&s3, &["--workers", "0"]).await;
    let storage_args = s3.storage_args(PREFIX);
    let args: Vec<&str> = storage_args.iter().map(String::as_str).collect();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = spawn_worker_process_at(&app.db.url, dir_a.path(), &args);
    let mut b = spawn_worker_process_at(&app.db.url, dir_b.path(), &args);

    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(job_id(&app.submit_job(json!({ "epochs": 20, "epoch_ms": 100 })).await));
    }
    let first = &ids[0];
    app.wait_for(first, WAIT, |j| j["status"] == "running" && j["progress"]["epoch"].as_i64().unwrap_or(0) >= 1).await;
    let owner = app.job_row(first).await.lease_owner.expect("a running job has a lease owner");
    let owned_by = |child: &std::process::Child| owner.contains(&format!(":{}:", child.id()));
    assert!(owned_by(&a) || owned_by(&b), "the job runs on one of the two workers: {owner}");
    let (victim, survivor, survivor_dir) = if owned_by(&a) { (&mut a, &mut b, &dir_b) } else { (&mut b, &mut a, &dir_a) };
    victim.kill().unwrap(); // SIGKILL: no cleanup at all
    victim.wait().unwrap();

    for id in &ids {
        app.wait_status(id, "succeeded", WAIT).await;
    }
    let outcomes: Vec<(String, String)> =
        sqlx::query_as("SELECT outcome, worker FROM job_attempts WHERE job_id = $1::uuid ORDER BY attempt")
            .bind(first)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert_eq!(outcomes[0].0, "lease_expired");
    assert_eq!(outcomes[1].0, "succeeded");
    assert!(outcomes[1].1.contains(&format!(":{}:", survivor.id())), "the survivor finished it: {outcomes:?}");

    for id in &ids {
        assert_model_served(&app, id).await;
        let job = app.job(id).await;
        let report: Value = app.get(&format!("/v1/jobs/{id}/report")).send().await.unwrap().json().await.unwrap();
        assert_eq!(report["attempt"], job["attempts"]);
        let attempt = job["attempts"].as_i64().unwrap();
        let keys = s3.keys(&format!("{PREFIX}/jobs/{id}")).await;
        assert!(keys.contains(&format!("{PREFIX}/jobs/{id}/attempt-{attempt}/purified.safetensors")), "{keys:?}");
    }
    assert_eq!(app.count("SELECT count(*) FROM artifacts WHERE kind = 'output_model'").await, 4);
    assert!(app.files_on_disk().is_empty(), "the API holds no artifact: {:?}", app.files_on_disk());

    sigterm(survivor);
    assert!(wait_exit(survivor, Duration::from_secs(10)).success());
    let left = walk(survivor_dir.path());
    assert!(left.is_empty(), "a worker keeps no files once its jobs are stored: {left:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}
