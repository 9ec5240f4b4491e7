use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn full_flow_submit_follow_download_report() {
    let app = spawn_app().await;
    let response = app.submit(job_form(json!({ "test": { "epochs": 4, "epoch_ms": 30 } }))).await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let job: Value = response.json().await.unwrap();
    let id = job_id(&job);
    assert_eq!(location, format!("/v1/jobs/{id}"));
    assert!(["queued", "running"].contains(&job["status"].as_str().unwrap()));
    assert_eq!(job["links"]["model"], format!("/v1/jobs/{id}/model"));

    let r = app.get(&location).send().await.unwrap();
    if r.json::<Value>().await.unwrap()["status"] != "succeeded" {
        let r = app.get(&location).send().await.unwrap();
        // Not finished yet, or finished in between: only unfinished jobs carry Retry-After.
        let has_retry = r.headers().contains_key("retry-after");
        let status = r.json::<Value>().await.unwrap()["status"].clone();
        assert_eq!(has_retry, status != "succeeded");
    }

    let done = app.wait_status(&id, "succeeded", WAIT).await;
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["progress"]["fraction"], 1.0);
    assert!(done["finished_at"].is_string());
    let r = app.get(&location).send().await.unwrap();
    assert!(!r.headers().contains_key("retry-after"));

    let r = app.get(&format!("/v1/jobs/{id}/model")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let bytes = r.bytes().await.unwrap();
    assert_eq!(bytes.as_ref(), model_bytes().as_slice(), "the scripted runner returns its input model");
    assert_eq!(etag, format!("\"{}\"", hex::encode(Sha256::digest(&bytes))));
    let r = app.get(&format!("/v1/jobs/{id}/model")).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(r.status(), 304);
    let r = app.get(&format!("/v1/jobs/{id}/model")).header("if-none-match", "\"other\"").send().await.unwrap();
    assert_eq!(r.status(), 200);

    let report: Value = app.get(&format!("/v1/jobs/{id}/report")).send().await.unwrap().json().await.unwrap();
    assert_eq!(report["job_id"], id.as_str());
    let r = app.get(&format!("/v1/jobs/{id}/report")).header("accept", "text/html").send().await.unwrap();
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(r.text().await.unwrap().contains(&id));
    let r = app.get(&format!("/v1/jobs/{id}/report.html")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn results_are_409_until_the_job_succeeds() {
    let app = spawn_app_with(&["--workers", "0"], std::sync::Arc::new(crate::runner::ScriptedRunner)).await;
    let job = app.submit_job(json!({})).await;
    let id = job_id(&job);
    for path in ["model", "report", "report.html"] {
        let r = app.get(&format!("/v1/jobs/{id}/{path}")).send().await.unwrap();
        assert_eq!(r.status(), 409, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "job_not_succeeded");
    }
}

#[tokio::test]
async fn idempotency_key_replays_the_same_job_and_refuses_a_different_payload() {
    let app = spawn_app_with(&["--workers", "0"], std::sync::Arc::new(crate::runner::ScriptedRunner)).await;
    let send = |config: Value| app.post("/v1/jobs").header("idempotency-key", "key-1").multipart(job_form(config)).send();
    let first = send(json!({ "a": 1 })).await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = send(json!({ "a": 1 })).await.unwrap();
    assert_eq!(again.status(), 202);
    let again: Value = again.json().await.unwrap();
    assert_eq!(first["id"], again["id"]);
    let different = send(json!({ "a": 2 })).await.unwrap();
    assert_eq!(different.status(), 422);
    assert_eq!(different.json::<Value>().await.unwrap()["code"], "idempotency_key_reused");
    assert_eq!(app.count("SELECT count(*) FROM jobs").await, 1);

    // The key is scoped to the tenant.
    let other = app.other_tenant_token().await;
    let r = app
        .client
        .post(app.url("/v1/jobs"))
        .bearer_auth(other)
        .header("idempotency-key", "key-1")
        .multipart(job_form(json!({ "a": 2 })))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_ne!(r.json::<Value>().await.unwrap()["id"], first["id"]);
}

#[tokio::test]
async fn concurrent_submissions_with_one_key_create_one_job() {
    let app = spawn_app_with(&["--workers", "0"], std::sync::Arc::new(crate::runner::ScriptedRunner)).await;
    let requests = (0..8).map(|_| app.post("/v1/jobs").header("idempotency-key", "same").multipart(job_form(json!({}))).send());
    let responses = futures_util::future::join_all(requests).await;
    let mut ids = std::collections::HashSet::new();
    for r in responses {
        let r = r.unwrap();
        assert_eq!(r.status(), 202);
        ids.insert(r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(app.count("SELECT count(*) FROM jobs").await, 1);
}

#[tokio::test]
async fn pagination_walks_every_job_newest_first_without_repeats() {
    let app = spawn_app_with(&["--workers", "0"], std::sync::Arc::new(crate::runner::ScriptedRunner)).await;
    let mut created = Vec::new();
    for _ in 0..7 {
        created.push(job_id(&app.submit_job(json!({})).await));
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut path = "/v1/jobs?limit=3".to_string();
        if let Some(t) = &token {
            path.push_str(&format!("&page_token={t}"));
        }
        let page: Value = app.get(&path).send().await.unwrap().json().await.unwrap();
        let jobs = page["jobs"].as_array().unwrap();
        assert!(jobs.len() <= 3);
        seen.extend(jobs.iter().map(job_id));
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    created.reverse();
    assert_eq!(seen, created);

    let filtered: Value = app.get("/v1/jobs?status=succeeded").send().await.unwrap().json().await.unwrap();
    assert_eq!(filtered["jobs"].as_array().unwrap().len(), 0);
    let queued: Value = app.get("/v1/jobs?status=queued&limit=100").send().await.unwrap().json().await.unwrap();
    assert_eq!(queued["jobs"].as_array().unwrap().len(), 7);
    for bad in ["/v1/jobs?limit=0", "/v1/jobs?limit=101", "/v1/jobs?limit=x", "/v1/jobs?status=done", "/v1/jobs?page_token=@@"] {
        let r = app.get(bad).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
}

#[tokio::test]
async fn another_tenants_job_is_not_found() {
    let app = spawn_app_with(&["--workers", "0"], std::sync::Arc::new(crate::runner::ScriptedRunner)).await;
    let id = job_id(&app.submit_job(json!({})).await);
    let other = app.other_tenant_token().await;
    for (method, path) in [
        ("GET", format!("/v1/jobs/{id}")),
        ("GET", format!("/v1/jobs/{id}/model")),
        ("GET", format!("/v1/jobs/{id}/report")),
        ("GET", format!("/v1/jobs/{id}/events")),
        ("POST", format!("/v1/jobs/{id}/cancel")),
        ("DELETE", format!("/v1/jobs/{id}")),
    ] {
        let r = app.client.request(method.parse().unwrap(), app.url(&path)).bearer_auth(&other).send().await.unwrap();
        assert_eq!(r.status(), 404, "{method} {path}");
    }
    let list: Value = app.client.get(app.url("/v1/jobs")).bearer_auth(&other).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["jobs"].as_array().unwrap().len(), 0);
    // The owner still sees it, untouched.
    assert_eq!(app.job(&id).await["status"], "queued");
    let r = app.get("/v1/jobs/not-a-uuid").send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn cancel_a_queued_job_at_once() {
    let app = spawn_app_with(&["--workers", "0"], std::sync::Arc::new(crate::runner::ScriptedRunner)).await;
    let id = job_id(&app.submit_job(json!({})).await);
    let r = app.post(&format!("/v1/jobs/{id}/cancel")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "canceled");
    let r = app.post(&format!("/v1/jobs/{id}/cancel")).send().await.unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "job_finished");
}

#[tokio::test]
async fn cancel_a_running_job_stops_it_at_an_epoch_boundary() {
    let app = spawn_app().await;
    let id = job_id(&app.submit_job(json!({ "epochs": 200, "epoch_ms": 50 })).await);
    app.wait_for(&id, WAIT, |j| j["status"] == "running" && j["progress"]["epoch"].as_i64().unwrap_or(0) >= 1).await;
    let r = app.post(&format!("/v1/jobs/{id}/cancel")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap()["cancel_requested"], true);
    let done = app.wait_status(&id, "canceled", Duration::from_secs(10)).await;
    assert!(done["progress"]["epoch"].as_i64().unwrap() < 200);
    assert_eq!(done["error"]["code"], "canceled");
    let outcome: String =
        sqlx::query_scalar("SELECT outcome FROM job_attempts WHERE attempt = 1").fetch_one(&app.pool).await.unwrap();
    assert_eq!(outcome, "canceled");
}

#[tokio::test]
async fn delete_removes_the_job_and_its_files() {
    let app = spawn_app().await;
    let id = job_id(&app.submit_job(json!({ "epochs": 1, "epoch_ms": 1 })).await);
    app.wait_status(&id, "succeeded", WAIT).await;
    let job_files = |app: &TestApp| app.files_on_disk().into_iter().filter(|p| p.to_string_lossy().contains(&id)).count();
    assert!(job_files(&app) >= 5, "inputs, model and two reports are stored");
    let r = app.delete(&format!("/v1/jobs/{id}")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(job_files(&app), 0);
    assert_eq!(app.count("SELECT count(*) FROM artifacts").await, 0);
    assert_eq!(app.get(&format!("/v1/jobs/{id}")).send().await.unwrap().status(), 404);
    assert_eq!(app.delete(&format!("/v1/jobs/{id}")).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn invalid_input_from_the_runner_fails_without_retry() {
    let app = spawn_app().await;
    let id = job_id(&app.submit_job(json!({ "fail": "invalid" })).await);
    let done = app.wait_status(&id, "failed", WAIT).await;
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["error"]["code"], "invalid_input");
    assert_eq!(done["error"]["status"], 422);
}

#[tokio::test]
async fn transient_failures_retry_with_backoff_then_succeed() {
    let app = spawn_app().await;
    let id = job_id(&app.submit_job(json!({ "fail": "transient", "fail_attempts": 2 })).await);
    let done = app.wait_status(&id, "succeeded", WAIT).await;
    assert_eq!(done["attempts"], 3);
    let outcomes: Vec<String> =
        sqlx::query_scalar("SELECT outcome FROM job_attempts ORDER BY attempt").fetch_all(&app.pool).await.unwrap();
    assert_eq!(outcomes, ["retrying", "retrying", "succeeded"]);
}

#[tokio::test]
async fn retries_exhausted_fail_the_job_visibly() {
    let app = spawn_app().await;
    let id = job_id(&app.submit_job(json!({ "fail": "transient" })).await);
    let done = app.wait_status(&id, "failed", WAIT).await;
    assert_eq!(done["attempts"], 3);
    assert_eq!(done["error"]["code"], "attempts_exhausted");
    assert!(done["error"]["detail"].as_str().unwrap().contains("scripted transient failure"));
}

#[tokio::test]
async fn completion_callback_is_signed_and_delivered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let receiver = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = socket.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = text
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        socket.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n").await.unwrap();
        String::from_utf8_lossy(&buf).to_string()
    });
    let app = spawn_app_with(&["--callback-secret", "s3cret"], std::sync::Arc::new(crate::runner::ScriptedRunner)).await;
    let config = json!({ "callback_url": format!("http://127.0.0.1:{port}/hook"), "test": { "epochs": 1 } });
    let r = app.submit(job_form(config)).await;
    assert_eq!(r.status(), 202);
    let id = job_id(&r.json().await.unwrap());
    let request = tokio::time::timeout(WAIT, receiver).await.expect("callback arrives").unwrap();
    let (head, body) = request.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("POST /hook"));
    let signature = head.lines().find_map(|l| l.strip_prefix("gcleaner-signature: ")).expect("signature header");
    let timestamp: i64 = signature.split(',').next().unwrap().trim_start_matches("t=").parse().unwrap();
    assert_eq!(signature, gcleaner::queue::callbacks::sign("s3cret", timestamp, body.as_bytes()));
    let payload: Value = serde_json::from_str(body).unwrap();
    assert_eq!(payload["id"], id.as_str());
    assert_eq!(payload["status"], "succeeded");
    let deadline = std::time::Instant::now() + WAIT;
    while app.count("SELECT count(*) FROM callbacks WHERE state = 'delivered'").await != 1 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn callbacks_to_hosts_off_the_allow_list_are_refused() {
    let app = spawn_app().await;
    let r = app.submit(job_form(json!({ "callback_url": "http://169.254.169.254/latest" }))).await;
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "invalid_config");
    assert_eq!(app.count("SELECT count(*) FROM jobs").await, 0);
}
