//! Prometheus metrics of one BFF process.
//!
//! [`Telemetry`] owns the registry (served at `/metrics` on the admin port)
//! and the metric families every module records into. Labels are bounded by
//! construction: route templates (never raw paths), HTTP methods folded to a
//! fixed set, status codes and configured service names.

use std::{
    borrow::Cow,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::extract::MatchedPath;
use http::Method;
use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Metric, Registry},
};

/// Latency buckets in seconds, from 0.5 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram with the latency buckets every latency metric shares.
pub(crate) fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

type LatencyFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The registry and metric families of one BFF.
///
/// Cloning is cheap; every clone records into the same metrics.
#[derive(Clone)]
pub struct Telemetry {
    registry: Arc<Mutex<Registry>>,
    http: HttpMetrics,
    downstream: DownstreamMetrics,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Telemetry {
    /// A registry whose every metric carries the label `bff="{bff}"`.
    pub fn new(bff: &'static str) -> Self {
        let mut registry =
            Registry::with_labels([(Cow::Borrowed("bff"), Cow::Borrowed(bff))].into_iter());
        let http = HttpMetrics::default();
        registry.register(
            "http_server_request_duration_seconds",
            "Latency of requests served, by route template, method and status (its _count is the request count)",
            http.latency.clone(),
        );
        registry.register(
            "http_server_active_requests",
            "Requests being served right now",
            http.active.clone(),
        );
        let downstream = DownstreamMetrics::default();
        registry.register(
            "downstream_request_duration_seconds",
            "Latency of calls to downstream services, by service and outcome (status code, timeout or error)",
            downstream.latency.clone(),
        );
        registry.register(
            "downstream_circuit_state",
            "Circuit of each downstream service: 0 closed, 1 open, 2 half-open",
            downstream.circuit_state.clone(),
        );
        registry.register(
            "downstream_circuit_transitions",
            "Circuit state changes, by service and the state entered",
            downstream.circuit_transitions.clone(),
        );
        registry.register(
            "downstream_retries",
            "Failed idempotent calls, by service and what was decided: retried, budget_exhausted, no_time_left or attempts_exhausted",
            downstream.retries.clone(),
        );
        registry.register(
            "downstream_in_flight",
            "Calls in flight to each downstream service",
            downstream.in_flight.clone(),
        );
        // The process's log writer and span export, shared by every BFF in it.
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because the writer's buffer was full",
            super::logging::DroppedLogLines,
        );
        let export = super::otlp::export_metrics();
        registry.register(
            "otel_spans_dropped",
            "Finished spans dropped because the export queue was full",
            export.dropped.clone(),
        );
        registry.register(
            "otel_spans_exported",
            "Spans the OTLP collector accepted",
            export.exported.clone(),
        );
        registry.register(
            "otel_export_failures",
            "OTLP export requests that failed (their spans are dropped)",
            export.failures.clone(),
        );
        Self {
            registry: Arc::new(Mutex::new(registry)),
            http,
            downstream,
        }
    }

    /// Registers a further metric; call at start-up, never per request.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .register(name, help, metric);
    }

    /// The inbound request metrics.
    pub(crate) fn http(&self) -> &HttpMetrics {
        &self.http
    }

    /// The downstream call metrics.
    pub(crate) fn downstream(&self) -> &DownstreamMetrics {
        &self.downstream
    }

    /// Every metric in the Prometheus / OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        encode(&mut text, &registry).expect("writing to a String cannot fail");
        text
    }
}

/// The `route` label: the template the router matched, or a fixed name.
///
/// Holds the router's own shared template, so labelling a request copies
/// nothing: the histogram lookup costs no allocation.
#[derive(Debug, Clone)]
pub(crate) enum RouteLabel {
    /// A route template the router matched (`/api/product-page/{id}`).
    Matched(MatchedPath),
    /// A fixed name, such as `unmatched`.
    Fixed(&'static str),
}

impl RouteLabel {
    /// The label's text.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Matched(template) => template.as_str(),
            Self::Fixed(name) => name,
        }
    }
}

impl PartialEq for RouteLabel {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RouteLabel {}

impl std::hash::Hash for RouteLabel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for RouteLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: RouteLabel,
    method: &'static str,
    status: u16,
}

/// Metrics of the requests a BFF serves.
#[derive(Debug, Clone)]
pub(crate) struct HttpMetrics {
    latency: LatencyFamily<HttpLabels>,
    active: Gauge,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self {
            latency: Family::new_with_constructor(latency_histogram),
            active: Gauge::default(),
        }
    }
}

