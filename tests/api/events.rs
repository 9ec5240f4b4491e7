use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

/// Reads an SSE response to its end (or `timeout`), returning (event name, data) pairs.
async fn read_events(response: reqwest::Response, timeout: Duration) -> Vec<(String, Value)> {
    let mut response = response;
    let mut buffer = String::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => buffer.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Ok(None)) => break,
            Ok(Err(e)) => panic!("stream error: {e}"),
            Err(_) => panic!("event stream did not end within {timeout:?}; got {buffer}"),
        }
    }
    buffer
        .split("\n\n")
        .filter_map(|block| {
            let mut event = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = Some(e.trim().to_string());
                }
                if let Some(d) = line.strip_prefix("data:") {
                    data = Some(serde_json::from_str(d.trim()).unwrap());
                }
            }
            Some((event?, data?))
        })
        .collect()
}

#[tokio::test]
async fn event_stream_follows_a_job_to_its_end() {
    let app = spawn_app_with(&["--workers", "0"], std::sync::Arc::new(crate::runner::ScriptedRunner)).await;
    let id = job_id(&app.submit_job(json!({ "epochs": 12, "epoch_ms": 100 })).await);
    let response = app.get(&format!("/v1/jobs/{id}/events")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    // A worker in another "process" (its own pool and listener) picks the job up.
    let worker = crate::worker_process::start_in_process_worker(&app).await;
    let events = read_events(response, Duration::from_secs(30)).await;
    worker.cancel();
    let statuses: Vec<&str> = events.iter().filter(|(e, _)| e == "status").map(|(_, d)| d["status"].as_str().unwrap()).collect();
    assert_eq!(statuses.first(), Some(&"queued"));
    assert!(statuses.contains(&"running"));
    assert_eq!(statuses.last(), Some(&"succeeded"));
    assert!(events.iter().any(|(e, d)| e == "progress" && d["progress"]["epoch"].as_i64() > Some(0)));
    assert_eq!(events.last().unwrap().1["status"], "succeeded");
}

#[tokio::test]
async fn event_stream_sees_changes_made_directly_in_the_database() {
    let app = spawn_app_with(&["--workers", "0"], std::sync::Arc::new(crate::runner::ScriptedRunner)).await;
    let id = job_id(&app.submit_job(json!({})).await);
    let response = app.get(&format!("/v1/jobs/{id}/events")).send().await.unwrap();
    let reader = tokio::spawn(read_events(response, Duration::from_secs(20)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query("UPDATE jobs SET state = 'canceled', finished_at = now() WHERE id = $1::uuid")
        .bind(&id)
        .execute(&app.pool)
        .await
        .unwrap();
    let events = reader.await.unwrap();
    assert_eq!(events.last().unwrap().1["status"], "canceled");
}

#[tokio::test]
async fn event_stream_of_a_finished_job_sends_one_event_and_ends() {
    let app = spawn_app().await;
    let id = job_id(&app.submit_job(json!({ "epochs": 1, "epoch_ms": 1 })).await);
    app.wait_status(&id, "succeeded", Duration::from_secs(20)).await;
    let response = app.get(&format!("/v1/jobs/{id}/events")).send().await.unwrap();
    let events = read_events(response, Duration::from_secs(5)).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1["status"], "succeeded");
}

#[tokio::test]
async fn event_stream_ends_when_the_job_is_deleted() {
    let app = spawn_app_with(&["--workers", "0"], std::sync::Arc::new(crate::runner::ScriptedRunner)).await;
    let id = job_id(&app.submit_job(json!({})).await);
    let response = app.get(&format!("/v1/jobs/{id}/events")).send().await.unwrap();
    let reader = tokio::spawn(read_events(response, Duration::from_secs(20)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.delete(&format!("/v1/jobs/{id}")).send().await.unwrap().status(), 204);
    let events = reader.await.unwrap();
    assert_eq!(events.last().unwrap().0, "deleted");
}

#[tokio::test]
async fn open_event_streams_do_not_hold_up_shutdown() {
    let mut app = spawn_app_with(&["--workers", "0"], std::sync::Arc::new(crate::runner::ScriptedRunner)).await;
    let id = job_id(&app.submit_job(json!({})).await);
    let response = app.get(&format!("/v1/jobs/{id}/events")).send().await.unwrap();
    let reader = tokio::spawn(read_events(response, Duration::from_secs(20)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.shutdown.cancel();
    let server = app.server.take().unwrap();
    tokio::time::timeout(Duration::from_secs(10), server).await.expect("server stops").unwrap().unwrap();
    let events = reader.await.unwrap();
    assert_eq!(events[0].1["status"], "queued");
}
