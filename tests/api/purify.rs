//! The production runner end to end: a real model and a generated clean sample go through the
//! engine's purification on a worker, and the purified model and report come back.

use std::sync::Arc;
use std::time::Duration;

use gcleaner::queue::engine_runner::EngineRunner;
use serde_json::{json, Value};

use crate::helpers::*;

fn sample_json() -> Vec<u8> {
    let ds = gcleaner_engine::data::synthetic::generate(24, 7);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sample.json");
    gcleaner_engine::data::json::write_json_dataset(&ds, &path).unwrap();
    std::fs::read(path).unwrap()
}

fn engine_spec() -> Value {
    json!({
        "format": "gcleaner.model/v1", "arch": "gin", "in_features": 11, "hidden": 16, "num_classes": 2,
        "num_layers": 3, "pooling": "sum", "features": { "kind": "one_hot_degree", "max_degree": 10 }
    })
}

/// Small enough to finish in seconds on a CPU.
fn quick_config() -> Value {
    json!({
        "force": true, "trigger_nodes": 3,
        "recovery": { "epochs": 2, "restarts": 1 },
        "unlearn": { "epochs": 2, "teacher_epochs": 2, "positions": 2 }
    })
}

fn submission(config: Value) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new()
        .part("model", part(model_bytes_for(&engine_spec()), "suspect.safetensors"))
        .part("data", part(sample_json(), "sample.json"))
        .part("config", part(config.to_string().into_bytes(), "config.json"))
}

/// Submits `form`, waits for the job to succeed, and returns its id and report.
async fn run_to_report(app: &TestApp, form: reqwest::multipart::Form) -> (String, Value) {
    let r = app.submit(form).await;
    assert_eq!(r.status(), 202, "{:?}", r.text().await);
    let id = job_id(&r.json().await.unwrap());
    let done = app.wait_for(&id, Duration::from_secs(300), |j| j["finished_at"].is_string()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let report: Value = app.get(&format!("/v1/jobs/{id}/report")).send().await.unwrap().json().await.unwrap();
    (id, report)
}

#[tokio::test]
async fn a_job_runs_the_engine_purification_end_to_end() {
    let app = spawn_app_with(&["--lease-secs", "30"], Arc::new(EngineRunner)).await;
    let (id, report) = run_to_report(&app, submission(quick_config())).await;
    assert_eq!(report["format"], "gcleaner.report/v1");
    assert_eq!(report["config"]["unlearn"]["epochs"], 2);
    assert!(report["verdict"]["summary"].is_string());
    assert!(report["input_sha256"].as_str().unwrap().len() == 64);
    let html = app.get(&format!("/v1/jobs/{id}/report.html")).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("<html") || html.contains("<!doctype") || html.contains("<!DOCTYPE"));

    let model = app.get(&format!("/v1/jobs/{id}/model")).send().await.unwrap().bytes().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("purified.safetensors");
    std::fs::write(&path, &model).unwrap();
    let spec = gcleaner_engine::models::weights::inspect(&path).expect("the purified model is a valid gcleaner model");
    assert_eq!(serde_json::to_value(&spec).unwrap()["hidden"], 16);
}

/// The same on an S3 bucket (a real S3-compatible server): the worker downloads the inputs,
/// uploads the purified model and reports, and the API streams them back.
#[tokio::test]
async fn a_job_runs_the_engine_purification_end_to_end_on_s3() {
    let s3 = crate::s3_server::S3Server::start().await;
    let mut args = s3.storage_args("purify");
    args.extend(["--lease-secs", "30"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = spawn_app_with(&args, Arc::new(EngineRunner)).await;
    let (id, report) = run_to_report(&app, submission(quick_config())).await;
    assert_eq!(report["format"], "gcleaner.report/v1");
    assert!(report["verdict"]["summary"].is_string());

    let r = app.get(&format!("/v1/jobs/{id}/model")).send().await.unwrap();
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let model = r.bytes().await.unwrap();
    assert_eq!(etag, format!("\"{}\"", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&model))));
    let r = app.get(&format!("/v1/jobs/{id}/model")).header("If-None-Match", &etag).send().await.unwrap();
    assert_eq!(r.status(), 304);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("purified.safetensors");
    std::fs::write(&path, &model).unwrap();
    gcleaner_engine::models::weights::inspect(&path).expect("the purified model is a valid gcleaner model");
    let keys = s3.keys(&format!("purify/jobs/{id}")).await;
    assert!(keys.contains(&format!("purify/jobs/{id}/attempt-1/purified.safetensors")), "{keys:?}");
}

