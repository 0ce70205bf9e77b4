//! OpenTelemetry traces, exported over OTLP: HTTP with protobuf by default,
//! or gRPC.
//!
//! Off unless an endpoint is configured (`[observability.otlp] endpoint`,
//! or the standard `OTEL_EXPORTER_OTLP_ENDPOINT` /
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`). When on:
//!
//! - every request is one `server` span (named `GET /api/product-page/{id}`,
//!   with the route template, status and tenant; never a credential), a
//!   child of the caller's `traceparent` when it sent one;
//! - every downstream call is one `client` span, a child of the server span,
//!   and the `traceparent` sent to the service names that client span, so a
//!   tracing backend shows one tree per request;
//! - sampling is parent-based with `sampling_ratio` for new traces
//!   (`OTEL_TRACES_SAMPLER_ARG` when the configuration sets none);
//! - finished spans go to a bounded queue and are exported in batches by a
//!   background task, off the request path; when the queue is full a span
//!   is dropped and counted (`otel_spans_dropped_total`), never waited for;
//! - the collector is reached with the gateway's own TLS settings (the
//!   public roots plus `ca_file`): OTLP/HTTP through the gateway's pooled
//!   HTTP/1.1 client, gRPC through tonic's channel over the same connector,
//!   offering `h2` by ALPN.
//!
//! The spans are `tracing` spans with the target [`OTEL_TARGET`], turned
//! into OpenTelemetry spans by `tracing-opentelemetry`; they never reach the
//! log lines, and with tracing off their callsites are disabled, so they
//! cost nothing. The queue is hand-written because the SDK's batch processor
//! neither reports its drops as a metric nor runs its exports on tokio.

use std::{path::PathBuf, sync::Arc, time::Duration};

use async_trait::async_trait;
use axum::response::Response;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use opentelemetry::{
    Context,
    trace::{SpanContext, TraceContextExt, TraceFlags, TraceState, TracerProvider},
};
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    trace::{Sampler, SdkTracerProvider, Span, SpanData, SpanExporter, SpanProcessor},
};
use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{Layer, filter::filter_fn, registry::LookupSpan};

use super::RouteTemplate;
use crate::{
    config::{ConfigError, HumanDuration, ServiceUrl, Validate},
    identity::VerifiedIdentity,
    tls::ClientTls,
};

/// The `tracing` target of the spans exported as OpenTelemetry spans.
pub(crate) const OTEL_TARGET: &str = "gateway_core::otel";

/// Largest answer read from the collector.
const MAX_COLLECTOR_ANSWER_BYTES: usize = 64 * 1024;
/// How long a partial batch waits for more spans before it is sent.
const BATCH_DELAY: Duration = Duration::from_secs(1);

/// How spans travel to the collector (`OTEL_EXPORTER_OTLP_PROTOCOL`'s values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtlpProtocol {
    /// OTLP/HTTP, protobuf bodies POSTed to `{endpoint}/v1/traces` (port 4318).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// OTLP/gRPC, the `TraceService/Export` call at `{endpoint}` (port 4317).
    #[serde(rename = "grpc")]
    Grpc,
}

impl OtlpProtocol {
    fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "http/protobuf" => Ok(Self::HttpProtobuf),
            "grpc" => Ok(Self::Grpc),
            other => Err(format!(
                "OTLP protocol {other:?} is not supported: use \"http/protobuf\" or \"grpc\""
            )),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::HttpProtobuf => "http/protobuf",
            Self::Grpc => "grpc",
        }
    }
}

/// Trace export settings (`[observability.otlp]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// The collector's base URL (`http://jaeger:4318`); over HTTP spans go
    /// to `{endpoint}/v1/traces`, over gRPC to the URL as written
    /// (`http://jaeger:4317`). Unset: `OTEL_EXPORTER_OTLP_ENDPOINT`, else off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<ServiceUrl>,
    /// `http/protobuf` or `grpc`. Unset: `OTEL_EXPORTER_OTLP_PROTOCOL`, else
    /// `http/protobuf`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<OtlpProtocol>,
    /// A PEM file of CA certificates trusted for an `https` collector besides
    /// the public roots. Unset: `OTEL_EXPORTER_OTLP_CERTIFICATE`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Share of new traces recorded, 0 to 1; a caller's sampling decision is
    /// followed. Unset: `OTEL_TRACES_SAMPLER_ARG`, else 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampling_ratio: Option<f64>,
    /// The `service.name` of the spans. Unset: `OTEL_SERVICE_NAME`, else the BFF's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Finished spans waiting for export; past it spans are dropped (default 2048).
    pub max_queue_spans: usize,
    /// Spans per export request (default 512).
    pub max_batch_spans: usize,
    /// Timeout of one export request (default `10s`).
    pub export_timeout: HumanDuration,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            protocol: None,
            ca_file: None,
            sampling_ratio: None,
            service_name: None,
            max_queue_spans: 2048,
            max_batch_spans: 512,
            export_timeout: HumanDuration::from_secs(10),
        }
    }
}

