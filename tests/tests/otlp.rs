//! Traces exported over OTLP/HTTP and OTLP/gRPC to receivers in the test,
//! decoded with `opentelemetry-proto`: one product page is one server span
//! and four client spans in the caller's trace, each service is told its
//! client span, and an `https` collector is trusted only through its CA.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use demo_services::{DemoServices, ServiceName};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    service::TowerToHyperService,
};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, any_value},
    trace::v1::{Span, span::SpanKind},
};
use platform_tests::{
    BffProcess, eventually, eventually_within, issue_token, metric,
    pki::{TestCa, tls_front},
    serve_on_free_port, start_demo,
};
use prost::Message;

/// Every span received, with the resource's `service.name`.
type Received = Arc<Mutex<Vec<(String, Span)>>>;

/// Keeps the spans of one export request.
fn record(received: &Received, request: ExportTraceServiceRequest) {
    let mut received = received.lock().expect("not poisoned");
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|resource| &resource.attributes)
            .find(|attribute| attribute.key == "service.name")
            .and_then(|attribute| text(attribute.value.as_ref()))
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                received.push((service.clone(), span));
            }
        }
    }
}

/// An OTLP collector: keeps the spans and each export's headers.
#[derive(Clone, Default)]
struct Collector {
    received: Received,
    headers: Arc<Mutex<Vec<http::HeaderMap>>>,
}

impl Collector {
    fn keep(&self, headers: http::HeaderMap, request: ExportTraceServiceRequest) {
        self.headers.lock().expect("not poisoned").push(headers);
        record(&self.received, request);
    }

    /// Checks that there was an export and that every one carried `name: value`.
    fn assert_every_export_carried(&self, name: &str, value: &str) {
        let headers = self.headers.lock().expect("not poisoned");
        assert!(!headers.is_empty());
        assert!(
            headers
                .iter()
                .all(|headers| headers.get(name).is_some_and(|sent| sent == value)),
            "every export carries the operator's header: {headers:?}"
        );
    }
}

