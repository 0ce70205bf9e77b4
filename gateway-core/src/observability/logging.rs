//! The process-wide `tracing` subscriber: log lines, and spans for export.
//!
//! - JSON lines (see `json_lines`) carry the fields of the current span, so
//!   every event inside a request (including the access-log line) has the
//!   request's `trace_id`.
//! - Lines are written in batches by a background thread (see
//!   `log_writer`) through a buffer of `log_buffer_lines` lines: a request
//!   never waits for stdout. When the buffer is full a line is dropped and
//!   counted (`log_lines_dropped_total`) rather than blocking; what is
//!   buffered is written when the process stops (within about a second).
//!   `log_buffer_lines = 0` writes from the logging thread instead: no line
//!   is ever dropped, and a slow stdout slows requests down.
//! - With an OTLP endpoint (`[observability.otlp]`), a second layer exports spans; the
//!   log lines never see those spans, nor the spans the log lines.

use std::{sync::OnceLock, time::Duration};

use prometheus_client::{
    encoding::{EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::{MetricType, TypedMetric},
};
use tracing_subscriber::{
    EnvFilter, Layer, filter::FilterExt, filter::filter_fn, fmt, fmt::writer::BoxMakeWriter,
    layer::SubscriberExt, util::SubscriberInitExt,
};

use super::{
    LogFormat, ObservabilityConfig,
    json_lines::JsonLines,
    log_writer::{DroppedLines, LogWriter, LogWriterGuard},
    otlp::{self, ExportPipeline, OTEL_TARGET},
};

/// How long the spans still queued at shutdown may take to leave.
const EXPORT_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The dropped-lines count of the process's log writer, once installed.
static DROPPED_LINES: OnceLock<DroppedLines> = OnceLock::new();

/// `log_lines_dropped_total`: read from the writer when scraped.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DroppedLogLines;

impl TypedMetric for DroppedLogLines {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for DroppedLogLines {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let dropped = DROPPED_LINES.get().map_or(0, DroppedLines::get);
        encoder.encode_counter::<NoLabelSet, _, u64>(&dropped, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// Keeps the log writer and the span export running; [`LoggingGuard::shutdown`]
/// flushes both.
#[must_use = "dropping the guard stops the log writer"]
#[derive(Debug, Default)]
pub struct LoggingGuard {
    writer: Option<LogWriterGuard>,
    export: Option<ExportPipeline>,
}

impl LoggingGuard {
    /// Exports the spans still queued, then writes the lines still buffered.
    pub async fn shutdown(self) {
        if let Some(export) = self.export {
            export.shutdown(EXPORT_FLUSH_TIMEOUT).await;
        }
        drop(self.writer);
    }
}

/// Installs the global subscriber described by `config` for `service`.
///
/// Call inside the tokio runtime that serves: span export runs on it. Only
/// the first call in a process takes effect; later calls (several services
/// in one test process, or `devstack`) keep the first subscriber and get an
/// empty guard.
pub fn init(config: &ObservabilityConfig, service: &'static str) -> LoggingGuard {
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, writer_guard, dropped) = match config.log_buffer_lines {
        // Written by the thread that logs: never a dropped line, at the cost
        // of a request waiting when stdout is slow.
        0 => (BoxMakeWriter::new(std::io::stdout), None, None),
        lines => match LogWriter::spawn(lines, std::io::stdout()) {
            Ok((writer, guard)) => {
                let dropped = writer.dropped_lines();
                (BoxMakeWriter::new(writer), Some(guard), Some(dropped))
            }
            Err(error) => {
                eprintln!("{service}: no log writer thread ({error}): lines are written directly");
                (BoxMakeWriter::new(std::io::stdout), None, None)
            }
        },
    };
    let lines = match config.log_format {
        LogFormat::Json => JsonLines::new(writer).boxed(),
        LogFormat::Pretty => fmt::layer().with_writer(writer).boxed(),
    }
    .with_filter(filter.and(filter_fn(|metadata| metadata.target() != OTEL_TARGET)));
    let (spans, export) = match otlp::layer(&config.otlp, service, otlp::export_metrics()) {
        Ok(Some((layer, pipeline))) => (Some(layer), Some(pipeline)),
        Ok(None) => (None, None),
        Err(error) => {
            eprintln!("{service}: traces are not exported: {error}");
            (None, None)
        }
    };
    // Not `.with(Option<layer>)`: a `None` layer leaves every callsite
    // enabled, and the span callsites must be disabled when nothing exports.
    let installed = match spans {
        Some(spans) => tracing_subscriber::registry()
            .with(lines)
            .with(spans)
            .try_init(),
        None => tracing_subscriber::registry().with(lines).try_init(),
    };
    if installed.is_err() {
        // Another subscriber was installed first; its writer and export stay.
        return LoggingGuard::default();
    }
    if let Some(dropped) = dropped {
        let _ = DROPPED_LINES.set(dropped);
    }
    if let Some(export) = &export {
        export.log_started();
    }
    LoggingGuard {
        writer: writer_guard,
        export,
    }
}