impl Validate for OtlpConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self
            .sampling_ratio
            .is_some_and(|ratio| !(0.0..=1.0).contains(&ratio))
        {
            return Err(ConfigError::rule(
                "observability.otlp.sampling_ratio",
                "must be 0 to 1",
            ));
        }
        if self.max_queue_spans == 0 || self.max_batch_spans == 0 {
            return Err(ConfigError::rule(
                "observability.otlp",
                "max_queue_spans and max_batch_spans must be at least 1",
            ));
        }
        if self.service_name.as_deref() == Some("") {
            return Err(ConfigError::rule(
                "observability.otlp.service_name",
                "must not be empty",
            ));
        }
        if let Some(ca_file) = &self.ca_file {
            ClientTls::load(Some(ca_file)).map_err(|error| {
                ConfigError::rule("observability.otlp.ca_file", error.to_string())
            })?;
        }
        Ok(())
    }
}

/// Where spans go and how many are recorded, once the environment is read.
#[derive(Debug, Clone, PartialEq)]
struct Export {
    /// The full traces URL (HTTP) or the collector's URL (gRPC).
    traces_url: String,
    protocol: OtlpProtocol,
    ca_file: Option<PathBuf>,
    sampling_ratio: f64,
    service_name: String,
}

impl OtlpConfig {
    /// The configuration, completed from the standard `OTEL_*` variables
    /// (the signal-specific `OTEL_EXPORTER_OTLP_TRACES_*` first); `None`
    /// when no endpoint is set anywhere, an error for a protocol not built.
    fn export(
        &self,
        bff: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Export>, String> {
        let standard = |name: &str| {
            env(&format!("OTEL_EXPORTER_OTLP_TRACES_{name}"))
                .or_else(|| env(&format!("OTEL_EXPORTER_OTLP_{name}")))
                .filter(|value| !value.trim().is_empty())
        };
        let protocol = match (self.protocol, standard("PROTOCOL")) {
            (Some(protocol), _) => protocol,
            (None, Some(named)) => OtlpProtocol::parse(&named)?,
            (None, None) => OtlpProtocol::HttpProtobuf,
        };
        // Per the OTLP exporter specification: the signal-specific variable
        // is the URL as written; the general one is a base for HTTP.
        let traces_url = match (&self.endpoint, protocol) {
            (Some(base), OtlpProtocol::HttpProtobuf) => traces_url(base.as_str()),
            (Some(url), OtlpProtocol::Grpc) => url.as_str().to_owned(),
            (None, _) => match env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
                Some(url) => url,
                None => {
                    let Some(base) = env("OTEL_EXPORTER_OTLP_ENDPOINT") else {
                        return Ok(None);
                    };
                    match protocol {
                        OtlpProtocol::HttpProtobuf => traces_url(&base),
                        OtlpProtocol::Grpc => base,
                    }
                }
            },
        };
        let ca_file = self
            .ca_file
            .clone()
            .or_else(|| standard("CERTIFICATE").map(PathBuf::from));
        let sampling_ratio = self
            .sampling_ratio
            .or_else(|| {
                env("OTEL_TRACES_SAMPLER_ARG")?
                    .trim()
                    .parse()
                    .ok()
                    .filter(|ratio| (0.0..=1.0).contains(ratio))
            })
            .unwrap_or(1.0);
        let service_name = self
            .service_name
            .clone()
            .or_else(|| env("OTEL_SERVICE_NAME").filter(|name| !name.is_empty()))
            .unwrap_or_else(|| bff.to_owned());
        Ok(Some(Export {
            traces_url,
            protocol,
            ca_file,
            sampling_ratio,
            service_name,
        }))
    }
}

/// `{base}/v1/traces`, as `OTEL_EXPORTER_OTLP_ENDPOINT` is defined.
fn traces_url(base: &str) -> String {
    format!("{}/v1/traces", base.trim_end_matches('/'))
}

