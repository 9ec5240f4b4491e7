//! Test harness: a fresh database per test, the app on port 0 with a scripted runner, an API
//! token, and fixtures (a safetensors model with an embedded spec, a JSON graph dataset).

use std::path::PathBuf;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use gcleaner::app::Application;
use gcleaner::config::ServeConfig;
use gcleaner::db::jobs::JobRow;
use gcleaner::queue::JobRunner;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::runner::ScriptedRunner;

pub fn admin_url() -> String {
    std::env::var("GCLEANER_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn with_database(url: &str, db: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("valid admin URL");
    parsed.set_path(&format!("/{db}"));
    parsed.to_string()
}

static TELEMETRY: Once = Once::new();

/// Logs go nowhere unless TEST_LOG is set.
pub fn init_telemetry() {
    TELEMETRY.call_once(|| {
        let format = gcleaner::config::LogFormat::Text;
        let subscriber = if std::env::var("TEST_LOG").is_ok() {
            gcleaner::telemetry::build_subscriber("info,sqlx=warn", format, std::io::stderr)
        } else {
            gcleaner::telemetry::build_subscriber("off", format, std::io::sink)
        };
        let _ = gcleaner::telemetry::init_subscriber(subscriber);
    });
}

/// A database created for one test and dropped (forcibly) when this value is dropped.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    admin: String,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        Self::create_on(&admin_url()).await
    }

    pub async fn create_on(admin: &str) -> TestDatabase {
        let name = format!("gcleaner_test_{}", Uuid::new_v4().simple());
        let pool = PgPool::connect(admin).await.expect("connect to the test PostgreSQL (is it running?)");
        sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&pool).await.expect("create test database");
        pool.close().await;
        TestDatabase { url: with_database(admin, &name), name, admin: admin.to_string() }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                if let Ok(pool) = PgPool::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&pool).await;
                    pool.close().await;
                }
            })
        })
        .join();
    }
}

pub struct TestApp {
    pub address: String,
    pub pool: PgPool,
    pub token: String,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    pub shutdown: CancellationToken,
    pub server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _data: tempfile::TempDir,
    pub db: TestDatabase,
}

