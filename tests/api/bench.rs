//! Load benchmark of a running server (not a test: ignored unless run by bench/api.sh).
//! 1,000 concurrent job submissions, then status reads paced at a target rate for a fixed time;
//! checks that no job was lost or duplicated and prints latency percentiles as JSON.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run by bench/api.sh against a running server"]
async fn bench_api_load() {
    let base = std::env::var("GCLEANER_BENCH_URL").expect("GCLEANER_BENCH_URL");
    let token = std::env::var("GCLEANER_BENCH_TOKEN").expect("GCLEANER_BENCH_TOKEN");
    let submissions: usize = env_or("GCLEANER_BENCH_SUBMISSIONS", 1000);
    let read_rate: f64 = env_or("GCLEANER_BENCH_READ_RATE", 10_000.0);
    let read_secs: f64 = env_or("GCLEANER_BENCH_READ_SECS", 30.0);
    let readers: usize = env_or("GCLEANER_BENCH_READERS", 64);
    let client = reqwest::Client::builder().pool_max_idle_per_host(1024).build().unwrap();
    let model = Arc::new(model_bytes());
    let data = Arc::new(dataset_json(20).to_string().into_bytes());

    // Phase 1: every submission at once, each with its own idempotency key.
    let started = Instant::now();
    let tasks: Vec<_> = (0..submissions)
        .map(|i| {
            let (client, base, token, model, data) = (client.clone(), base.clone(), token.clone(), model.clone(), data.clone());
            tokio::spawn(async move {
                let form = reqwest::multipart::Form::new()
                    .part("model", part(model.as_ref().clone(), "m.safetensors"))
                    .part("data", part(data.as_ref().clone(), "d.json"))
                    .part("config", part(json!({ "seed": i }).to_string().into_bytes(), "c.json"));
                let t = Instant::now();
                let r = client
                    .post(format!("{base}/v1/jobs"))
                    .bearer_auth(&token)
                    .header("idempotency-key", format!("bench-{i}"))
                    .multipart(form)
                    .send()
                    .await;
                let elapsed = t.elapsed().as_secs_f64();
                match r {
                    Ok(r) if r.status() == 202 => {
                        let job: Value = r.json().await.unwrap();
                        Ok((job_id(&job), elapsed))
                    }
                    Ok(r) => Err(format!("status {}", r.status())),
                    Err(e) => Err(e.to_string()),
                }
            })
        })
        .collect();
    let mut ids = Vec::new();
    let mut submit_latency = Vec::new();
    let mut submit_errors = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok((id, l)) => {
                ids.push(id);
                submit_latency.push(l);
            }
            Err(e) => submit_errors.push(e),
        }
    }
    let submit_wall = started.elapsed().as_secs_f64();
    assert!(
        submit_errors.is_empty(),
        "{} submissions failed, e.g. {:?}",
        submit_errors.len(),
        &submit_errors[..submit_errors.len().min(3)]
    );
    submit_latency.sort_by(f64::total_cmp);

    // Phase 2: status reads, paced per reader to reach the target rate overall.
    let ids = Arc::new(ids);
    let interval = Duration::from_secs_f64(readers as f64 / read_rate);
    let deadline = Instant::now() + Duration::from_secs_f64(read_secs);
    let reader_tasks: Vec<_> = (0..readers)
        .map(|r| {
            let (client, base, token, ids) = (client.clone(), base.clone(), token.clone(), ids.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0usize;
                let mut ticker = tokio::time::interval(interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let mut i = r;
                while Instant::now() < deadline {
                    ticker.tick().await;
                    let id = &ids[i % ids.len().max(1)];
                    i += readers;
                    let t = Instant::now();
                    match client.get(format!("{base}/v1/jobs/{id}")).bearer_auth(&token).send().await {
                        Ok(resp) if resp.status() == 200 => {
                            let _ = resp.bytes().await;
                            latencies.push(t.elapsed().as_secs_f64());
                        }
                        _ => errors += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let read_started = Instant::now();
    let mut read_latency = Vec::new();
    let mut read_errors = 0;
    for t in reader_tasks {
        let (l, e) = t.await.unwrap();
        read_latency.extend(l);
        read_errors += e;
    }
    let read_wall = read_started.elapsed().as_secs_f64();
    read_latency.sort_by(f64::total_cmp);

    // Phase 3: the server's own listing must hold each submitted job exactly once.
    let mut listed = Vec::new();
    let mut page_token: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/jobs?limit=100");
        if let Some(t) = &page_token {
            url.push_str(&format!("&page_token={t}"));
        }
        let page: Value = client.get(url).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        listed.extend(page["jobs"].as_array().unwrap().iter().map(job_id));
        match page["next_page_token"].as_str() {
            Some(t) => page_token = Some(t.to_string()),
            None => break,
        }
    }
    let listed_unique: HashSet<&String> = listed.iter().collect();
    let submitted: HashSet<&String> = ids.iter().collect();
    let lost = submitted.difference(&listed_unique).count();
    let duplicated = listed.len() - listed_unique.len();

    let summary = json!({
        "submissions": submissions,
        "submitted_ok": ids.len(),
        "submit_errors": submit_errors.len(),
        "submit_wall_s": submit_wall,
        "submit_p50_ms": percentile(&submit_latency, 0.5) * 1000.0,
        "submit_p99_ms": percentile(&submit_latency, 0.99) * 1000.0,
        "read_target_rps": read_rate,
        "reads_ok": read_latency.len(),
        "read_errors": read_errors,
        "read_achieved_rps": read_latency.len() as f64 / read_wall,
        "read_p50_ms": percentile(&read_latency, 0.5) * 1000.0,
        "read_p99_ms": percentile(&read_latency, 0.99) * 1000.0,
        "jobs_listed": listed.len(),
        "lost_jobs": lost,
        "duplicated_jobs": duplicated,
    });
    println!("BENCH_RESULT {summary}");
    assert!(submit_errors.is_empty(), "submission errors: {:?}", &submit_errors[..submit_errors.len().min(5)]);
    assert_eq!(lost, 0, "lost jobs");
    assert_eq!(duplicated, 0, "duplicated jobs");
    assert_eq!(listed.len(), submissions, "exactly the submitted jobs exist");
}