impl HttpMetrics {
    /// Records one served request.
    pub(crate) fn observe(
        &self,
        route: RouteLabel,
        method: &Method,
        status: u16,
        latency: Duration,
    ) {
        let labels = HttpLabels {
            route,
            method: method_label(method),
            status,
        };
        self.latency
            .get_or_create(&labels)
            .observe(latency.as_secs_f64());
    }

    /// Counts a request in flight until the returned guard drops.
    pub(crate) fn track_active(&self) -> ActiveRequest {
        self.active.inc();
        ActiveRequest(self.active.clone())
    }
}

/// Decrements the active-request gauge when dropped.
#[derive(Debug)]
pub(crate) struct ActiveRequest(Gauge);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DownstreamLabels {
    service: &'static str,
    outcome: Cow<'static, str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    service: &'static str,
    to: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetryLabels {
    service: &'static str,
    decision: &'static str,
}

/// Metrics of calls to downstream services.
#[derive(Debug, Clone)]
pub(crate) struct DownstreamMetrics {
    latency: LatencyFamily<DownstreamLabels>,
    circuit_state: Family<ServiceLabel, Gauge>,
    circuit_transitions: Family<TransitionLabels, Counter>,
    retries: Family<RetryLabels, Counter>,
    in_flight: Family<ServiceLabel, Gauge>,
}

impl Default for DownstreamMetrics {
    fn default() -> Self {
        Self {
            latency: Family::new_with_constructor(latency_histogram),
            circuit_state: Family::default(),
            circuit_transitions: Family::default(),
            retries: Family::default(),
            in_flight: Family::default(),
        }
    }
}

impl DownstreamMetrics {
    /// Records one downstream call; `outcome` is a status code, `timeout` or `error`.
    pub(crate) fn observe(
        &self,
        service: &'static str,
        outcome: impl Into<Cow<'static, str>>,
        latency: Duration,
    ) {
        let labels = DownstreamLabels {
            service,
            outcome: outcome.into(),
        };
        self.latency
            .get_or_create(&labels)
            .observe(latency.as_secs_f64());
    }

    /// Shows the circuit of `service` in the state numbered `state`.
    pub(crate) fn set_circuit_state(&self, service: &'static str, state: i64) {
        self.circuit_state
            .get_or_create(&ServiceLabel { service })
            .set(state);
    }

    /// Counts a change of the circuit of `service` to the state named `to`
    /// and numbered `state`, and shows it.
    pub(crate) fn circuit_transition(&self, service: &'static str, to: &'static str, state: i64) {
        self.set_circuit_state(service, state);
        self.circuit_transitions
            .get_or_create(&TransitionLabels { service, to })
            .inc();
    }

    /// Counts what was decided after a failed idempotent call.
    pub(crate) fn retry_decision(&self, service: &'static str, decision: &'static str) {
        self.retries
            .get_or_create(&RetryLabels { service, decision })
            .inc();
    }

    /// The in-flight gauge of `service`.
    pub(crate) fn in_flight(&self, service: &'static str) -> Gauge {
        self.in_flight
            .get_or_create(&ServiceLabel { service })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_histogram_is_labelled_by_route_method_and_status() {
        let telemetry = Telemetry::new("bff-web");
        telemetry.http().observe(
            RouteLabel::Fixed("/api/product-page/{id}"),
            &Method::GET,
            200,
            Duration::from_millis(4),
        );
        telemetry.http().observe(
            RouteLabel::Fixed("unmatched"),
            &Method::from_bytes(b"BREW").expect("method"),
            404,
            Duration::ZERO,
        );
        let text = telemetry.encode();
        assert!(
            text.contains(
                "http_server_request_duration_seconds_count{bff=\"bff-web\",route=\"/api/product-page/{id}\",method=\"GET\",status=\"200\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("method=\"OTHER\""), "{text}");
    }

    #[test]
    fn active_requests_gauge_follows_the_guard() {
        let telemetry = Telemetry::new("bff-web");
        let guard = telemetry.http().track_active();
        assert!(
            telemetry
                .encode()
                .contains("http_server_active_requests{bff=\"bff-web\"} 1")
        );
        drop(guard);
        assert!(
            telemetry
                .encode()
                .contains("http_server_active_requests{bff=\"bff-web\"} 0")
        );
    }
}