/// Graphs from another dataset: three classes, none of them the two-class model's.
fn auxiliary_sample_json() -> Vec<u8> {
    let mut ds = gcleaner_engine::data::synthetic::generate(24, 8);
    for (i, g) in ds.graphs.iter_mut().enumerate() {
        g.label = i % 3;
    }
    ds.class_labels = vec![10, 11, 12];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aux.json");
    gcleaner_engine::data::json::write_json_dataset(&ds, &path).unwrap();
    std::fs::read(path).unwrap()
}

#[tokio::test]
async fn auxiliary_data_is_refused_unless_pseudo_labels_are_asked_for() {
    let app = spawn_app_with(&["--lease-secs", "30"], Arc::new(EngineRunner)).await;
    let form = |config: Value| {
        reqwest::multipart::Form::new()
            .part("model", part(model_bytes_for(&engine_spec()), "suspect.safetensors"))
            .part("data", part(auxiliary_sample_json(), "aux.json"))
            .part("config", part(config.to_string().into_bytes(), "config.json"))
    };
    let r = app.submit(form(quick_config())).await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "data_model_mismatch", "{body}");
    assert!(body["detail"].as_str().unwrap().contains("pseudo_labels"), "{body}");

    let mut config = quick_config();
    config["pseudo_labels"] = json!(true);
    let (_, report) = run_to_report(&app, form(config)).await;
    assert_eq!(report["config"]["pseudo_labels"], true);
    // Every graph now carries one of the model's two classes.
    let counts = report["sample"]["class_counts"].as_array().unwrap();
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert_eq!(counts.iter().map(|c| c.as_u64().unwrap()).sum::<u64>(), 24);
}

#[tokio::test]
async fn unknown_or_unbounded_purification_parameters_are_refused_at_submission() {
    let app = spawn_app_with(&["--workers", "0"], Arc::new(EngineRunner)).await;
    for config in [
        json!({ "unlearn": { "epoch": 2 } }),
        json!({ "recovery": { "epochs": 1_000_000 } }),
        // In bounds for its type, but meaningless: no evidence score reaches 2.
        json!({ "evidence_threshold": 2.0 }),
    ] {
        let r = app.submit(submission(config.clone())).await;
        assert_eq!(r.status(), 422);
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let problem = r.json::<Value>().await.unwrap();
        assert_eq!(problem["code"], "invalid_config");
        if config.get("evidence_threshold").is_some() {
            let detail = problem["detail"].as_str().unwrap_or_default();
            assert!(detail.contains("evidence_threshold must be in [0, 1]"), "{problem}");
        }
    }
    assert_eq!(app.count("SELECT count(*) FROM jobs").await, 0);
}

#[tokio::test]
async fn canceling_a_purification_stops_it_between_epochs() {
    let app = spawn_app_with(&["--lease-secs", "30"], Arc::new(EngineRunner)).await;
    let config = json!({ "force": true, "trigger_nodes": 3, "recovery": { "epochs": 1000, "restarts": 50 } });
    let r = app.submit(submission(config)).await;
    assert_eq!(r.status(), 202);
    let id = job_id(&r.json().await.unwrap());
    app.wait_for(&id, Duration::from_secs(120), |j| j["phase"] == "recovery" && j["progress"]["epoch"].as_i64() > Some(0)).await;
    app.post(&format!("/v1/jobs/{id}/cancel")).send().await.unwrap();
    let done = app.wait_for(&id, Duration::from_secs(60), |j| j["finished_at"].is_string()).await;
    assert_eq!(done["status"], "canceled", "{done}");
}

/// A small real attack (a few epochs on generated graphs): its backdoored model, its defender
/// sample, and its directory packed as the `eval` part, the way a user hands them over.
fn attack_upload() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    use gcleaner_engine::attacks::{run_attack, write_attack_dir, AttackConfig, AttackKind};
    let ds = gcleaner_engine::data::synthetic::generate(120, 5);
    let mut config = AttackConfig::new(AttackKind::Subgraph, gcleaner_engine::models::Arch::Gin);
    config.hidden = 16;
    config.num_layers = Some(2);
    config.train.epochs = 3;
    config.injection_ratio = 0.1;
    config.defender_fraction = 0.15;
    let outcome = run_attack(&ds, &config, &mut gcleaner_engine::progress::NoProgress).expect("attack");
    let dir = tempfile::tempdir().unwrap();
    write_attack_dir(&outcome, dir.path()).unwrap();
    let mut tgz = Vec::new();
    {
        let gz = flate2::write::GzEncoder::new(&mut tgz, flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        tar.append_dir_all("attack", dir.path()).unwrap();
        tar.into_inner().unwrap().finish().unwrap();
    }
    let read = |f: &str| std::fs::read(dir.path().join(f)).unwrap();
    (read("model.safetensors"), read("defender_clean.json"), tgz)
}

