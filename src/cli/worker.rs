//! `gcleaner worker`: a worker process with no HTTP API, against the same database and storage
//! as the servers. Scaling out is starting more of these.

use std::sync::Arc;

use gcleaner::app::{shutdown_signal, WorkerPool};
use gcleaner::config::WorkerConfig;
use gcleaner::queue::engine_runner::EngineRunner;

pub fn run(config: WorkerConfig) -> anyhow::Result<()> {
    gcleaner::telemetry::init_stderr(config.runtime.log_format)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let pool = WorkerPool::connect(config.clone(), Arc::new(EngineRunner)).await?;
        let shutdown = pool.shutdown_token();
        let running = pool.start();
        tracing::info!(workers = config.workers, "gcleaner worker running");
        shutdown_signal().await;
        shutdown.cancel();
        running.join().await;
        Ok::<_, anyhow::Error>(())
    })?;
    tracing::info!("stopped");
    Ok(())
}
