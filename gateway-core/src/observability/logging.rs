//! The process-wide `tracing` subscriber.
//!
//! JSON lines carry the fields of the current span, so every event inside a
//! request (including the access-log line) has the request's `trace_id`.

use tracing_subscriber::{EnvFilter, fmt};

use super::{LogFormat, ObservabilityConfig};

/// Installs the global subscriber described by `config`.
///
/// Only the first call in a process takes effect; later calls (several
/// services in one test process, or `devstack`) keep the first subscriber.
pub fn init(config: &ObservabilityConfig) {
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let installed = match config.log_format {
        LogFormat::Json => fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter)
            .with_writer(std::io::stdout)
            .try_init(),
        LogFormat::Pretty => fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stdout)
            .try_init(),
    };
    // An error only means a subscriber is already installed, which is fine.
    drop(installed);
}
