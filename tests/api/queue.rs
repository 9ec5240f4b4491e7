//! Queue mechanics at the SQL level: claiming, fencing, the reaper.

use std::collections::HashSet;
use std::time::Duration;

use gcleaner::queue::claim::claim_next;
use gcleaner::queue::fenced::{self, Fence, Heartbeat, Written};
use gcleaner::queue::reaper::reap_expired;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;

async fn insert_jobs(app: &TestApp, n: usize, max_attempts: i32) -> Vec<Uuid> {
    let tenant = gcleaner::db::tokens::ensure_tenant(&app.pool, "tenant-a").await.unwrap();
    let mut ids = Vec::new();
    for i in 0..n {
        let job = gcleaner::db::jobs::insert(
            &app.pool,
            &gcleaner::db::jobs::NewJob {
                id: Uuid::new_v4(),
                tenant_id: tenant,
                max_attempts,
                priority: (i % 3) as i16,
                config: &json!({}),
                idempotency_key: None,
                request_hash: "h",
            },
        )
        .await
        .unwrap();
        ids.push(job.id);
    }
    ids
}

/// No workers, and the app's own reaper effectively idle, so tests drive the queue by hand.
fn queue_only() -> [&'static str; 4] {
    ["--workers", "0", "--reaper-secs", "3600"]
}

#[tokio::test]
async fn concurrent_claims_take_each_job_exactly_once() {
    let app = spawn_app_with(&queue_only(), std::sync::Arc::new(crate::runner::ScriptedRunner)).await;
    let ids = insert_jobs(&app, 40, 3).await;
    let claimers = (0..8).map(|w| {
        let pool = app.pool.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(job) = claim_next(&pool, &format!("w{w}"), Duration::from_secs(60)).await.unwrap() {
                mine.push(job.id);
            }
            mine
        })
    });
    let mut all = Vec::new();
    for c in claimers {
        all.extend(c.await.unwrap());
    }
    assert_eq!(all.len(), 40);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 40);
    assert_eq!(all.iter().collect::<HashSet<_>>(), ids.iter().collect::<HashSet<_>>());
    assert_eq!(app.count("SELECT count(*) FROM job_attempts WHERE outcome = 'running'").await, 40);
}

#[tokio::test]
async fn claims_follow_priority_then_age() {
    let app = spawn_app_with(&queue_only(), std::sync::Arc::new(crate::runner::ScriptedRunner)).await;
    let ids = insert_jobs(&app, 6, 3).await;
    let mut order = Vec::new();
    while let Some(job) = claim_next(&app.pool, "w", Duration::from_secs(60)).await.unwrap() {
        order.push(job.id);
    }
    // priorities were 0,1,2,0,1,2: highest first, older first within a priority.
    assert_eq!(order, vec![ids[2], ids[5], ids[1], ids[4], ids[0], ids[3]]);
}

#[tokio::test]
async fn a_stalled_workers_late_writes_are_rejected() {
    let app = spawn_app_with(&queue_only(), std::sync::Arc::new(crate::runner::ScriptedRunner)).await;
    insert_jobs(&app, 1, 3).await;
    let stalled = claim_next(&app.pool, "stalled", Duration::from_millis(200)).await.unwrap().unwrap();
    let stalled_fence = Fence { job_id: stalled.id, attempt: stalled.attempt, worker: "stalled".into() };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Lease expired: even before the reaper runs, the stalled worker no longer owns the job.
    let lease = Duration::from_secs(60);
    assert_eq!(fenced::heartbeat(&app.pool, &stalled_fence, lease, None).await.unwrap(), Heartbeat::Lost);

    let reaped = reap_expired(&app.pool, Duration::ZERO).await.unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!(reaped[0].state, "queued");
    let fresh = claim_next(&app.pool, "fresh", lease).await.unwrap().unwrap();
    assert_eq!(fresh.id, stalled.id);
    assert_eq!(fresh.attempt, 2);
    let fresh_fence = Fence { job_id: fresh.id, attempt: fresh.attempt, worker: "fresh".into() };

    let error = json!({ "code": "x" });
    assert_eq!(fenced::complete(&app.pool, &stalled_fence, &[]).await.unwrap(), Written::Rejected);
    assert_eq!(fenced::finish(&app.pool, &stalled_fence, "failed", &error).await.unwrap(), Written::Rejected);
    assert_eq!(fenced::requeue(&app.pool, &stalled_fence, Duration::ZERO, None, true).await.unwrap(), Written::Rejected);
    let row = app.job_row(&fresh.id.to_string()).await;
    assert_eq!((row.state.as_str(), row.attempt, row.lease_owner.as_deref()), ("running", 2, Some("fresh")));

    assert_eq!(fenced::complete(&app.pool, &fresh_fence, &[]).await.unwrap(), Written::Applied);
    let row = app.job_row(&fresh.id.to_string()).await;
    assert_eq!(row.state, "succeeded");
    let outcomes: Vec<String> =
        sqlx::query_scalar("SELECT outcome FROM job_attempts ORDER BY attempt").fetch_all(&app.pool).await.unwrap();
    assert_eq!(outcomes, ["lease_expired", "succeeded"]);
}

