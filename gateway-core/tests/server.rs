//! The server layer stack and connection handling, over real sockets.

use std::{net::SocketAddr, num::NonZeroUsize, time::Duration};

use axum::{
    Router,
    body::Bytes,
    extract::Path,
    routing::{self, post},
};
use gateway_core::{
    conditional::ConditionalLayer,
    config::{Delay, HumanDuration},
    lifecycle::Shutdown,
    observability::Telemetry,
    server::{Gateway, Running, ServerConfig},
};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Upper bound on any single wait, so a broken server fails the test instead of hanging it.
const HANG_GUARD: Duration = Duration::from_secs(10);

fn config() -> ServerConfig {
    let mut config = ServerConfig::with_ports(0, 0);
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.header_read_timeout = HumanDuration::from_millis(500);
    config.body_read_timeout = HumanDuration::from_millis(500);
    config.request_timeout = HumanDuration::from_millis(1500);
    config.drain_grace = HumanDuration::from_secs(5);
    config.drain_delay = Delay::default();
    config.max_body_bytes = NonZeroUsize::new(1024).expect("non-zero");
    config.max_headers = NonZeroUsize::new(20).expect("non-zero");
    config.max_header_bytes = NonZeroUsize::new(4096).expect("non-zero");
    config
}

fn routes() -> Router {
    Router::new()
        .route("/ok", routing::get(|| async { "ok" }))
        .route(
            "/items/{id}",
            routing::get(|Path(id): Path<u64>| async move { format!("item {id}") }),
        )
        .route("/panic", routing::get(panicking))
        .route(
            "/slow/{millis}",
            routing::get(|Path(millis): Path<u64>| async move {
                tokio::time::sleep(Duration::from_millis(millis)).await;
                "done"
            }),
        )
        .route(
            "/echo",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
        .route("/page", routing::get(|| async { axum::Json(big_page()) }))
        .route(
            "/tagged-page",
            routing::get(|| async { axum::Json(big_page()) })
                .route_layer(ConditionalLayer::new("private, max-age=30")),
        )
}

/// A page of about 4 KiB of JSON.
fn big_page() -> Value {
    serde_json::json!({
        "items": (0..64).map(|n| serde_json::json!({ "id": n, "name": format!("item number {n}") })).collect::<Vec<_>>()
    })
}

async fn panicking() -> &'static str {
    panic!("handler bug with secret 0xdeadbeef")
}

struct Server {
    running: Running,
    shutdown: Shutdown,
}

impl Server {
    async fn start() -> Self {
        Self::start_with(config()).await
    }

    async fn start_with(config: ServerConfig) -> Self {
        let shutdown = Shutdown::new();
        let running = Gateway::new("test", config, Telemetry::new("test"))
            .serve(routes(), shutdown.clone())
            .await
            .expect("server starts");
        Self { running, shutdown }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.public_addr())
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.admin_addr())
    }

    /// Sends `request` as raw bytes and reads until the server closes.
    async fn raw(&self, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(self.running.public_addr())
            .await
            .expect("connects");
        stream.write_all(request).await.expect("writes");
        let mut answer = Vec::new();
        tokio::time::timeout(HANG_GUARD, stream.read_to_end(&mut answer))
            .await
            .expect("the server answers and closes")
            .ok();
        String::from_utf8_lossy(&answer).into_owned()
    }
}

