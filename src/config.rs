//! Service configuration: every setting is a flag with an environment variable beside it, so
//! `gcleaner serve --help` documents them all, and tests build the same structs from argument
//! lists (identical defaults to production).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};

const MIB: u64 = 1024 * 1024;

/// Where the database is. Shared by `serve`, `worker`, `migrate` and `token`.
#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// PostgreSQL connection URL, e.g. postgres://user@127.0.0.1:5432/gcleaner.
    #[arg(long, env = "GCLEANER_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Largest number of pooled database connections per process.
    #[arg(long, env = "GCLEANER_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
}

impl DatabaseConfig {
    pub fn url(&self) -> anyhow::Result<&str> {
        self.database_url
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("no database configured: set GCLEANER_DATABASE_URL or pass --database-url"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logging, artifacts and the compute device: what every long-running process needs.
#[derive(Debug, Clone, Args)]
pub struct RuntimeConfig {
    /// Directory for artifacts (uploads, purified models, reports) and upload staging. With an
    /// s3:// storage URL it holds only this process's staging and work files.
    #[arg(long, env = "GCLEANER_DATA_DIR", default_value = "gcleaner-data")]
    pub data_dir: PathBuf,

    #[command(flatten)]
    pub storage: StorageConfig,

    /// Device the engine runs on: cpu, cuda or cuda:N.
    #[arg(long, env = "GCLEANER_DEVICE", default_value = "cpu")]
    pub device: String,

    /// Log line format.
    #[arg(long, env = "GCLEANER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Where artifacts are kept. The S3 settings read the standard AWS variables, so a deployment
/// configures them as it would any AWS client; other `AWS_*` variables (session token, web
/// identity) are read by the S3 client itself.
#[derive(Debug, Clone, Args)]
pub struct StorageConfig {
    /// Artifact store: file:///path (a local directory) or s3://bucket/prefix (an S3-compatible
    /// bucket). Unset: the data directory.
    #[arg(long, env = "GCLEANER_STORAGE_URL")]
    pub storage_url: Option<String>,

    /// S3 endpoint for servers other than AWS (MinIO, Garage), e.g. http://minio:9000; an http://
    /// endpoint is allowed and addressed path-style.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub storage_endpoint: Option<String>,

    /// S3 region (us-east-1 when unset).
    #[arg(long, env = "AWS_REGION")]
    pub storage_region: Option<String>,

    /// S3 access key id.
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    pub storage_access_key_id: Option<String>,

    /// S3 secret access key (prefer the environment variable to the flag).
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub storage_secret_access_key: Option<String>,
}

/// How workers lease, retry and hand back jobs.
#[derive(Debug, Clone, Args)]
pub struct QueueConfig {
    /// Seconds a claimed job stays leased without a heartbeat before another worker may take it.
    #[arg(long, env = "GCLEANER_LEASE_SECS", default_value_t = 60.0)]
    pub lease_secs: f64,

    /// Seconds between lease heartbeats (must be well below the lease).
    #[arg(long, env = "GCLEANER_HEARTBEAT_SECS", default_value_t = 10.0)]
    pub heartbeat_secs: f64,

    /// Tries per job before it fails for good (transient errors and expired leases count).
    #[arg(long, env = "GCLEANER_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: i32,

    /// First retry delay in seconds; doubles with every attempt, with jitter.
    #[arg(long, env = "GCLEANER_RETRY_BASE_SECS", default_value_t = 10.0)]
    pub retry_base_secs: f64,

    /// Seconds an idle worker waits between polls when no notification arrives.
    #[arg(long, env = "GCLEANER_POLL_SECS", default_value_t = 5.0)]
    pub poll_secs: f64,

    /// Seconds between sweeps for expired leases, due callbacks and retention.
    #[arg(long, env = "GCLEANER_REAPER_SECS", default_value_t = 5.0)]
    pub reaper_secs: f64,

    /// On SIGTERM, seconds a running job may take to finish before it is stopped and released.
    #[arg(long, env = "GCLEANER_SHUTDOWN_GRACE_SECS", default_value_t = 30.0)]
    pub shutdown_grace_secs: f64,

    /// Days finished jobs and their artifacts are kept (0 keeps them forever).
    #[arg(long, env = "GCLEANER_RETENTION_DAYS", default_value_t = 30)]
    pub retention_days: u32,

    /// Secret used to sign completion callbacks (HMAC-SHA256); callbacks are unsigned without it.
    #[arg(long, env = "GCLEANER_CALLBACK_SECRET", hide_env_values = true)]
    pub callback_secret: Option<String>,

    /// Hosts that completion callbacks may be sent to (comma-separated, exact host names).
    #[arg(long, env = "GCLEANER_CALLBACK_ALLOWED_HOSTS", value_delimiter = ',')]
    pub callback_allowed_hosts: Vec<String>,

    /// Deliveries per callback before it is given up.
    #[arg(long, env = "GCLEANER_CALLBACK_MAX_ATTEMPTS", default_value_t = 8)]
    pub callback_max_attempts: i32,
}

impl QueueConfig {
    pub fn lease(&self) -> Duration {
        Duration::from_secs_f64(self.lease_secs)
    }
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs_f64(self.heartbeat_secs)
    }
    pub fn poll(&self) -> Duration {
        Duration::from_secs_f64(self.poll_secs)
    }
    pub fn reaper_interval(&self) -> Duration {
        Duration::from_secs_f64(self.reaper_secs)
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs_f64(self.shutdown_grace_secs)
    }
}

/// What uploads may contain. Everything beyond a limit is refused with a 4xx before queuing.
#[derive(Debug, Clone, Args)]
pub struct LimitsConfig {
    /// Largest model upload in bytes.
    #[arg(long, env = "GCLEANER_MAX_MODEL_BYTES", default_value_t = 512 * MIB)]
    pub max_model_bytes: u64,

    /// Largest data (and eval) upload in bytes.
    #[arg(long, env = "GCLEANER_MAX_DATA_BYTES", default_value_t = 64 * MIB)]
    pub max_data_bytes: u64,

    /// Largest total unpacked size of a data archive in bytes.
    #[arg(long, env = "GCLEANER_MAX_UNPACKED_BYTES", default_value_t = 64 * MIB)]
    pub max_unpacked_bytes: u64,

    /// Largest number of entries in a data archive.
    #[arg(long, env = "GCLEANER_MAX_ARCHIVE_ENTRIES", default_value_t = 1000)]
    pub max_archive_entries: usize,

    /// Largest number of graphs in a data upload.
    #[arg(long, env = "GCLEANER_MAX_GRAPHS", default_value_t = 100_000)]
    pub max_graphs: usize,

    /// Largest number of nodes in one graph.
    #[arg(long, env = "GCLEANER_MAX_NODES_PER_GRAPH", default_value_t = 20_000)]
    pub max_nodes_per_graph: usize,

    /// Largest hidden width a model spec may declare.
    #[arg(long, env = "GCLEANER_MAX_HIDDEN", default_value_t = 4096)]
    pub max_hidden: usize,

    /// Largest number of layers a model spec may declare.
    #[arg(long, env = "GCLEANER_MAX_LAYERS", default_value_t = 16)]
    pub max_layers: usize,

    /// Largest input feature width a model spec may declare.
    #[arg(long, env = "GCLEANER_MAX_IN_FEATURES", default_value_t = 100_000)]
    pub max_in_features: usize,

    /// Largest config part in bytes.
    #[arg(long, env = "GCLEANER_MAX_CONFIG_BYTES", default_value_t = 64 * 1024)]
    pub max_config_bytes: u64,

    /// Sustained requests per second allowed per API token.
    #[arg(long, env = "GCLEANER_RATE_LIMIT_PER_SEC", default_value_t = 100.0)]
    pub rate_limit_per_sec: f64,

    /// Burst of requests allowed per API token above the sustained rate.
    #[arg(long, env = "GCLEANER_RATE_LIMIT_BURST", default_value_t = 200.0)]
    pub rate_limit_burst: f64,
}

/// The HTTP side of `gcleaner serve`.
#[derive(Debug, Clone, Args)]
pub struct ApiConfig {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "GCLEANER_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Serve without API tokens: every request acts as the tenant "local". Never on a shared host.
    #[arg(long, env = "GCLEANER_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,

    /// Seconds a verified token is trusted without asking the database again (a disabled
    /// token stops working within this time; 0 checks every request).
    #[arg(long, env = "GCLEANER_AUTH_CACHE_SECS", default_value_t = 5.0)]
    pub auth_cache_secs: f64,

    /// Milliseconds a job's status may be answered from memory. Changes announced by the
    /// database (state, phase, progress, attempt, cancel request, error) drop it at once; the
    /// rest (updated_at) can lag this long. 0 reads the database on every request.
    #[arg(long, env = "GCLEANER_STATUS_CACHE_MS", default_value_t = 1000)]
    pub status_cache_ms: u64,

    #[command(flatten)]
    pub limits: LimitsConfig,
}

/// Settings of `gcleaner serve`: the API plus in-process workers.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub runtime: RuntimeConfig,
    #[command(flatten)]
    pub api: ApiConfig,
    #[command(flatten)]
    pub queue: QueueConfig,
    /// Workers started inside this process (0 = API only; run `gcleaner worker` elsewhere).
    #[arg(long, env = "GCLEANER_WORKERS", default_value_t = 1)]
    pub workers: usize,
}

/// Settings of `gcleaner worker`: a worker process with no HTTP API.
#[derive(Debug, Clone, Args)]
pub struct WorkerConfig {
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub runtime: RuntimeConfig,
    #[command(flatten)]
    pub queue: QueueConfig,
    /// Jobs this process runs at once.
    #[arg(long, env = "GCLEANER_WORKERS", default_value_t = 1)]
    pub workers: usize,
}

#[derive(Parser)]
#[command(args_override_self = true)]
struct ParseServe {
    #[command(flatten)]
    config: ServeConfig,
}

#[derive(Parser)]
#[command(args_override_self = true)]
struct ParseWorker {
    #[command(flatten)]
    config: WorkerConfig,
}

impl ServeConfig {
    /// Parses flags as `gcleaner serve` would (environment variables apply too).
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args = std::iter::once("serve".into()).chain(args.into_iter().map(Into::into));
        ParseServe::try_parse_from(args).map(|p| p.config)
    }

    /// The worker-side settings of this server, for its in-process workers.
    pub fn worker_config(&self) -> WorkerConfig {
        WorkerConfig {
            database: self.database.clone(),
            runtime: self.runtime.clone(),
            queue: self.queue.clone(),
            workers: self.workers,
        }
    }
}

impl WorkerConfig {
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args = std::iter::once("worker".into()).chain(args.into_iter().map(Into::into));
        ParseWorker::try_parse_from(args).map(|p| p.config)
    }
}
