//! Tracing setup, split into building a subscriber and installing it so tests can send logs to
//! a sink of their choice (or nowhere), and `spawn_blocking` that keeps the caller's span.
//!
//! Text logs are coloured only when they go to a terminal: a file, a pipe or a log collector
//! gets plain lines without ANSI escape codes.

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Registry};

use crate::config::LogFormat;

/// A subscriber writing to `sink` without colours, filtered by `RUST_LOG` or else
/// `default_filter`.
pub fn build_subscriber<Sink>(default_filter: &str, format: LogFormat, sink: Sink) -> Box<dyn Subscriber + Send + Sync>
where
    Sink: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    build_subscriber_with_colour(default_filter, format, sink, false)
}

/// [`build_subscriber`] with ANSI colours in text logs when `colour` is true; pass whether the
/// sink is a terminal.
pub fn build_subscriber_with_colour<Sink>(
    default_filter: &str,
    format: LogFormat,
    sink: Sink,
    colour: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    Sink: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let registry = Registry::default().with(filter);
    match format {
        LogFormat::Json => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_ansi(false)
                    .with_writer(sink),
            ),
        ),
        LogFormat::Text => {
            Box::new(registry.with(tracing_subscriber::fmt::layer().with_target(true).with_ansi(colour).with_writer(sink)))
        }
    }
}

/// Installs `subscriber` as the process-wide default. Fails if one is already set.
pub fn init_subscriber(subscriber: Box<dyn Subscriber + Send + Sync>) -> anyhow::Result<()> {
    tracing::subscriber::set_global_default(subscriber).map_err(|e| anyhow::anyhow!("could not install the log subscriber: {e}"))
}

/// Logs to stderr in `format`, at info unless `RUST_LOG` says otherwise; coloured only when
/// stderr is a terminal (and `NO_COLOR` is unset).
pub fn init_stderr(format: LogFormat) -> anyhow::Result<()> {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let colour = std::io::stderr().is_terminal() && !no_color;
    init_subscriber(build_subscriber_with_colour("info,sqlx=warn,tower_http=info", format, std::io::stderr, colour))
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

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn captured(format: LogFormat, colour: Option<bool>) -> String {
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let make = move || sink.clone();
        let subscriber = match colour {
            None => build_subscriber("info", format, make),
            Some(colour) => build_subscriber_with_colour("info", format, make, colour),
        };
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("job", id = 7);
            let _entered = span.enter();
            tracing::warn!(attempt = 2, "lease lost");
            tracing::info!("finished");
        });
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn text_logs_have_no_escape_codes_unless_colour_is_asked_for() {
        for colour in [None, Some(false)] {
            let text = captured(LogFormat::Text, colour);
            assert!(text.contains("lease lost") && text.contains("finished"), "{text}");
            assert!(!text.contains('\x1b'), "escape codes in plain logs: {text:?}");
        }
        // The check above would see colours if the layer wrote them.
        assert!(captured(LogFormat::Text, Some(true)).contains('\x1b'));
    }

    #[test]
    fn json_logs_never_have_escape_codes() {
        let text = captured(LogFormat::Json, Some(true));
        assert!(text.contains("lease lost"), "{text}");
        assert!(!text.contains('\x1b'), "escape codes in JSON logs: {text:?}");
        for line in text.lines() {
            serde_json::from_str::<serde_json::Value>(line).expect("one JSON object per line");
        }
    }
}
