//! `gcleaner serve`: the HTTP API plus in-process workers.

use std::sync::Arc;

use gcleaner::app::{shutdown_signal, Application};
use gcleaner::config::ServeConfig;
use gcleaner::queue::engine_runner::EngineRunner;

pub fn run(config: ServeConfig) -> anyhow::Result<()> {
    gcleaner::telemetry::init_stderr(config.runtime.log_format)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let app = Application::build(config.clone(), Arc::new(EngineRunner)).await?;
        let shutdown = app.shutdown_token();
        tokio::spawn(async move {
            shutdown_signal().await;
            shutdown.cancel();
        });
        let address = format!("http://{}:{}", config.api.bind.ip(), app.port());
        tracing::info!(%address, workers = config.workers, "gcleaner serving");
        app.run_until_stopped().await
    })?;
    tracing::info!("stopped");
    Ok(())
}
