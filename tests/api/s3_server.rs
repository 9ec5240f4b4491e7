//! A real S3-compatible server for the tests: moto's standalone server (`moto_server`, installed
//! into the project venv by `make setup`) on a free loopback port, one per test, killed on drop.
//! Tests reach it exactly as a deployment reaches a bucket: an http:// endpoint, path-style,
//! with credentials.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::ObjectStore;

pub const BUCKET: &str = "gcleaner-test";
const ACCESS_KEY: &str = "gcleaner-test-key";
const SECRET_KEY: &str = "gcleaner-test-secret";

pub struct S3Server {
    child: Option<Child>,
    pub port: u16,
}

fn moto_server_command() -> Command {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    let program = if venv.is_file() { venv } else { "moto_server".into() };
    Command::new(program)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().unwrap().port()
}

impl S3Server {
    /// Starts a server and creates the test bucket.
    pub async fn start() -> S3Server {
        for _ in 0..3 {
            if let Some(server) = Self::start_on(free_port()).await {
                server.create_bucket().await;
                return server;
            }
        }
        panic!("moto_server did not start on any of three ports");
    }

    /// Starts a server on `port` (empty: a restarted server has lost every object); `None` when
    /// it exits at once (the port was taken).
    pub async fn start_on(port: u16) -> Option<S3Server> {
        let child = moto_server_command()
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if std::env::var("TEST_LOG").is_ok() { Stdio::inherit() } else { Stdio::null() })
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run moto_server ({e}); `make setup` installs it into .venv"));
        let mut server = S3Server { child: Some(child), port };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if client.get(server.endpoint()).send().await.is_ok_and(|r| r.status().is_success()) {
                return Some(server);
            }
            if let Some(child) = server.child.as_mut() {
                if child.try_wait().unwrap().is_some() {
                    server.child = None;
                    return None;
                }
            }
            assert!(Instant::now() < deadline, "moto_server did not answer on port {port} within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// moto accepts any signature, so a plain request creates the bucket.
    pub async fn create_bucket(&self) {
        let r = reqwest::Client::new().put(format!("{}/{BUCKET}", self.endpoint())).send().await.unwrap();
        assert!(r.status().is_success(), "create bucket: {}", r.status());
    }

    /// The service's flags for this bucket under `prefix`.
    pub fn storage_args(&self, prefix: &str) -> Vec<String> {
        [
            "--storage-url",
            &format!("s3://{BUCKET}/{prefix}"),
            "--storage-endpoint",
            &self.endpoint(),
            "--storage-region",
            "us-east-1",
            "--storage-access-key-id",
            ACCESS_KEY,
            "--storage-secret-access-key",
            SECRET_KEY,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// The same settings as a configuration struct.
    pub fn storage_config(&self, prefix: &str) -> gcleaner::config::StorageConfig {
        gcleaner::config::StorageConfig {
            storage_url: Some(format!("s3://{BUCKET}/{prefix}")),
            storage_endpoint: Some(self.endpoint()),
            storage_region: Some("us-east-1".into()),
            storage_access_key_id: Some(ACCESS_KEY.into()),
            storage_secret_access_key: Some(SECRET_KEY.into()),
        }
    }

    /// A client of its own, independent of the service's store, to look into the bucket.
    pub fn client(&self) -> impl ObjectStore {
        AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_bucket_name(BUCKET)
            .with_region("us-east-1")
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .build()
            .unwrap()
    }

    /// Every key in the bucket under `prefix`, sorted.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let prefix = object_store::path::Path::from(prefix);
        let mut keys: Vec<String> =
            self.client().list(Some(&prefix)).map_ok(|m| m.location.to_string()).try_collect().await.unwrap();
        keys.sort();
        keys
    }

    /// SIGKILL: the store is gone at once, as when its host dies.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}