/// Counts of the export pipeline, process-wide (one pipeline per process).
#[derive(Debug, Clone, Default)]
pub(crate) struct ExportMetrics {
    /// Spans dropped because the queue was full.
    pub(crate) dropped: Counter,
    /// Spans the collector accepted.
    pub(crate) exported: Counter,
    /// Export requests that failed.
    pub(crate) failures: Counter,
}

/// The export counts of this process, registered in every [`super::Telemetry`].
pub(crate) fn export_metrics() -> &'static ExportMetrics {
    static METRICS: std::sync::LazyLock<ExportMetrics> =
        std::sync::LazyLock::new(ExportMetrics::default);
    &METRICS
}

/// The running export pipeline; [`ExportPipeline::shutdown`] flushes it.
#[derive(Debug)]
pub(crate) struct ExportPipeline {
    provider: SdkTracerProvider,
    stop: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
    export: Export,
}

/// A `tracing` layer turning the [`OTEL_TARGET`] spans into exported
/// OpenTelemetry spans, with its pipeline; `None` when tracing is off.
/// Must be called inside the tokio runtime that will run the exports.
pub(crate) fn layer<S>(
    config: &OtlpConfig,
    bff: &str,
    metrics: &ExportMetrics,
) -> Result<Option<(impl Layer<S> + use<S>, ExportPipeline)>, String>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    let Some(export) = config.export(bff, |name| std::env::var(name).ok())? else {
        return Ok(None);
    };
    let resource = Resource::builder()
        .with_service_name(export.service_name.clone())
        .build();
    let mut exporter = exporter(&export, config.export_timeout.get())?;
    // The provider tells its processors the resource; this one exports itself.
    exporter.set_resource(&resource);
    let (sender, receiver) = mpsc::channel(config.max_queue_spans);
    let stop = Arc::new(Notify::new());
    let task = tokio::spawn(export_batches(
        exporter,
        receiver,
        config.max_batch_spans,
        stop.clone(),
        metrics.clone(),
    ));
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BoundedQueue {
            sender,
            dropped: metrics.dropped.clone(),
        })
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            export.sampling_ratio,
        ))))
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("gateway-core");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_level(false)
        .with_filter(filter_fn(|metadata| metadata.target() == OTEL_TARGET));
    Ok(Some((
        layer,
        ExportPipeline {
            provider,
            stop,
            task,
            export,
        },
    )))
}

/// The OTLP exporter of `export`, over the gateway's TLS settings.
fn exporter(
    export: &Export,
    timeout: Duration,
) -> Result<opentelemetry_otlp::SpanExporter, String> {
    let tls = ClientTls::load(export.ca_file.as_deref()).map_err(|error| error.to_string())?;
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(timeout));
    let built = match export.protocol {
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(CollectorClient::new(tls.connector(connector), timeout))
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(export.traces_url.clone())
            .with_timeout(timeout)
            .build(),
        OtlpProtocol::Grpc => {
            let channel = tonic::transport::Endpoint::from_shared(export.traces_url.clone())
                .map_err(|error| format!("{}: {error}", export.traces_url))?
                .timeout(timeout)
                .connect_with_connector_lazy(tls.http2_connector(connector));
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_channel(channel)
                .with_timeout(timeout)
                .build()
        }
    };
    built.map_err(|error| format!("cannot build the OTLP exporter: {error}"))
}

impl ExportPipeline {
    /// Says where spans go; call once the subscriber is installed.
    pub(crate) fn log_started(&self) {
        tracing::info!(
            endpoint = self.export.traces_url,
            protocol = self.export.protocol.as_str(),
            sampling_ratio = self.export.sampling_ratio,
            service_name = self.export.service_name,
            "exporting traces over OTLP"
        );
    }

    /// Exports what is queued (waiting at most `timeout`) and stops.
    pub(crate) async fn shutdown(self, timeout: Duration) {
        // The provider drops its processor, and with it the queue's sender.
        let _ = self.provider.shutdown();
        self.stop.notify_one();
        if tokio::time::timeout(timeout, self.task).await.is_err() {
            tracing::warn!("spans still queued at shutdown were not exported in time");
        }
    }
}

/// Queues finished spans for [`export_batches`]; never blocks.
#[derive(Debug)]
struct BoundedQueue {
    sender: mpsc::Sender<SpanData>,
    dropped: Counter,
}