/// An OTLP/HTTP receiver on a free port.
async fn receiver() -> (SocketAddr, Collector) {
    let collector = Collector::default();
    let router = Router::new()
        .route(
            "/v1/traces",
            post(
                |State(collector): State<Collector>, headers: http::HeaderMap, body: Bytes| async move {
                    collector.keep(
                        headers,
                        ExportTraceServiceRequest::decode(body).expect("OTLP protobuf"),
                    );
                    // An empty ExportTraceServiceResponse.
                    (
                        [(http::header::CONTENT_TYPE, "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                },
            ),
        )
        .with_state(collector.clone());
    (serve_on_free_port(router).await, collector)
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = request.metadata().clone().into_headers();
        self.keep(headers, request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An OTLP/gRPC receiver on a free port, speaking HTTP/2 without TLS.
async fn grpc_receiver() -> (SocketAddr, Collector) {
    let collector = Collector::default();
    let service = TowerToHyperService::new(TraceServiceServer::new(collector.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service.clone();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, collector)
}

fn text(value: Option<&AnyValue>) -> Option<String> {
    match value?.value.as_ref()? {
        any_value::Value::StringValue(text) => Some(text.clone()),
        any_value::Value::IntValue(number) => Some(number.to_string()),
        _ => None,
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .and_then(|attribute| text(attribute.value.as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The spans of trace `trace_id` received so far.
fn spans_of(received: &Received, trace_id: &str) -> Vec<(String, Span)> {
    received
        .lock()
        .expect("not poisoned")
        .iter()
        .filter(|(_, span)| hex(&span.trace_id) == trace_id)
        .cloned()
        .collect()
}

/// Waits until trace `trace_id` has `count` spans.
async fn await_spans(received: &Received, trace_id: &str, count: usize) -> Vec<(String, Span)> {
    eventually_within(
        &format!("{count} spans of {trace_id} arrived"),
        Duration::from_secs(15),
        async || spans_of(received, trace_id).len() >= count,
    )
    .await;
    spans_of(received, trace_id)
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn a_product_page_is_one_server_span_with_a_client_span_per_service() {
    let (collector, http) = receiver().await;
    let (demo, shutdown) = start_demo(Default::default()).await;
    let endpoint = format!("http://{collector}");
    let web = BffProcess::spawn_against::<bff_web::Web>(
        &demo,
        &[("BFF_OBSERVABILITY__OTLP__ENDPOINT", endpoint.as_str())],
    )
    .await;
    web.wait_until_ready().await;
    let token = product_page_in_callers_trace(&web, &demo).await;

    let spans = await_spans(&http.received, TRACE_ID, PAGE_SPANS).await;
    assert_product_page_tree(&spans, &demo, "bff-web");
    // The token never leaves in a span.
    let everything = format!("{:?}", http.received.lock().expect("not poisoned"));
    assert!(!everything.contains(&token));
    shutdown.trigger();
}

/// Asks `web` for product page 1 as the caller of [`CALLER_SPAN`]; returns the token used.
async fn product_page_in_callers_trace(web: &BffProcess, demo: &DemoServices) -> String {
    let token = issue_token(demo, "user-1", "bff-web", "RS256");
    let answer = reqwest::Client::new()
        .get(format!("http://{}/api/product-page/1", web.public()))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .send()
        .await
        .expect("answered");
    assert_eq!(answer.status(), 200);
    token
}

/// Checks that `spans` are one product page of [`TRACE_ID`] as a tree: the
/// server span under the caller's, one client span per service under it,
/// each named to its service in the `traceparent` it was sent, all from
/// `service_name`.
/// The spans of a product page: the server's, and one client span per
/// call: products twice (the product, its related products), inventory,
/// pricing and reviews once.
const PAGE_SPANS: usize = 6;

fn assert_product_page_tree(spans: &[(String, Span)], demo: &DemoServices, service_name: &str) {
    assert_eq!(
        spans.len(),
        PAGE_SPANS,
        "exactly one server span and one client span per call"
    );
    let servers: Vec<&Span> = spans
        .iter()
        .map(|(_, span)| span)
        .filter(|span| span.kind == SpanKind::Server as i32)
        .collect();
    assert_eq!(servers.len(), 1);
    let server = servers[0];
    assert_eq!(
        hex(&server.parent_span_id),
        CALLER_SPAN,
        "the caller's span is the parent"
    );
    assert_eq!(server.name, "GET /api/product-page/{id}");
    assert_eq!(
        attribute(server, "http.route").as_deref(),
        Some("/api/product-page/{id}")
    );
    assert_eq!(
        attribute(server, "http.response.status_code").as_deref(),
        Some("200")
    );
    let tenant = demo.catalog().user(1).expect("user 1").tenant;
    assert_eq!(attribute(server, "tenant"), Some(tenant));
    assert!(spans.iter().all(|(service, _)| service == service_name));

    let clients: Vec<&Span> = spans
        .iter()
        .map(|(_, span)| span)
        .filter(|span| span.kind == SpanKind::Client as i32)
        .collect();
    let mut called: Vec<String> = clients
        .iter()
        .map(|span| attribute(span, "peer.service").expect("the service"))
        .collect();
    called.sort();
    assert_eq!(
        called,
        ["inventory", "pricing", "products", "products", "reviews"]
    );
    for client in &clients {
        assert_eq!(
            hex(&client.parent_span_id),
            hex(&server.span_id),
            "{}",
            client.name
        );
        assert_eq!(attribute(client, "outcome").as_deref(), Some("200"));
    }
    // Each service was told its own client span as the parent.
    for (service, name) in [
        (ServiceName::Products, "products"),
        (ServiceName::Inventory, "inventory"),
        (ServiceName::Pricing, "pricing"),
        (ServiceName::Reviews, "reviews"),
    ] {
        let seen = demo
            .last_request(service)
            .expect("a call reached the service");
        let traceparent = seen.header_values("traceparent")[0];
        assert!(
            clients.iter().any(|client| {
                attribute(client, "peer.service").as_deref() == Some(name)
                    && traceparent == format!("00-{TRACE_ID}-{}-01", hex(&client.span_id))
            }),
            "{name}: {traceparent}"
        );
    }
}

#[tokio::test]
async fn new_traces_follow_the_sampling_ratio_and_callers_their_own_decision() {
    let (collector, http) = receiver().await;
    let (demo, shutdown) = start_demo(Default::default()).await;
    let endpoint = format!("http://{collector}");
    // The standard variables, as an operator sets them: record no new trace.
    let web = BffProcess::spawn_against::<bff_web::Web>(
        &demo,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
            ("OTEL_SERVICE_NAME", "web-eu"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-collector-key=k-456"),
        ],
    )
    .await;
    web.wait_until_ready().await;
    let token = issue_token(&demo, "user-1", "bff-web", "RS256");
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/product-page/1", web.public());
    let unsampled = client
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("answered");
    assert_eq!(unsampled.status(), 200);
    let unsampled_trace = unsampled.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let seen = demo.last_request(ServiceName::Products).expect("called");
    assert!(
        seen.header_values("traceparent")[0].ends_with("-00"),
        "the service is told the trace is not sampled"
    );

    // A caller that samples is followed even at ratio 0 (another product:
    // the first is cached now, and a cache hit makes no client span).
    let sampled = client
        .get(url.replace("product-page/1", "product-page/2"))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .send()
        .await
        .expect("answered");
    assert_eq!(sampled.status(), 200);
    let spans = await_spans(&http.received, TRACE_ID, PAGE_SPANS).await;
    assert!(spans.iter().all(|(service, _)| service == "web-eu"));
    // Exported in order: had the first trace been recorded, it would be here by now.
    assert!(spans_of(&http.received, &unsampled_trace).is_empty());
    http.assert_every_export_carried("x-collector-key", "k-456");
    shutdown.trigger();
}

#[tokio::test]
async fn over_grpc_the_same_tree_arrives_with_the_operators_headers() {
    let (collector, grpc) = grpc_receiver().await;
    let (demo, shutdown) = start_demo(Default::default()).await;
    let endpoint = format!("http://{collector}");
    let web = BffProcess::spawn_against::<bff_web::Web>(
        &demo,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-collector-key=k-123"),
        ],
    )
    .await;
    web.wait_until_ready().await;
    product_page_in_callers_trace(&web, &demo).await;

    let spans = await_spans(&grpc.received, TRACE_ID, PAGE_SPANS).await;
    assert_product_page_tree(&spans, &demo, "bff-web");
    grpc.assert_every_export_carried("x-collector-key", "k-123");
    shutdown.trigger();
}

#[tokio::test]
async fn an_https_grpc_collector_is_trusted_through_its_ca_only() {
    let (collector, grpc) = grpc_receiver().await;
    let ca = TestCa::new("collector");
    // Like a gRPC server, the front refuses a client that does not offer h2.
    let front = tls_front(collector, ca.server_config(&["h2"])).await;
    let endpoint = format!("https://{front}");
    let (demo, shutdown) = start_demo(Default::default()).await;
    let export = [
        ("BFF_OBSERVABILITY__OTLP__ENDPOINT", endpoint.as_str()),
        ("BFF_OBSERVABILITY__OTLP__PROTOCOL", "grpc"),
    ];

    // Without the CA the certificate is refused, and the failure counted.
    let untrusting = BffProcess::spawn_against::<bff_web::Web>(&demo, &export).await;
    untrusting.wait_until_ready().await;
    product_page_in_callers_trace(&untrusting, &demo).await;
    let admin = untrusting.admin();
    eventually("the export failure is counted", async || {
        metric(admin, "otel_export_failures_total", &[]).await >= Some(1.0)
    })
    .await;
    assert_eq!(
        metric(admin, "otel_spans_exported_total", &[]).await,
        Some(0.0)
    );
    untrusting.terminate().await;
    assert!(grpc.received.lock().expect("not poisoned").is_empty());

    let ca_file = ca.ca_file.to_str().expect("a UTF-8 path");
    let trusting = BffProcess::spawn_against::<bff_web::Web>(
        &demo,
        &[
            export[0],
            export[1],
            ("BFF_OBSERVABILITY__OTLP__CA_FILE", ca_file),
        ],
    )
    .await;
    trusting.wait_until_ready().await;
    product_page_in_callers_trace(&trusting, &demo).await;
    let spans = await_spans(&grpc.received, TRACE_ID, PAGE_SPANS).await;
    assert_product_page_tree(&spans, &demo, "bff-web");
    let admin = trusting.admin();
    eventually("the spans are counted as exported", async || {
        metric(admin, "otel_spans_exported_total", &[]).await >= Some(5.0)
    })
    .await;
    assert_eq!(
        metric(admin, "otel_export_failures_total", &[]).await,
        Some(0.0)
    );
    shutdown.trigger();
}
