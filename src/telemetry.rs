//! Tracing setup, split into building a subscriber and installing it so tests can send logs to
//! a sink of their choice (or nowhere), and `spawn_blocking` that keeps the caller's span.

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Registry};

use crate::config::LogFormat;

/// A subscriber writing to `sink`, filtered by `RUST_LOG` or else `default_filter`.
pub fn build_subscriber<Sink>(
    default_filter: &str,
    format: LogFormat,
    sink: Sink,
) -> Box<dyn Subscriber + Send + Sync>
where
    Sink: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let registry = Registry::default().with(filter);
    match format {
        LogFormat::Json => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(sink),
            ),
        ),
        LogFormat::Text => Box::new(
            registry.with(tracing_subscriber::fmt::layer().with_target(true).with_writer(sink)),
        ),
    }
}

/// Installs `subscriber` as the process-wide default. Fails if one is already set.
pub fn init_subscriber(subscriber: Box<dyn Subscriber + Send + Sync>) -> anyhow::Result<()> {
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|e| anyhow::anyhow!("could not install the log subscriber: {e}"))
}

/// Logs to stderr in `format`, at info unless `RUST_LOG` says otherwise.
pub fn init_stderr(format: LogFormat) -> anyhow::Result<()> {
    init_subscriber(build_subscriber("info,sqlx=warn,tower_http=info", format, std::io::stderr))
}

/// `tokio::task::spawn_blocking` that runs `f` inside the caller's current span, so log lines
/// from the blocking thread (the engine) keep the job id and request context.
pub fn spawn_blocking_with_tracing<F, R>(f: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
}