#[tokio::test]
async fn reaper_fails_a_job_whose_attempts_are_used_up() {
    let app = spawn_app_with(&queue_only(), std::sync::Arc::new(crate::runner::ScriptedRunner)).await;
    let ids = insert_jobs(&app, 1, 2).await;
    for attempt in 1..=2 {
        let job = claim_next(&app.pool, "dies", Duration::from_millis(50)).await.unwrap().unwrap();
        assert_eq!(job.attempt, attempt);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let reaped = reap_expired(&app.pool, Duration::ZERO).await.unwrap();
        assert_eq!(reaped.len(), 1);
    }
    let row = app.job_row(&ids[0].to_string()).await;
    assert_eq!(row.state, "failed");
    assert!(row.finished_at.is_some());
    assert_eq!(row.error.unwrap().0["code"], "attempts_exhausted");
    assert!(claim_next(&app.pool, "w", Duration::from_secs(1)).await.unwrap().is_none());
}

#[tokio::test]
async fn reaper_backs_off_before_the_retry() {
    let app = spawn_app_with(&queue_only(), std::sync::Arc::new(crate::runner::ScriptedRunner)).await;
    insert_jobs(&app, 1, 3).await;
    claim_next(&app.pool, "dies", Duration::from_millis(50)).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    reap_expired(&app.pool, Duration::from_secs(30)).await.unwrap();
    // Due in 15..45 s: not claimable now.
    assert!(claim_next(&app.pool, "w", Duration::from_secs(1)).await.unwrap().is_none());
    let due_in: f64 =
        sqlx::query_scalar("SELECT extract(epoch FROM run_at - now())::float8 FROM jobs").fetch_one(&app.pool).await.unwrap();
    assert!((10.0..50.0).contains(&due_in), "{due_in}");
}

#[tokio::test]
async fn state_machine_is_enforced_by_the_database() {
    let app = spawn_app_with(&queue_only(), std::sync::Arc::new(crate::runner::ScriptedRunner)).await;
    let ids = insert_jobs(&app, 1, 3).await;
    for bad in [
        "UPDATE jobs SET state = 'done'",
        "UPDATE jobs SET state = 'succeeded'",
        "UPDATE jobs SET state = 'running'",
        "UPDATE jobs SET state = 'failed', finished_at = now()",
        "UPDATE jobs SET attempt = 4",
        "UPDATE jobs SET phase = 'sleeping'",
    ] {
        let err = sqlx::query(bad).execute(&app.pool).await.expect_err(bad);
        assert!(gcleaner::db::violated_constraint(&err).is_some(), "{bad}: {err}");
    }
    assert_eq!(app.job_row(&ids[0].to_string()).await.state, "queued");
}

#[tokio::test]
async fn retention_purges_old_finished_jobs_and_their_files() {
    let app = spawn_app().await;
    let old = job_id(&app.submit_job(json!({ "epochs": 1, "epoch_ms": 1 })).await);
    let recent = job_id(&app.submit_job(json!({ "epochs": 1, "epoch_ms": 1 })).await);
    for id in [&old, &recent] {
        app.wait_status(id, "succeeded", Duration::from_secs(30)).await;
    }
    sqlx::query("UPDATE jobs SET finished_at = now() - interval '40 days' WHERE id = $1::uuid")
        .bind(&old)
        .execute(&app.pool)
        .await
        .unwrap();
    let store = gcleaner::storage::LocalStore::open(&app.data_dir).unwrap();
    let purged = gcleaner::queue::reaper::purge_expired(&app.pool, &store, 30).await.unwrap();
    assert_eq!(purged, 1);
    assert_eq!(app.get(&format!("/v1/jobs/{old}")).send().await.unwrap().status(), 404);
    assert_eq!(app.job(&recent).await["status"], "succeeded");
    assert!(!app.files_on_disk().iter().any(|p| p.to_string_lossy().contains(&old)));
    assert!(app.files_on_disk().iter().any(|p| p.to_string_lossy().contains(&recent)));
    assert_eq!(gcleaner::queue::reaper::purge_expired(&app.pool, &store, 0).await.unwrap(), 0);
}

#[tokio::test]
async fn token_create_prints_the_secret_alone_on_the_last_line() {
    let db = TestDatabase::create().await;
    let bin = env!("CARGO_BIN_EXE_gcleaner");
    let run = |args: &[&str]| std::process::Command::new(bin).args(args).env("GCLEANER_DATABASE_URL", &db.url).output().unwrap();
    let migrate = run(&["migrate"]);
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));
    let created = run(&["token", "create", "--name", "ci"]);
    assert!(created.status.success());
    let stdout = String::from_utf8(created.stdout).unwrap();
    let secret = stdout.lines().last().unwrap();
    assert!(secret.starts_with("gcl_") && !secret.contains(' '), "{stdout}");
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    assert!(gcleaner::db::tokens::authenticate(&pool, secret).await.unwrap().is_some());
    let listed = String::from_utf8(run(&["token", "list"]).stdout).unwrap();
    assert!(listed.contains("ci") && !listed.contains(secret), "the list never shows secrets");
    assert!(run(&["token", "disable", "--name", "ci"]).status.success());
    assert!(gcleaner::db::tokens::authenticate(&pool, secret).await.unwrap().is_none());
    pool.close().await;
}