impl SpanProcessor for BoundedQueue {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if self.sender.try_send(span).is_err() {
            self.dropped.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Sends the queued spans in batches of at most `max_batch`, each batch
/// once it is full or [`BATCH_DELAY`] after its first span; after `stop`,
/// sends what is left and returns.
async fn export_batches(
    exporter: opentelemetry_otlp::SpanExporter,
    mut receiver: mpsc::Receiver<SpanData>,
    max_batch: usize,
    stop: Arc<Notify>,
    metrics: ExportMetrics,
) {
    let mut stopping = false;
    loop {
        let first = tokio::select! {
            span = receiver.recv() => span,
            () = stop.notified(), if !stopping => {
                stopping = true;
                receiver.close();
                continue;
            }
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + BATCH_DELAY;
        while batch.len() < max_batch {
            let next = if stopping {
                receiver.try_recv().ok()
            } else {
                tokio::select! {
                    span = receiver.recv() => span,
                    () = tokio::time::sleep_until(deadline) => None,
                    () = stop.notified() => {
                        stopping = true;
                        receiver.close();
                        continue;
                    }
                }
            };
            match next {
                Some(span) => batch.push(span),
                None => break,
            }
        }
        let count = batch.len() as u64;
        match exporter.export(batch).await {
            Ok(()) => {
                metrics.exported.inc_by(count);
            }
            Err(error) => {
                metrics.failures.inc();
                tracing::warn!(%error, spans = count, "exporting spans failed; they are dropped");
            }
        }
    }
}

/// The collector client: the gateway's own pooled client and TLS settings.
#[derive(Debug, Clone)]
struct CollectorClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl CollectorClient {
    fn new(connector: HttpsConnector<HttpConnector>, timeout: Duration) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(1)
            .build(connector);
        Self { client, timeout }
    }
}

#[async_trait]
impl HttpClient for CollectorClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let exchange = async {
            let response = self
                .client
                .request(http::Request::from_parts(parts, Full::new(body)))
                .await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_COLLECTOR_ANSWER_BYTES)
                .collect()
                .await?
                .to_bytes();
            Ok::<_, HttpError>(http::Response::from_parts(parts, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| HttpError::from(format!("no answer within {:?}", self.timeout)))?
    }
}

/// The server span of a request; disabled when tracing is off. Its
/// attributes are recorded at the end, and only when it is sampled: an
/// unsampled span costs its ids and nothing more.
pub(crate) fn server_span() -> tracing::Span {
    tracing::info_span!(
        target: OTEL_TARGET,
        "server",
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = tracing::field::Empty,
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        tenant = tracing::field::Empty,
    )
}

/// Names the sampled server span after the matched route and records the
/// answer: method, status and the verified tenant (never a credential).
pub(crate) fn record_response(
    span: &tracing::Span,
    sampled: bool,
    method: &http::Method,
    response: &Response,
) {
    if !sampled || span.is_disabled() {
        return;
    }
    let route = match response.extensions().get::<RouteTemplate>() {
        Some(RouteTemplate(template)) => template.as_str(),
        None => "unmatched",
    };
    // The route is known only now, after the span started: rename it.
    span.context()
        .span()
        .update_name(format!("{method} {route}"));
    span.record("http.request.method", method.as_str());
    span.record("http.route", route);
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    if let Some(identity) = response.extensions().get::<Arc<VerifiedIdentity>>() {
        span.record("tenant", identity.tenant.as_str());
    }
}

/// The client span of one call to `service`; disabled when tracing is off.
pub(crate) fn client_span(service: &'static str, method: &http::Method) -> tracing::Span {
    tracing::info_span!(
        target: OTEL_TARGET,
        "client",
        otel.name = service,
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        peer.service = service,
        http.request.method = method.as_str(),
        http.response.status_code = tracing::field::Empty,
        outcome = tracing::field::Empty,
    )
}

/// Records how a call ended on its client span: `outcome` is the status
/// code, `timeout`, `error`...; `status` the status code when one came back.
pub(crate) fn record_call(span: &tracing::Span, outcome: &str, status: Option<u16>) {
    if span.is_disabled() {
        return;
    }
    span.record("outcome", outcome);
    if let Some(status) = status {
        span.record("http.response.status_code", status);
    }
    if status.is_none_or(|status| status >= 500) {
        span.record("otel.status_code", "error");
    }
}

/// The ids of an exported span: `(trace id, span id, sampled)`; `None` when
/// tracing is off (the span is disabled).
pub(crate) fn span_ids(span: &tracing::Span) -> Option<(u128, u64, bool)> {
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| {
        (
            u128::from_be_bytes(span_context.trace_id().to_bytes()),
            u64::from_be_bytes(span_context.span_id().to_bytes()),
            span_context.is_sampled(),
        )
    })
}