fn status_of(raw: &str) -> u16 {
    raw.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

fn problem_of(raw: &str) -> Value {
    let body = raw.split("\r\n\r\n").nth(1).expect("a body");
    serde_json::from_str(body).expect("problem json body")
}

async fn get(url: &str) -> reqwest::Response {
    tokio::time::timeout(HANG_GUARD, reqwest::get(url))
        .await
        .expect("answered in time")
        .expect("request succeeds")
}

async fn assert_problem(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = serde_json::from_str(&response.text().await.expect("body")).expect("json");
    assert_eq!(problem["status"], status);
    assert_eq!(problem["code"], code);
    assert_eq!(
        problem["trace_id"].as_str().map(str::len),
        Some(32),
        "{problem}"
    );
    problem
}

#[tokio::test]
async fn a_panicking_handler_is_a_problem_500_without_details() {
    let server = Server::start().await;
    let problem = assert_problem(get(&server.url("/panic")).await, 500, "INTERNAL").await;
    assert!(!problem.to_string().contains("deadbeef"), "{problem}");
    // The connection and the server survive.
    assert_eq!(get(&server.url("/ok")).await.status(), 200);
}

#[tokio::test]
async fn an_unknown_route_is_a_problem_404() {
    let server = Server::start().await;
    assert_problem(get(&server.url("/nope")).await, 404, "ROUTE_NOT_FOUND").await;
}

#[tokio::test]
async fn a_bad_path_parameter_is_a_problem_400() {
    let server = Server::start().await;
    let problem = assert_problem(get(&server.url("/items/abc")).await, 400, "BAD_REQUEST").await;
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("abc")),
        "{problem}"
    );
}

#[tokio::test]
async fn a_wrong_method_is_a_problem_405() {
    let server = Server::start().await;
    let response = reqwest::Client::new()
        .delete(server.url("/ok"))
        .send()
        .await
        .expect("sent");
    assert_problem(response, 405, "METHOD_NOT_ALLOWED").await;
}

