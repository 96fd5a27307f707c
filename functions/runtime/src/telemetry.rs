//! Structured JSON logs on stdout (Loki-ready), filtered by `RUST_LOG`
//! (default `info`). `LOG_FORMAT=text` gives human-readable lines instead.

use tracing_subscriber::EnvFilter;

pub fn init(function: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let text =
        std::env::var(crate::config::LOG_FORMAT.name).is_ok_and(|v| v.eq_ignore_ascii_case("text"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let result = if text {
        builder.with_target(false).try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    };
    if result.is_ok() {
        tracing::debug!(function, "logging initialised");
    }
}