/// Makes `span` a child of the caller's span `parent` in trace `trace_id`.
pub(crate) fn continue_remote_trace(span: &tracing::Span, trace_id: u128, parent: u64, flags: u8) {
    if span.is_disabled() {
        return;
    }
    let remote = SpanContext::new(
        opentelemetry::trace::TraceId::from_bytes(trace_id.to_be_bytes()),
        opentelemetry::trace::SpanId::from_bytes(parent.to_be_bytes()),
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(Context::new().with_remote_span_context(remote));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[test]
    fn off_unless_an_endpoint_is_set_somewhere() {
        assert_eq!(OtlpConfig::default().export("bff-web", env(&[])), Ok(None));
        // A protocol alone turns nothing on.
        let export = OtlpConfig::default()
            .export("bff-web", env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]));
        assert_eq!(export, Ok(None));
    }

    #[test]
    fn the_standard_variables_fill_what_the_configuration_leaves_unset() {
        let export = OtlpConfig::default()
            .export(
                "bff-web",
                env(&[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
                    ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
                ]),
            )
            .expect("supported")
            .expect("on");
        assert_eq!(export.traces_url, "http://collector:4318/v1/traces");
        assert_eq!(export.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(export.ca_file, None);
        assert_eq!(export.sampling_ratio, 0.25);
        assert_eq!(export.service_name, "bff-web");

        let configured = OtlpConfig {
            endpoint: Some(ServiceUrl::parse("http://jaeger:4318").expect("url")),
            sampling_ratio: Some(0.01),
            service_name: Some("web-eu".to_owned()),
            ..OtlpConfig::default()
        };
        let export = configured
            .export(
                "bff-web",
                env(&[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                    ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
                    ("OTEL_SERVICE_NAME", "other"),
                ]),
            )
            .expect("supported")
            .expect("on");
        assert_eq!(export.traces_url, "http://jaeger:4318/v1/traces");
        assert_eq!(export.sampling_ratio, 0.01);
        assert_eq!(export.service_name, "web-eu");
    }

    #[test]
    fn a_signal_specific_endpoint_is_used_as_written_and_bad_ratios_are_ignored() {
        let export = OtlpConfig::default()
            .export(
                "bff-web",
                env(&[
                    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/custom"),
                    ("OTEL_TRACES_SAMPLER_ARG", "7"),
                ]),
            )
            .expect("supported")
            .expect("on");
        assert_eq!(export.traces_url, "http://c:4318/custom");
        assert_eq!(export.sampling_ratio, 1.0);
    }

    #[test]
    fn over_grpc_the_endpoint_is_the_collector_itself() {
        let configured = OtlpConfig {
            endpoint: Some(ServiceUrl::parse("https://collector:4317").expect("url")),
            protocol: Some(OtlpProtocol::Grpc),
            ..OtlpConfig::default()
        };
        let export = configured
            .export(
                "bff-web",
                env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]),
            )
            .expect("supported")
            .expect("on");
        assert_eq!(export.traces_url, "https://collector:4317/");
        assert_eq!(export.protocol, OtlpProtocol::Grpc);

        let export = OtlpConfig::default()
            .export(
                "bff-web",
                env(&[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
                    ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/otel/ca.pem"),
                ]),
            )
            .expect("supported")
            .expect("on");
        assert_eq!(export.traces_url, "http://collector:4317");
        assert_eq!(export.protocol, OtlpProtocol::Grpc);
        assert_eq!(export.ca_file, Some(PathBuf::from("/etc/otel/ca.pem")));
    }

    #[test]
    fn a_protocol_that_is_not_built_is_an_error_not_a_silent_fallback() {
        let error = OtlpConfig::default()
            .export(
                "bff-web",
                env(&[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                ]),
            )
            .expect_err("http/json is not built");
        assert!(error.contains("\"http/json\""), "{error}");
        let parsed: Result<OtlpConfig, _> = toml::from_str("protocol = \"http/json\"");
        assert!(parsed.is_err());
        let parsed: OtlpConfig = toml::from_str("protocol = \"grpc\"").expect("grpc");
        assert_eq!(parsed.protocol, Some(OtlpProtocol::Grpc));
    }
}
