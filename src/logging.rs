//! JSON log lines for CloudWatch, one object per line.

use tracing::{Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{LevelFilter, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Layer, SubscriberExt};

/// Targets whose TRACE events carry whole payloads: lambda_runtime writes each raw event
/// there (its headers hold the caller's `Authorization`, its body phone numbers and
/// emails). They are never written, whatever the level or `RUST_LOG` asks.
const PAYLOAD_TARGETS: [&str; 1] = ["lambda_runtime::layers::api_response"];

/// False for the events no level may write (see [`PAYLOAD_TARGETS`]).
fn writable(metadata: &tracing::Metadata<'_>) -> bool {
    !(*metadata.level() == Level::TRACE
        && PAYLOAD_TARGETS
            .iter()
            .any(|target| metadata.target().starts_with(target)))
}

/// The level filter, as lambda_runtime's own subscriber chooses it: `AWS_LAMBDA_LOG_LEVEL`
/// (set by Lambda's advanced logging controls), else `RUST_LOG`, else INFO.
pub fn filter(aws_lambda_log_level: Option<&str>, rust_log: Option<&str>) -> EnvFilter {
    // Lambda's levels are upper case; RUST_LOG directives keep their case (targets).
    let directives = match aws_lambda_log_level.map(str::trim) {
        // Lambda's FATAL has no tracing equivalent; ERROR is the closest.
        Some(level) if level.eq_ignore_ascii_case("fatal") => "error".to_owned(),
        Some(level) if !level.is_empty() => level.to_ascii_lowercase(),
        _ => rust_log.unwrap_or("").to_owned(),
    };
    EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse_lossy(directives)
}

/// A JSON subscriber writing to `writer`: event fields at the top level, no span lists,
/// never a payload (see [`PAYLOAD_TARGETS`]).
pub fn subscriber<W>(filter: EnvFilter, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let json_lines = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_ansi(false)
        .with_writer(writer)
        .with_filter(filter)
        .with_filter(filter_fn(writable));
    tracing_subscriber::registry().with(json_lines)
}

/// Installs the process-wide subscriber writing to stdout.
pub fn init() {
    let aws = std::env::var("AWS_LAMBDA_LOG_LEVEL").ok();
    let rust_log = std::env::var("RUST_LOG").ok();
    let subscriber = subscriber(filter(aws.as_deref(), rust_log.as_deref()), std::io::stdout);
    // Only fails when a subscriber is already set, which is harmless.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_precedence() {
        let max = |aws, rust| filter(aws, rust).max_level_hint();
        assert_eq!(max(None, None), Some(LevelFilter::INFO));
        assert_eq!(max(Some("DEBUG"), Some("error")), Some(LevelFilter::DEBUG));
        assert_eq!(max(Some("FATAL"), None), Some(LevelFilter::ERROR));
        assert_eq!(max(None, Some("warn")), Some(LevelFilter::WARN));
        assert_eq!(max(Some(""), Some("trace")), Some(LevelFilter::TRACE));
    }

    #[test]
    fn payload_events_are_never_written() {
        let capture = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = capture.clone();
        let writer = move || Sink(sink.clone());
        let subscriber = subscriber(filter(Some("TRACE"), Some("trace")), writer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "lambda_runtime::layers::api_response", body = "+15554151337", "raw JSON event received from Lambda");
            tracing::debug!(target: "lambda_runtime::layers::api_response", "kept");
            tracing::trace!(target: "okta_resend::handler", "kept too");
        });
        let written = String::from_utf8(capture.lock().unwrap().clone()).unwrap();
        assert!(!written.contains("5554151337"), "{written}");
        assert_eq!(written.lines().count(), 2, "{written}");
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
