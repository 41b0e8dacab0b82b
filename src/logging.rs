//! JSON log lines for CloudWatch, one object per line.

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;

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

/// A JSON subscriber writing to `writer`: event fields at the top level, no span lists.
pub fn subscriber<W>(filter: EnvFilter, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_ansi(false)
        .with_env_filter(filter)
        .with_writer(writer)
        .finish()
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
}
