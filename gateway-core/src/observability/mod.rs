//! Logs, traces and metrics: what an operator sees of the gateway.
//!
//! - [`logging`]: the `tracing` subscriber, JSON lines by default and
//!   human-readable on request, written off the request path; every line
//!   inside a request carries its `trace_id`.
//! - OTLP export (`[observability.otlp]`, off by default): one server span
//!   per request and one client span per downstream call, batched off the
//!   request path.
//! - [`TraceContext`] (and its layer, first in the server's stack): W3C
//!   `traceparent` continued or created for every request, and the
//!   `x-request-id` it answers with.
//! - the access log: one access-log line and one latency observation per
//!   request, labelled with the route template, never the raw path.
//! - [`ServerTiming`]: the `Server-Timing` header of every response, the
//!   total and one entry per downstream call.
//! - [`Telemetry`]: the Prometheus registry of one BFF and the metric families
//!   every module records into; a BFF registers its own metrics there.
//!
//! # Example
//!
//! ```
//! use gateway_core::observability::Telemetry;
//! use prometheus_client::metrics::counter::Counter;
//!
//! let telemetry = Telemetry::new("bff-web");
//! let pages = Counter::<u64>::default();
//! telemetry.register("product_pages_degraded", "Product pages served with parts missing", pages.clone());
//! pages.inc();
//! assert!(telemetry.encode().contains("product_pages_degraded_total{bff=\"bff-web\"} 1"));
//! assert!(telemetry.encode().contains("downstream_request_duration_seconds"));
//! ```

mod access_log;
mod json_lines;
mod log_writer;
pub mod logging;
mod metrics;
mod otlp;
mod server_timing;
mod trace_context;

pub(crate) use access_log::{AccessLogLayer, RouteTemplate};
pub use metrics::Telemetry;
pub(crate) use metrics::{DownstreamMetrics, HttpMetrics, RouteLabel, latency_histogram};
pub use otlp::OtlpConfig;
pub(crate) use otlp::{client_span, record_call, span_ids};
pub(crate) use server_timing::server_timing;
pub use server_timing::{SERVER_TIMING, ServerTiming};
pub(crate) use trace_context::{REQUEST_ID, RequestId, TRACEPARENT, TRACESTATE, TraceContextLayer};
pub use trace_context::{TraceContext, TraceId};

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Validate};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One JSON object per line, for log shippers (the default).
    #[default]
    Json,
    /// Coloured, human-readable lines, for a terminal.
    Pretty,
}

/// Logging settings (`[observability]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObservabilityConfig {
    /// `json` (default) or `pretty`.
    pub log_format: LogFormat,
    /// A `tracing` filter: a level (`info`, the default) or directives such as
    /// `info,gateway_core::downstream=debug`.
    pub log_level: String,
    /// Log lines buffered for the background writer; past it lines are
    /// dropped and counted (default 65536). 0: no background writer, each
    /// line written by the thread that logs it, never dropped.
    pub log_buffer_lines: usize,
    /// Trace export (`[observability.otlp]`), off by default.
    pub otlp: OtlpConfig,
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Json,
            log_level: "info".to_owned(),
            log_buffer_lines: 65_536,
            otlp: OtlpConfig::default(),
        }
    }
}

impl Validate for ObservabilityConfig {
    /// Checks the log filter, so a typo is reported at start with its key.
    fn validate(&self) -> Result<(), ConfigError> {
        tracing_subscriber::EnvFilter::try_new(&self.log_level)
            .map_err(|error| ConfigError::rule("observability.log_level", error.to_string()))?;
        self.otlp.validate()
    }
}
