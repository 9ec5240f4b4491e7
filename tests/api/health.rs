use crate::helpers::*;

#[tokio::test]
async fn healthz_and_readyz_answer_ok() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["status"], "ready");
}

#[tokio::test]
async fn readyz_reports_unapplied_migrations() {
    let app = spawn_app().await;
    sqlx::query("DELETE FROM _sqlx_migrations").execute(&app.pool).await.unwrap();
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn unknown_route_and_wrong_method_are_problems() {
    let app = spawn_app().await;
    let r = app.get("/v1/nothing").send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
    let r = app.client.put(app.url("/v1/jobs")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn requests_without_a_valid_token_are_401() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/v1/jobs")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = app.client.get(app.url("/v1/jobs")).bearer_auth("gcl_wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "unauthenticated");
    assert_eq!(body["status"], 401);
}

#[tokio::test]
async fn disabled_tokens_are_refused() {
    let app = spawn_app().await;
    assert_eq!(app.get("/v1/jobs").send().await.unwrap().status(), 200);
    gcleaner::db::tokens::disable_token(&app.pool, "test").await.unwrap();
    assert_eq!(app.get("/v1/jobs").send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn insecure_mode_needs_no_token() {
    let app = spawn_app_with(&["--insecure-no-auth"], std::sync::Arc::new(crate::runner::ScriptedRunner)).await;
    let r = app.client.get(app.url("/v1/jobs")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn rate_limit_gives_429_with_retry_after() {
    let app = spawn_app_with(
        &["--rate-limit-per-sec", "1", "--rate-limit-burst", "3"],
        std::sync::Arc::new(crate::runner::ScriptedRunner),
    )
    .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = app.get("/v1/jobs").send().await.unwrap();
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
        }
        statuses.push(r.status().as_u16());
    }
    assert_eq!(&statuses[..3], &[200, 200, 200]);
    assert_eq!(statuses[4], 429);
}

#[tokio::test]
async fn metrics_expose_jobs_queue_and_http_histograms() {
    let app = spawn_app().await;
    let job = app.submit_job(serde_json::json!({ "epochs": 1, "epoch_ms": 1 })).await;
    app.wait_status(&job_id(&job), "succeeded", std::time::Duration::from_secs(20)).await;
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("gcleaner_jobs{state=\"succeeded\"} 1"), "{text}");
    assert!(text.contains("gcleaner_queue_depth 0"));
    assert!(text.contains("gcleaner_job_duration_seconds_count 1"));
    assert!(text.contains("gcleaner_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/jobs\",status=\"202\""));
    assert!(text.contains("route=\"/v1/jobs/{id}\",status=\"200\""));
}

#[tokio::test]
async fn cached_tokens_stop_working_within_the_cache_time_after_disabling() {
    let app = spawn_app_with(&["--auth-cache-secs", "0.5"], std::sync::Arc::new(crate::runner::ScriptedRunner)).await;
    assert_eq!(app.get("/v1/jobs").send().await.unwrap().status(), 200);
    gcleaner::db::tokens::disable_token(&app.pool, "test").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert_eq!(app.get("/v1/jobs").send().await.unwrap().status(), 401);
}
