//! Wiring: `Application::build` connects, migrates, binds (port 0 picks a free port, which tests
//! read back with [`Application::port`]) and prepares workers; `run_until_stopped` serves until
//! the shutdown token fires, then drains workers within the grace period.

use std::sync::Arc;

use anyhow::Context;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{ServeConfig, WorkerConfig};
use crate::http::rate_limit::RateLimiter;
use crate::http::{self, AppState};
use crate::metrics::HttpMetrics;
use crate::notify::Notifications;
use crate::queue::worker::{worker_id, Worker};
use crate::queue::JobRunner;
use crate::storage::ArtifactStore;

pub struct Application {
    port: u16,
    listener: TcpListener,
    router: axum::Router,
    pool: PgPool,
    workers: WorkerPool,
    shutdown: CancellationToken,
}

impl Application {
    pub async fn build(config: ServeConfig, runner: Arc<dyn JobRunner>) -> anyhow::Result<Application> {
        let shutdown = CancellationToken::new();
        let pool = crate::db::connect(&config.database)?;
        crate::db::migrate(&pool).await?;
        let store = crate::storage::open(&config.runtime.storage, &config.runtime.data_dir)?;
        tracing::info!(store = %store.location(), "artifact store");
        let listener =
            TcpListener::bind(config.api.bind).await.with_context(|| format!("cannot listen on {}", config.api.bind))?;
        let port = listener.local_addr()?.port();
        let notifications = Notifications::start(pool.clone(), shutdown.clone());

        let insecure_tenant = if config.api.insecure_no_auth {
            tracing::warn!("authentication is DISABLED (--insecure-no-auth): every request acts as tenant \"local\"");
            Some(crate::db::tokens::ensure_tenant(&pool, crate::db::tokens::LOCAL_TENANT).await?)
        } else {
            None
        };
        let limits = &config.api.limits;
        let job_cache = Arc::new(crate::job_cache::JobCache::new(std::time::Duration::from_millis(config.api.status_cache_ms)));
        notifications.attach_cache(job_cache.clone());
        let state = AppState {
            job_cache,
            pool: pool.clone(),
            store: store.clone(),
            api: Arc::new(config.api.clone()),
            queue: Arc::new(config.queue.clone()),
            notifications: notifications.clone(),
            metrics: Arc::new(HttpMetrics::default()),
            rate_limiter: Arc::new(RateLimiter::new(limits.rate_limit_per_sec, limits.rate_limit_burst)),
            insecure_tenant,
            runner: runner.clone(),
            shutdown: shutdown.clone(),
            auth_cache: Arc::new(crate::http::auth::AuthCache::new(std::time::Duration::from_secs_f64(
                config.api.auth_cache_secs.max(0.0),
            ))),
        };
        let workers = WorkerPool::new(config.worker_config(), pool.clone(), store, runner, notifications, shutdown.clone());
        Ok(Application { port, listener, router: http::router(state), pool, workers, shutdown })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Cancelling this token stops the server: no new connections or claims, running jobs get
    /// the grace period.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let workers = self.workers.start();
        let shutdown = self.shutdown.clone();
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .context("HTTP server failed")?;
        workers.join().await;
        Ok(())
    }
}

/// In-process or standalone workers plus the maintenance loop (reaper, retention, callbacks).
pub struct WorkerPool {
    config: WorkerConfig,
    pool: PgPool,
    store: Arc<dyn ArtifactStore>,
    runner: Arc<dyn JobRunner>,
    notifications: Arc<Notifications>,
    shutdown: CancellationToken,
}

pub struct RunningWorkers {
    handles: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    pub fn new(
        config: WorkerConfig,
        pool: PgPool,
        store: Arc<dyn ArtifactStore>,
        runner: Arc<dyn JobRunner>,
        notifications: Arc<Notifications>,
        shutdown: CancellationToken,
    ) -> WorkerPool {
        WorkerPool { config, pool, store, runner, notifications, shutdown }
    }

    /// For `gcleaner worker`: connects, checks the schema and opens the store.
    pub async fn connect(config: WorkerConfig, runner: Arc<dyn JobRunner>) -> anyhow::Result<WorkerPool> {
        let shutdown = CancellationToken::new();
        let pool = crate::db::connect(&config.database)?;
        if !crate::db::migrations_applied(&pool).await? {
            anyhow::bail!("the database schema is not migrated; run gcleaner migrate (or gcleaner serve) first");
        }
        let store = crate::storage::open(&config.runtime.storage, &config.runtime.data_dir)?;
        tracing::info!(store = %store.location(), "artifact store");
        let notifications = Notifications::start(pool.clone(), shutdown.clone());
        Ok(WorkerPool::new(config, pool, store, runner, notifications, shutdown))
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub fn start(&self) -> RunningWorkers {
        let mut handles = Vec::new();
        for index in 0..self.config.workers {
            let worker = Worker {
                id: worker_id(index),
                pool: self.pool.clone(),
                store: self.store.clone(),
                runner: self.runner.clone(),
                notifications: self.notifications.clone(),
                queue: self.config.queue.clone(),
                device: self.config.runtime.device.clone(),
                shutdown: self.shutdown.clone(),
            };
            handles.push(tokio::spawn(worker.run()));
        }
        handles.push(tokio::spawn(crate::queue::reaper::run_maintenance(
            self.pool.clone(),
            self.store.clone(),
            self.config.queue.clone(),
            self.shutdown.clone(),
        )));
        RunningWorkers { handles }
    }
}

impl RunningWorkers {
    /// Waits for every worker to stop (after shutdown, within the grace period plus the time
    /// a runner takes to reach its next epoch boundary).
    pub async fn join(self) {
        for handle in self.handles {
            if let Err(err) = handle.await {
                tracing::error!(error = %err, "worker task failed");
            }
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("shutdown signal received: no new requests or claims; finishing running jobs");
}