/// Queue settings short enough for tests to see leases expire and retries happen.
pub fn fast_queue_args() -> Vec<String> {
    [
        "--lease-secs",
        "2",
        "--heartbeat-secs",
        "0.3",
        "--poll-secs",
        "0.5",
        "--reaper-secs",
        "0.3",
        "--retry-base-secs",
        "0.2",
        "--shutdown-grace-secs",
        "5",
        "--callback-allowed-hosts",
        "127.0.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[], Arc::new(ScriptedRunner)).await
}

pub async fn spawn_app_with(extra: &[&str], runner: Arc<dyn JobRunner>) -> TestApp {
    let db = TestDatabase::create().await;
    spawn_app_on(db, extra, runner).await
}

pub async fn spawn_app_on(db: TestDatabase, extra: &[&str], runner: Arc<dyn JobRunner>) -> TestApp {
    init_telemetry();
    let data = tempfile::tempdir().unwrap();
    let mut args = vec![
        "--database-url".to_string(),
        db.url.clone(),
        "--data-dir".to_string(),
        data.path().display().to_string(),
        "--bind".to_string(),
        "127.0.0.1:0".to_string(),
    ];
    args.extend(fast_queue_args());
    args.extend(["--rate-limit-per-sec", "10000", "--rate-limit-burst", "10000", "--auth-cache-secs", "0"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    let config = ServeConfig::from_args(args).expect("test configuration parses");
    let app = Application::build(config, runner).await.expect("application builds");
    let port = app.port();
    let pool = app.pool().clone();
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());
    let token = gcleaner::db::tokens::create_token(&pool, "tenant-a", "test").await.unwrap().secret;
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        pool,
        token,
        client: reqwest::Client::new(),
        data_dir: data.path().to_path_buf(),
        shutdown,
        server: Some(server),
        _data: data,
        db,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(&self.token)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path)).bearer_auth(&self.token)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.delete(self.url(path)).bearer_auth(&self.token)
    }

    /// A token for another tenant.
    pub async fn other_tenant_token(&self) -> String {
        gcleaner::db::tokens::create_token(&self.pool, "tenant-b", "other").await.unwrap().secret
    }

    pub async fn submit(&self, form: reqwest::multipart::Form) -> reqwest::Response {
        self.post("/v1/jobs").multipart(form).send().await.unwrap()
    }

    /// Submits a valid job whose scripted runner takes `epochs` x `epoch_ms`.
    pub async fn submit_job(&self, script: Value) -> Value {
        let response = self.submit(job_form(json!({ "test": script }))).await;
        assert_eq!(response.status(), 202, "submission accepted: {:?}", response.text().await);
        response.json().await.unwrap()
    }

    pub async fn job(&self, id: &str) -> Value {
        let response = self.get(&format!("/v1/jobs/{id}")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub async fn job_row(&self, id: &str) -> JobRow {
        gcleaner::db::jobs::get(&self.pool, id.parse().unwrap()).await.unwrap().expect("job row exists")
    }

    /// Polls until the job's status satisfies `done`; panics after `timeout`.
    pub async fn wait_for(&self, id: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let job = self.job(id).await;
            if done(&job) {
                return job;
            }
            assert!(Instant::now() < deadline, "timed out waiting; last state {job}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        self.wait_for(id, timeout, |j| j["status"] == status).await
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }

    /// Files under the data directory (staging and objects), recursively.
    pub fn files_on_disk(&self) -> Vec<PathBuf> {
        fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        walk(&p, out);
                    } else {
                        out.push(p);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.data_dir, &mut out);
        out
    }
}

pub fn spec_json() -> Value {
    json!({
        "format": "gcleaner.model/v1", "arch": "gin", "in_features": 4, "hidden": 8, "num_classes": 2,
        "num_layers": 2, "pooling": "sum", "features": { "kind": "one_hot_degree", "max_degree": 3 }
    })
}

/// A safetensors file with the given metadata spec (if any) and f32 tensors.
pub fn safetensors_bytes(spec: Option<&Value>, tensors: &[(&str, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    if let Some(spec) = spec {
        header.insert("__metadata__".into(), json!({ "gcleaner.spec": spec.to_string() }));
    }
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let start = data.len();
        for v in values {
            data.extend_from_slice(&v.to_le_bytes());
        }
        header.insert(name.to_string(), json!({ "dtype": "F32", "shape": shape, "data_offsets": [start, data.len()] }));
    }
    let mut header = serde_json::to_vec(&Value::Object(header)).unwrap();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(&data);
    out
}

/// A real (untrained) model of `spec`, saved by the engine.
pub fn model_bytes_for(spec: &Value) -> Vec<u8> {
    let spec: gcleaner_engine::models::ModelSpec = serde_json::from_value(spec.clone()).expect("valid spec");
    let model = gcleaner_engine::models::GnnModel::new(spec, tch::Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    model.save(&path).unwrap();
    std::fs::read(path).unwrap()
}

pub fn model_bytes() -> Vec<u8> {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| model_bytes_for(&spec_json())).clone()
}

/// Splits a safetensors file into (header JSON, data).
pub fn split_safetensors(bytes: &[u8]) -> (Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + n]).unwrap(), bytes[8 + n..].to_vec())
}

pub fn join_safetensors(header: &Value, data: &[u8]) -> Vec<u8> {
    let mut header = serde_json::to_vec(header).unwrap();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    out
}

pub fn dataset_json(graphs: usize) -> Value {
    let graphs: Vec<Value> =
        (0..graphs).map(|i| json!({ "num_nodes": 3 + i % 3, "edges": [[0, 1], [1, 2]], "label": (i % 2) as i64 })).collect();
    json!({ "format": "gcleaner.graphs/v1", "graphs": graphs })
}

pub fn part(bytes: Vec<u8>, file_name: &str) -> reqwest::multipart::Part {
    reqwest::multipart::Part::bytes(bytes).file_name(file_name.to_string())
}

/// A valid submission with `config`.
pub fn job_form(config: Value) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new()
        .part("model", part(model_bytes(), "model.safetensors"))
        .part("data", part(dataset_json(6).to_string().into_bytes(), "data.json"))
        .part("config", part(config.to_string().into_bytes(), "config.json"))
}

pub fn job_id(job: &Value) -> String {
    job["id"].as_str().expect("job has an id").to_string()
}