#[tokio::test]
async fn an_eval_archive_puts_the_true_attack_success_rate_in_the_report() {
    let (model, defender, eval) = attack_upload();
    let app = spawn_app_with(&["--lease-secs", "30"], Arc::new(EngineRunner)).await;
    let form = reqwest::multipart::Form::new()
        .part("model", part(model.clone(), "backdoored.safetensors"))
        .part("data", part(defender.clone(), "defender_clean.json"))
        .part("eval", part(eval, "attack.tgz"))
        .part("config", part(quick_config().to_string().into_bytes(), "config.json"));
    let (_, report) = run_to_report(&app, form).await;
    let attack = &report["attack"];
    for who in ["before", "after", "clean_model"] {
        let asr = attack[who]["asr"].as_f64().unwrap_or(-1.0);
        assert!((0.0..=1.0).contains(&asr), "{who}: {attack}");
        assert!(attack[who]["n_triggered"].as_u64() > Some(0), "{who}: {attack}");
    }

    // An archive that is not an attack directory is refused before a job exists.
    let mut bad = Vec::new();
    {
        let gz = flate2::write::GzEncoder::new(&mut bad, flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        let mut header = tar::Header::new_gnu();
        header.set_size(2);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "notes.json", &b"{}"[..]).unwrap();
        tar.into_inner().unwrap().finish().unwrap();
    }
    let form = reqwest::multipart::Form::new()
        .part("model", part(model, "backdoored.safetensors"))
        .part("data", part(defender, "defender_clean.json"))
        .part("eval", part(bad, "attack.tgz"));
    let r = app.submit(form).await;
    assert_eq!(r.status(), 422);
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["code"], "invalid_data", "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("attack.json"), "{problem}");
    assert_eq!(app.count("SELECT count(*) FROM jobs").await, 1);
}

/// A scan: recovery and the verdict only, small enough to finish in seconds.
fn scan_config() -> Value {
    json!({ "mode": "scan", "trigger_nodes": 3, "recovery": { "epochs": 2, "restarts": 1 }, "unlearn": { "positions": 2 } })
}

/// `/model` of a scan job: 409 problem+json with its own code, whatever the job's state.
async fn assert_scan_has_no_model(app: &TestApp, id: &str) {
    let r = app.get(&format!("/v1/jobs/{id}/model")).send().await.unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["code"], "scan_has_no_model", "{problem}");
    assert_eq!(problem["status"], 409);
    assert!(problem["detail"].as_str().unwrap().contains("scan"), "{problem}");
}

#[tokio::test]
async fn a_scan_job_succeeds_with_a_verdict_and_no_model() {
    let app = spawn_app_with(&["--lease-secs", "30"], Arc::new(EngineRunner)).await;
    let (id, report) = run_to_report(&app, submission(scan_config())).await;
    assert_eq!(report["config"]["mode"], "scan");
    let verdict = &report["verdict"];
    assert!(verdict["backdoor_evidence"].is_boolean() && verdict["evidence_score"].is_number(), "{verdict}");
    assert_eq!(verdict["model_changed"], false);
    assert!(verdict["summary"].as_str().unwrap().ends_with("scan only, nothing was unlearned"), "{verdict}");
    assert!(report["unlearning"].is_null());
    let html = app.get(&format!("/v1/jobs/{id}/report.html")).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("gcleaner scan report"));

    assert_eq!(app.job(&id).await["mode"], "scan");
    assert_scan_has_no_model(&app, &id).await;
    let models = app.count(&format!("SELECT count(*) FROM artifacts WHERE job_id = '{id}' AND kind = 'output_model'")).await;
    assert_eq!(models, 0);
}

#[tokio::test]
async fn a_scan_job_has_no_model_before_it_runs_and_cannot_be_forced() {
    let app = spawn_app_with(&["--workers", "0"], Arc::new(EngineRunner)).await;
    let r = app.submit(submission(scan_config())).await;
    assert_eq!(r.status(), 202);
    let job: Value = r.json().await.unwrap();
    assert_eq!((job["mode"].as_str(), job["status"].as_str()), (Some("scan"), Some("queued")));
    // Not job_not_succeeded ("not yet"): waiting would never bring a model.
    assert_scan_has_no_model(&app, &job_id(&job)).await;
    // A purification job says purify.
    let r = app.submit(submission(quick_config())).await;
    assert_eq!(r.json::<Value>().await.unwrap()["mode"], "purify");

    let mut forced = scan_config();
    forced["force"] = json!(true);
    let r = app.submit(submission(forced)).await;
    assert_eq!(r.status(), 422);
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["code"], "invalid_config");
    assert!(problem["detail"].as_str().unwrap().contains("force has no meaning with mode scan"), "{problem}");
    let r = app.submit(submission(json!({ "mode": "audit" }))).await;
    assert_eq!(r.status(), 422);
}
