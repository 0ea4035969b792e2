//! Tracing set-up: human-readable locally, one JSON object per line with `LOG_FORMAT=json`.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::runtime::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG` filters (default `info`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    // A second call (tests start many apps in one process) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    // The spans carry `request_id` into every line of a request.
                    .with_current_span(false)
                    .with_span_list(true),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().compact()).try_init(),
    };
}