#[tokio::test]
async fn a_request_over_the_timeout_is_a_problem_504() {
    let server = Server::start().await;
    assert_problem(get(&server.url("/slow/5000")).await, 504, "REQUEST_TIMEOUT").await;
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_a_problem_413() {
    let server = Server::start().await;
    let response = reqwest::Client::new()
        .post(server.url("/echo"))
        .body(vec![b'x'; 2048])
        .send()
        .await
        .expect("sent");
    assert_problem(response, 413, "PAYLOAD_TOO_LARGE").await;
}

#[tokio::test]
async fn a_streamed_body_over_the_limit_is_a_problem_413() {
    let server = Server::start().await;
    let chunk = "x".repeat(600);
    let request = format!(
        "POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let answer = server.raw(request.as_bytes()).await;
    assert_eq!(status_of(&answer), 413, "{answer}");
    assert_eq!(problem_of(&answer)["code"], "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn a_body_within_the_limit_is_served() {
    let server = Server::start().await;
    let response = reqwest::Client::new()
        .post(server.url("/echo"))
        .body(vec![b'x'; 1000])
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "1000");
}

#[tokio::test]
async fn a_body_limit_above_axums_default_is_honoured() {
    // axum alone would refuse bodies over 2 MiB; the configured limit wins.
    let mut config = config();
    config.max_body_bytes = NonZeroUsize::new(3 * 1024 * 1024).expect("non-zero");
    let server = Server::start_with(config).await;
    let post = |size: usize| {
        reqwest::Client::new()
            .post(server.url("/echo"))
            .body(vec![b'x'; size])
            .send()
    };
    let within = post(5 * 1024 * 1024 / 2).await.expect("sent");
    assert_eq!(within.status(), 200);
    assert_eq!(within.text().await.expect("body"), "2621440");
    assert_problem(
        post(4 * 1024 * 1024).await.expect("sent"),
        413,
        "PAYLOAD_TOO_LARGE",
    )
    .await;
}

#[tokio::test]
async fn a_body_that_never_arrives_is_a_problem_408() {
    let server = Server::start().await;
    let mut stream = TcpStream::connect(server.running.public_addr())
        .await
        .expect("connects");
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\nonly-part")
        .await
        .expect("writes");
    let mut answer = Vec::new();
    tokio::time::timeout(HANG_GUARD, stream.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes")
        .expect("reads");
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert_eq!(problem_of(&answer)["code"], "BODY_READ_TIMEOUT");
}

#[tokio::test]
async fn a_silent_connection_is_closed() {
    let server = Server::start().await;
    let mut stream = TcpStream::connect(server.running.public_addr())
        .await
        .expect("connects");
    stream
        .write_all(b"GET /ok HTTP/1.1\r\nHost: te")
        .await
        .expect("writes");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(HANG_GUARD, stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server closes a connection whose headers never complete"
    );
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
}

#[tokio::test]
async fn too_many_headers_are_refused_with_431() {
    let server = Server::start().await;
    let headers: String = (0..40)
        .map(|index| format!("X-Filler-{index}: 1\r\n"))
        .collect();
    let answer = server
        .raw(
            format!("GET /ok HTTP/1.1\r\nHost: test\r\n{headers}Connection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
    assert_eq!(status_of(&answer), 431, "{answer}");
}

#[tokio::test]
async fn oversized_headers_are_refused_with_431() {
    let server = Server::start().await;
    let big = "a".repeat(8000);
    let answer = server
        .raw(
            format!("GET /ok HTTP/1.1\r\nHost: test\r\nX-Big: {big}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
    assert_eq!(status_of(&answer), 431, "{answer}");
}

#[tokio::test]
async fn a_missing_or_doubled_host_is_a_problem_400() {
    let server = Server::start().await;
    let missing = server
        .raw(b"GET /ok HTTP/1.1\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(status_of(&missing), 400, "{missing}");
    assert_eq!(problem_of(&missing)["code"], "BAD_REQUEST");
    let doubled = server
        .raw(b"GET /ok HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(status_of(&doubled), 400, "{doubled}");
}

#[tokio::test]
async fn structure_changing_paths_are_refused() {
    let server = Server::start().await;
    for path in ["/items%2f7", "/items%5C7", "/ok%00", "/../ok", "/items/%zz"] {
        let answer = server
            .raw(
                format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await;
        assert_eq!(status_of(&answer), 400, "{path}: {answer}");
        assert_eq!(problem_of(&answer)["code"], "BAD_REQUEST", "{path}");
    }
}

#[tokio::test]
async fn paths_are_normalised_before_routing() {
    let server = Server::start().await;
    for path in [
        "/items/../items/7",
        "//items//7",
        "/items/./%37",
        "/x/%2e%2e/items/7",
    ] {
        let answer = server
            .raw(
                format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await;
        assert_eq!(status_of(&answer), 200, "{path}: {answer}");
        assert!(answer.ends_with("item 7"), "{path}: {answer}");
    }
}

#[tokio::test]
async fn the_callers_trace_is_continued_and_the_request_id_echoed() {
    let server = Server::start().await;
    let response = reqwest::Client::new()
        .get(server.url("/nope"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header("x-request-id", "req-42")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.headers()["x-request-id"], "req-42");
    let problem: Value = serde_json::from_str(&response.text().await.expect("body")).expect("json");
    assert_eq!(problem["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
}

#[tokio::test]
async fn metrics_show_the_request_histogram_by_route_template() {
    let server = Server::start().await;
    for id in [1, 2, 3] {
        assert_eq!(
            get(&server.url(&format!("/items/{id}"))).await.status(),
            200
        );
    }
    get(&server.url("/nope")).await;
    let metrics = get(&server.admin_url("/metrics"))
        .await
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"http_server_request_duration_seconds_count{bff="test",route="/items/{id}",method="GET",status="200"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"route="unmatched",method="GET",status="404"} 1"#),
        "{metrics}"
    );
    assert!(
        !metrics.contains("/items/1"),
        "raw paths never become labels"
    );
}

#[tokio::test]
async fn health_and_readiness_answer_on_the_admin_port() {
    let server = Server::start().await;
    assert_eq!(get(&server.admin_url("/healthz")).await.status(), 200);
    assert_eq!(get(&server.admin_url("/readyz")).await.status(), 200);
    // The admin routes are not on the public port.
    assert_eq!(get(&server.url("/metrics")).await.status(), 404);
}

/// Polls `check` until it gives a value, failing after [`HANG_GUARD`]: the
/// one way these tests wait for a state they cannot be told of.
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let polling = async {
        loop {
            if let Some(value) = check().await {
                return value;
            }
            // The poll interval: the one pause, between two looks at the state.
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    };
    tokio::time::timeout(HANG_GUARD, polling)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting until {what}"))
}

/// How often [`eventually`] looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Polls `/readyz` until it answers 503, and returns its body.
async fn wait_for_readyz_503(server: &Server) -> String {
    eventually("/readyz turns 503", async || {
        let readyz = get(&server.admin_url("/readyz")).await;
        if readyz.status() != 503 {
            return None;
        }
        Some(readyz.text().await.expect("text"))
    })
    .await
}

/// Polls until the public listener refuses new connections.
async fn wait_until_refused(addr: SocketAddr) {
    eventually("the public listener closes during the drain", async || {
        TcpStream::connect(addr).await.is_err().then_some(())
    })
    .await;
}

#[tokio::test]
async fn during_the_drain_delay_new_requests_are_served_while_not_ready() {
    let mut config = config();
    config.drain_delay = Delay::from_secs(2);
    let server = Server::start_with(config).await;
    server.shutdown.trigger();
    wait_for_readyz_503(&server).await;
    // Not ready, yet a client a load balancer still routes here is served.
    let served = reqwest::Client::new()
        .get(server.url("/ok"))
        .header("connection", "close")
        .send()
        .await
        .expect("a new connection is accepted during the delay");
    assert_eq!(served.status(), 200);
    assert_eq!(served.text().await.expect("body"), "ok");
    wait_until_refused(server.running.public_addr()).await;
    tokio::time::timeout(HANG_GUARD, server.running.wait())
        .await
        .expect("the server stops after the drain");
}

#[tokio::test]
async fn a_drain_finishes_in_flight_requests_and_refuses_new_ones() {
    let server = Server::start().await;
    let in_flight = tokio::spawn(reqwest::get(server.url("/slow/800")));
    // The drain starts once the request is in the handler.
    eventually("the request is in flight", async || {
        let metrics = get(&server.admin_url("/metrics"))
            .await
            .text()
            .await
            .expect("text");
        metrics
            .contains(r#"http_server_active_requests{bff="test"} 1"#)
            .then_some(())
    })
    .await;
    server.shutdown.trigger();
    let readyz = wait_for_readyz_503(&server).await;
    assert!(readyz.contains("draining"), "{readyz}");
    wait_until_refused(server.running.public_addr()).await;

    let response = tokio::time::timeout(HANG_GUARD, in_flight)
        .await
        .expect("in time")
        .expect("task")
        .expect("the in-flight request completes");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "done");
    tokio::time::timeout(HANG_GUARD, server.running.wait())
        .await
        .expect("the server stops after the drain");
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let server = Server::start().await;
    for (path, status) in [("/ok", 200), ("/missing", 404), ("/panic", 500)] {
        let answer = get(&server.url(path)).await;
        assert_eq!(answer.status().as_u16(), status, "{path}");
        let headers = answer.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(
            headers["content-security-policy"], "default-src 'none'; frame-ancestors 'none'",
            "{path}"
        );
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert!(headers.get("strict-transport-security").is_none());
    }
}

/// GETs `url` asking for `encoding`; the status, headers and raw body.
async fn get_encoded(
    url: &str,
    encoding: Option<&str>,
    if_none_match: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(encoding) = encoding {
        request = request.header("accept-encoding", encoding);
    }
    if let Some(tag) = if_none_match {
        request = request.header("if-none-match", tag);
    }
    let answer = tokio::time::timeout(HANG_GUARD, request.send())
        .await
        .expect("answered in time")
        .expect("request succeeds");
    let status = answer.status().as_u16();
    let headers = answer.headers().clone();
    (
        status,
        headers,
        answer.bytes().await.expect("body").to_vec(),
    )
}

fn decoded(encoding: Option<&str>, body: &[u8]) -> Value {
    use std::io::Read;
    let mut plain = Vec::new();
    match encoding {
        Some("br") => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut plain)
                .expect("valid brotli");
        }
        Some("gzip") => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut plain)
                .expect("valid gzip");
        }
        _ => plain = body.to_vec(),
    }
    serde_json::from_slice(&plain).expect("json once decoded")
}

#[tokio::test]
async fn answers_over_a_kilobyte_are_compressed_as_the_client_prefers() {
    let server = Server::start().await;
    let page = server.url("/page");
    for (asked, chosen) in [
        (Some("br, gzip"), Some("br")),
        (Some("gzip;q=1, br;q=0.5"), Some("gzip")),
        (Some("gzip"), Some("gzip")),
        (Some("identity"), None),
        (None, None),
    ] {
        let (status, headers, body) = get_encoded(&page, asked, None).await;
        assert_eq!(status, 200);
        let encoding = headers
            .get("content-encoding")
            .map(|value| value.to_str().expect("ascii"));
        assert_eq!(encoding, chosen, "asked {asked:?}");
        assert_eq!(decoded(encoding, &body), big_page(), "asked {asked:?}");
        assert_eq!(headers["vary"], "accept-encoding", "asked {asked:?}");
        if chosen.is_some() {
            assert!(body.len() < 2048, "compressed: {} bytes", body.len());
        }
    }
    // A small answer goes as it is.
    let (_, headers, body) = get_encoded(&server.url("/ok"), Some("br, gzip"), None).await;
    assert!(headers.get("content-encoding").is_none());
    assert_eq!(body, b"ok");

    let mut off = config();
    off.compression = false;
    let uncompressed = Server::start_with(off).await;
    let (_, headers, body) = get_encoded(&uncompressed.url("/page"), Some("br"), None).await;
    assert!(headers.get("content-encoding").is_none());
    assert_eq!(decoded(None, &body), big_page());
}

#[tokio::test]
async fn a_page_the_client_holds_is_a_304_in_every_encoding() {
    let server = Server::start().await;
    let page = server.url("/tagged-page");
    for encoding in [None, Some("gzip"), Some("br")] {
        let (status, headers, body) = get_encoded(&page, encoding, None).await;
        assert_eq!(status, 200);
        assert_eq!(headers["cache-control"], "private, max-age=30");
        assert_eq!(
            decoded(
                headers
                    .get("content-encoding")
                    .map(|v| v.to_str().expect("ascii")),
                &body
            ),
            big_page()
        );
        let tag = headers["etag"].to_str().expect("ascii").to_owned();
        assert!(
            tag.starts_with('"') && !tag.starts_with("W/"),
            "strong: {tag}"
        );
        match encoding {
            Some(coding) => assert!(tag.ends_with(&format!("-{coding}\"")), "{tag}"),
            None => assert_eq!(tag.len(), 34, "{tag}"),
        }

        let (status, again, body) = get_encoded(&page, encoding, Some(&tag)).await;
        assert_eq!(status, 304, "{encoding:?}");
        assert!(body.is_empty());
        assert_eq!(again["etag"], tag.as_str());
        assert_eq!(again["cache-control"], "private, max-age=30");
        assert_eq!(again["vary"], "accept-encoding");
        assert!(again.get("content-encoding").is_none());
        assert!(again.get("content-type").is_none());
    }
    // Another tag, or none: the page again.
    let (status, _, _) = get_encoded(&page, None, Some("\"0123\"")).await;
    assert_eq!(status, 200);
    // Routes without the layer carry no validator.
    let (_, headers, _) = get_encoded(&server.url("/page"), None, None).await;
    assert!(headers.get("etag").is_none());
}
