//! The server every BFF runs: a public listener, an admin listener and the
//! layer stack between them and the BFF's routes.
//!
//! [`Gateway::serve`] wraps the BFF's [`Router`] in the shared stack (the
//! request path of `docs/architecture.md`). Layers are listed outermost
//! first; each sees the request before the next and the response after it:
//!
//! 1. `TraceContextLayer`: W3C trace context and `x-request-id`, first so
//!    that every later log line and error carries the trace id.
//! 2. `AccessLogLayer`: the request span, access-log line and latency
//!    histogram, outside everything that can answer early.
//! 3. security headers: `X-Content-Type-Options: nosniff`, a
//!    `Content-Security-Policy` of `default-src 'none'`, `Referrer-Policy:
//!    no-referrer` and the BFF's own ([`Gateway::with_response_headers`]) on
//!    every answer whose route did not set its own, outside what can fail.
//! 4. `server_timing`: `Server-Timing` on every response, errors too:
//!    the total and each downstream call.
//! 5. [`ProblemLayer`]: every error response rendered as problem+json with the trace id.
//! 6. `CatchPanicLayer`: a panicking handler becomes a 500 problem, never a dropped connection.
//! 7. `HygieneLayer`: one valid `Host`, hop-by-hop and forged `X-Auth-*` headers
//!    removed, the path normalised once, before anything routes on it.
//! 8. `BodyDeadlineLayer`: the whole body within `body_read_timeout` (408).
//! 9. tower-http's `RequestBodyLimitLayer`: body size (413).
//! 10. [`deadline`]: the request's [`crate::context::Deadline`],
//!     `request_timeout` or sooner if the client asks (`X-Request-Timeout`);
//!     past it, 504.
//! 11. `fan_out`: the request's [`crate::context::FanOut`], bounding its
//!     downstream calls under way (`max_fan_out`) and collecting the parts
//!     that degraded, written as `BFF-Partial` on a 2xx (see
//!     [`crate::downstream::aggregate`]).
//! 12. tower-http's `CompressionLayer`: br or gzip as the client prefers,
//!     over [`COMPRESS_ABOVE_BYTES`] (`compression`); a compressed page's
//!     `ETag` names its coding ([`crate::conditional::tag_with_coding`]).
//! 13. the router, which records the matched route template for the access log
//!     and answers unknown routes with a problem+json 404 (after the
//!     fallback routes, [`Gateway::with_fallback`], had their turn). Inside
//!     it, each BFF adds its own layers and authentication (see `bff`).
//!
//! Connections are handled by [`serve_connections`]: header-read and send
//! timeouts, header count and size limits (431), connection cap, and
//! graceful drain.
//!
//! # Shutdown
//!
//! When the [`Shutdown`] given to [`Gateway::serve`] triggers, `/readyz`
//! answers 503 at once while the public listener keeps accepting and
//! serving for `drain_delay`, long enough for load balancers and Kubernetes
//! endpoints to notice and stop routing here. Then the listener stops
//! accepting, in-flight requests finish (keep-alive connections close after
//! their current request), and after at most `drain_grace` the public side
//! stops. The admin listener stops last, so probes see the drain.

mod admin;
mod conn;
pub mod deadline;
mod hygiene;
mod limits;
pub mod pages;
mod termination;

pub use conn::{
    ConnectionLimits, MAX_LOCAL_ERROR_RESETS, MAX_PENDING_RESETS, Transport, serve_connections,
};
pub use deadline::REQUEST_TIMEOUT_HEADER;
pub use hygiene::remove_headers_where;
pub(crate) use hygiene::strip_hop_by_hop;
pub use termination::{ServerTlsConfig, TlsTermination};

use std::{
    any::Any,
    net::SocketAddr,
    num::{NonZeroU32, NonZeroUsize},
};

use axum::{
    Router,
    body::Body,
    extract::{DefaultBodyLimit, Request},
    http::{Extensions, HeaderMap, HeaderValue, StatusCode, Version, header},
    middleware,
    response::{IntoResponse, Response},
};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::{net::TcpListener, task::JoinHandle};
use tower::ServiceBuilder;
use tower_http::{
    CompressionLevel,
    catch_panic::CatchPanicLayer,
    compression::{
        CompressionLayer,
        predicate::{NotForContentType, Predicate, SizeAbove},
    },
    limit::RequestBodyLimitLayer,
};

use crate::{
    Error, conditional,
    config::{ConfigError, Delay, HumanDuration, Validate},
    downstream,
    error::{ProblemDetails, ProblemLayer},
    lifecycle::{Readiness, Shutdown},
    observability::{AccessLogLayer, RouteTemplate, Telemetry, TraceContextLayer, server_timing},
};
use hygiene::HygieneLayer;
use limits::BodyDeadlineLayer;

/// Listener and limit settings (`[server]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Public listener address.
    pub listen: SocketAddr,
    /// Admin listener address (`/healthz`, `/readyz`, `/metrics`); keep it private.
    pub admin_listen: SocketAddr,
    /// Longest time to answer a request, including downstream calls (default `15s`).
    #[serde(default = "ServerConfig::default_request_timeout")]
    pub request_timeout: HumanDuration,
    /// Longest time a client may take to send its request headers, and to
    /// start a new request on an idle keep-alive connection (default `10s`).
    #[serde(default = "ServerConfig::default_header_read_timeout")]
    pub header_read_timeout: HumanDuration,
    /// Longest time a client may take to send its request body (default `10s`).
    #[serde(default = "ServerConfig::default_body_read_timeout")]
    pub body_read_timeout: HumanDuration,
    /// Longest time a write of the response may wait for the client to read
    /// (default `30s`); past it the connection is closed.
    #[serde(default = "ServerConfig::default_send_timeout")]
    pub send_timeout: HumanDuration,
    /// On shutdown, how long to keep serving after `/readyz` turned 503, so
    /// load balancers stop routing here first (default `5s`; `0s` stops
    /// accepting at once).
    #[serde(default = "ServerConfig::default_drain_delay")]
    pub drain_delay: Delay,
    /// Longest wait for in-flight requests on shutdown, after `drain_delay` (default `30s`).
    #[serde(default = "ServerConfig::default_drain_grace")]
    pub drain_grace: HumanDuration,
    /// Largest request body in bytes (default 1 MiB).
    #[serde(default = "ServerConfig::default_max_body_bytes")]
    pub max_body_bytes: NonZeroUsize,
    /// Largest request head (request line and headers) in bytes (default 16 KiB).
    #[serde(default = "ServerConfig::default_max_header_bytes")]
    pub max_header_bytes: NonZeroUsize,
    /// Most request headers (default 100).
    #[serde(default = "ServerConfig::default_max_headers")]
    pub max_headers: NonZeroUsize,
    /// Most concurrent public connections (default 10000).
    #[serde(default = "ServerConfig::default_max_connections")]
    pub max_connections: NonZeroUsize,
    /// Most downstream calls one request has under way at once; more wait
    /// for a slot (default 16).
    #[serde(default = "ServerConfig::default_max_fan_out")]
    pub max_fan_out: NonZeroUsize,
    /// Answers over [`COMPRESS_ABOVE_BYTES`] compressed with br or gzip as
    /// the client's `Accept-Encoding` prefers (default `true`).
    #[serde(default = "ServerConfig::default_compression")]
    pub compression: bool,
    /// Peers whose `X-Forwarded-For` is believed (CIDRs: the load
    /// balancers); empty (the default): the socket peer is the client.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    /// TLS on the public listener; absent (the default): cleartext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsConfig>,
    /// In cleartext, serve HTTP/2 to clients that open with its preface
    /// (h2c with prior knowledge, behind a TLS-terminating balancer)
    /// beside HTTP/1.1 (default `false`).
    #[serde(default)]
    pub h2c: bool,
    /// Most concurrent streams of one HTTP/2 connection (default 100).
    #[serde(default = "ServerConfig::default_http2_max_concurrent_streams")]
    pub http2_max_concurrent_streams: NonZeroU32,
}

/// Answers this large or smaller go as they are: compressing a few hundred
/// bytes saves less than it costs.
pub const COMPRESS_ABOVE_BYTES: u16 = 1024;

/// Whether a request says its body is JSON: `Content-Type:
/// application/json`, with or without parameters such as a charset. A
/// route that reads JSON refuses anything else with a 415, which also keeps
/// browsers' simple cross-site requests (`text/plain`, forms) out.
pub fn has_json_body(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// A `201 Created` answer: `body` as JSON, the new resource at `location`
/// (a path), never stored by a cache.
pub fn created(location: String, body: impl Serialize) -> Response {
    match HeaderValue::try_from(location) {
        Ok(location) => (
            StatusCode::CREATED,
            [
                (header::LOCATION, location),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            axum::Json(body),
        )
            .into_response(),
        Err(_) => Error::Internal("a created resource's location is not header-safe".to_owned())
            .into_response(),
    }
}

/// Why a request's body is not a JSON document a route can read.
#[derive(Debug, thiserror::Error)]
pub enum JsonBodyError {
    /// The body is declared as another media type (415).
    #[error("the body must be application/json")]
    NotJson,
    /// The body does not parse; says where (400).
    #[error("the body is not valid JSON: {0}")]
    Malformed(String),
}

impl ProblemDetails for JsonBodyError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::NotJson => "UNSUPPORTED_MEDIA_TYPE",
            Self::Malformed(_) => "MALFORMED_JSON",
        }
    }

    fn client_detail(&self) -> String {
        self.to_string()
    }
}

/// A request's JSON body as a value, for a route that checks its fields
/// one by one (and names every wrong one) rather than failing on the first
/// as a typed parse would: a 415 unless [`has_json_body`], a 400 naming the
/// line and column where it stops being JSON.
pub fn json_body(headers: &HeaderMap, body: &[u8]) -> Result<serde_json::Value, JsonBodyError> {
    if !has_json_body(headers) {
        return Err(JsonBodyError::NotJson);
    }
    serde_json::from_slice(body).map_err(|error| {
        JsonBodyError::Malformed(format!(
            "{} at line {}, column {}",
            match error.classify() {
                serde_json::error::Category::Eof => "it ends too early",
                _ => "unexpected input",
            },
            error.line(),
            error.column()
        ))
    })
}

/// Headers every answer carries unless its route set its own: a JSON API
/// is never sniffed as another type, framed, loaded as a document's
/// resources or told where the caller came from.
const SECURITY_HEADERS: [(header::HeaderName, &str); 3] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'",
    ),
    (header::REFERRER_POLICY, "no-referrer"),
];

impl ServerConfig {
    const fn default_request_timeout() -> HumanDuration {
        HumanDuration::from_secs(15)
    }
    const fn default_header_read_timeout() -> HumanDuration {
        HumanDuration::from_secs(10)
    }
    const fn default_body_read_timeout() -> HumanDuration {
        HumanDuration::from_secs(10)
    }
    const fn default_send_timeout() -> HumanDuration {
        HumanDuration::from_secs(30)
    }
    const fn default_drain_delay() -> Delay {
        Delay::from_secs(5)
    }
    const fn default_drain_grace() -> HumanDuration {
        HumanDuration::from_secs(30)
    }
    const fn default_max_body_bytes() -> NonZeroUsize {
        NonZeroUsize::new(1024 * 1024).expect("non-zero")
    }
    const fn default_max_header_bytes() -> NonZeroUsize {
        NonZeroUsize::new(16 * 1024).expect("non-zero")
    }
    const fn default_max_headers() -> NonZeroUsize {
        NonZeroUsize::new(100).expect("non-zero")
    }
    const fn default_max_connections() -> NonZeroUsize {
        NonZeroUsize::new(10_000).expect("non-zero")
    }
    const fn default_max_fan_out() -> NonZeroUsize {
        NonZeroUsize::new(16).expect("non-zero")
    }
    const fn default_compression() -> bool {
        true
    }
    const fn default_http2_max_concurrent_streams() -> NonZeroU32 {
        NonZeroU32::new(100).expect("non-zero")
    }

    /// Defaults with the public listener on `0.0.0.0:{port}` and the admin
    /// listener on `127.0.0.1:{admin_port}`.
    pub fn with_ports(port: u16, admin_port: u16) -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], port)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], admin_port)),
            request_timeout: Self::default_request_timeout(),
            header_read_timeout: Self::default_header_read_timeout(),
            body_read_timeout: Self::default_body_read_timeout(),
            send_timeout: Self::default_send_timeout(),
            drain_delay: Self::default_drain_delay(),
            drain_grace: Self::default_drain_grace(),
            max_body_bytes: Self::default_max_body_bytes(),
            max_header_bytes: Self::default_max_header_bytes(),
            max_headers: Self::default_max_headers(),
            max_connections: Self::default_max_connections(),
            max_fan_out: Self::default_max_fan_out(),
            compression: Self::default_compression(),
            trusted_proxies: Vec::new(),
            tls: None,
            h2c: false,
            http2_max_concurrent_streams: Self::default_http2_max_concurrent_streams(),
        }
    }
}

impl Validate for ServerConfig {
    /// Checks across fields.
    fn validate(&self) -> Result<(), ConfigError> {
        if self.listen == self.admin_listen && self.listen.port() != 0 {
            return Err(ConfigError::rule(
                "server.admin_listen",
                "must differ from server.listen",
            ));
        }
        if self.max_header_bytes.get() < 1024 {
            return Err(ConfigError::rule(
                "server.max_header_bytes",
                "must be at least 1024",
            ));
        }
        if let Some(tls) = &self.tls {
            if self.h2c {
                return Err(ConfigError::rule(
                    "server.h2c",
                    "is HTTP/2 in cleartext, but [server.tls] is set: with TLS, HTTP/2 is offered by ALPN",
                ));
            }
            tls.check()?;
        }
        Ok(())
    }
}

/// Failure to start serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The certificate and key of `[server.tls]` cannot be used.
    #[error(transparent)]
    Tls(#[from] ConfigError),
    /// A listener address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A BFF's server, before it serves.
#[derive(Debug)]
pub struct Gateway {
    name: &'static str,
    config: ServerConfig,
    telemetry: Telemetry,
    readiness: Readiness,
    fallback: Option<Router>,
    admin_routes: Router,
    /// What every answer carries unless its route set its own: the
    /// [`SECURITY_HEADERS`] and the BFF's ([`Self::with_response_headers`]).
    response_headers: HeaderMap,
}

impl Gateway {
    /// A server named `name` (used in logs), recording into `telemetry`.
    pub fn new(name: &'static str, config: ServerConfig, telemetry: Telemetry) -> Self {
        Self {
            name,
            config,
            telemetry,
            readiness: Readiness::default(),
            fallback: None,
            admin_routes: Router::new(),
            response_headers: SECURITY_HEADERS
                .into_iter()
                .map(|(name, value)| (name, HeaderValue::from_static(value)))
                .collect(),
        }
    }

    /// Adds `headers` to every answer, errors included, unless its route
    /// set its own (`Strict-Transport-Security`, for one).
    pub fn with_response_headers(mut self, headers: HeaderMap) -> Self {
        self.response_headers.extend(headers);
        self
    }

    /// Serves `routes` on the admin listener too, beside `/healthz`,
    /// `/readyz` and `/metrics` (the cache's invalidation, for one).
    pub fn with_admin(mut self, routes: Router) -> Self {
        self.admin_routes = self.admin_routes.merge(routes);
        self
    }

    /// Serves the requests no route of the app matches with `routes`
    /// before they become a 404 problem: the app's own routes always take
    /// precedence (pass-through routes are served so).
    pub fn with_fallback(mut self, routes: Router) -> Self {
        self.fallback = Some(routes);
        self
    }

    /// The readiness `/readyz` reports; modules register their gates here before serving.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// Binds both listeners and serves `routes` behind the layer stack until
    /// `shutdown` triggers; see the module docs.
    pub async fn serve(self, routes: Router, shutdown: Shutdown) -> Result<Running, ServeError> {
        let Self {
            name,
            config,
            telemetry,
            readiness,
            fallback,
            admin_routes,
            response_headers,
        } = self;
        let public = bind(config.listen).await?;
        let admin = bind(config.admin_listen).await?;
        let public_addr = public.local_addr().map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
        let admin_addr = admin.local_addr().map_err(|source| ServeError::Bind {
            addr: config.admin_listen,
            source,
        })?;

        let app = routes
            .layer(middleware::from_fn(RouteTemplate::record))
            // The body limit below is the one limit; axum's own 2 MiB default would cap it.
            .layer(DefaultBodyLimit::disable());
        let app = match fallback {
            None => app.fallback(route_not_found),
            Some(fallback) => app.fallback_service(
                fallback
                    .layer(middleware::from_fn(RouteTemplate::record))
                    .fallback(route_not_found),
            ),
        };
        let max_body_bytes = config.max_body_bytes.get();
        let compression_on = config.compression;
        let compression = CompressionLayer::new()
            // Answers are made per request: brotli and gzip at 4 shrink JSON
            // nearly as much as at their slowest, for a fraction of the CPU.
            .quality(CompressionLevel::Precise(4))
            .compress_when(
                SizeAbove::new(COMPRESS_ABOVE_BYTES)
                    .and(NotForContentType::GRPC)
                    .and(NotForContentType::IMAGES)
                    .and(NotForContentType::SSE)
                    .and(
                        move |_: StatusCode, _: Version, _: &HeaderMap, _: &Extensions| {
                            compression_on
                        },
                    ),
            );
        let stack = ServiceBuilder::new()
            .layer(middleware::from_fn_with_state(
                shutdown.clone(),
                close_while_draining,
            ))
            .layer(TraceContextLayer)
            .layer(AccessLogLayer::new(name, telemetry.http().clone()))
            .map_response(move |mut response: Response| {
                for (name, value) in &response_headers {
                    if !response.headers().contains_key(name) {
                        response.headers_mut().insert(name, value.clone());
                    }
                }
                response
            })
            .layer(middleware::from_fn(server_timing))
            .layer(ProblemLayer)
            .map_response(|response: http::Response<_>| response.map(Body::new))
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(HygieneLayer)
            .layer(BodyDeadlineLayer::new(config.body_read_timeout.get()))
            .map_response(move |response: http::Response<_>| {
                limits::payload_too_large(response.map(Body::new), max_body_bytes)
            })
            .layer(RequestBodyLimitLayer::new(max_body_bytes))
            .map_request(|request: http::Request<_>| request.map(Body::new))
            .layer(middleware::from_fn_with_state(
                config.request_timeout.get(),
                deadline::deadline,
            ))
            .layer(middleware::from_fn_with_state(
                config.max_fan_out,
                downstream::aggregate::fan_out,
            ))
            // Innermost: compresses what the routes answer, and names the
            // coding in a page's tag (see `conditional`).
            .map_response(|mut response: http::Response<_>| {
                conditional::tag_with_coding(response.headers_mut());
                response.map(Body::new)
            })
            .layer(compression)
            .service(app);

        let limits = ConnectionLimits {
            header_read_timeout: config.header_read_timeout.get(),
            send_timeout: config.send_timeout.get(),
            max_headers: config.max_headers.get(),
            max_header_bytes: config.max_header_bytes.get(),
            max_connections: config.max_connections.get(),
            http2_max_concurrent_streams: config.http2_max_concurrent_streams.get(),
        };
        let transport = match (&config.tls, config.h2c) {
            (Some(tls), _) => Transport::Tls(TlsTermination::start(tls, &telemetry, &shutdown)?),
            (None, true) => Transport::Cleartext,
            (None, false) => Transport::Http1,
        };
        let admin_limits = ConnectionLimits {
            max_connections: 64,
            ..limits
        };
        let admin_stop = Shutdown::new();
        let admin_task = tokio::spawn(conn::serve_connections(
            admin,
            Transport::Http1,
            admin::router(readiness.clone(), telemetry, admin_routes),
            admin_limits,
            admin_stop.clone(),
            config.drain_grace.get(),
        ));
        let grace = config.drain_grace.get();
        let drain_delay = config.drain_delay.get();
        let task = tokio::spawn(async move {
            let public_stop = Shutdown::new();
            let public_task = tokio::spawn(conn::serve_connections(
                public,
                transport,
                stack,
                limits,
                public_stop.clone(),
                grace,
            ));
            shutdown.triggered().await;
            readiness.start_draining();
            tracing::info!(
                service = name,
                drain_delay = ?drain_delay,
                "draining: not ready; serving on while load balancers notice"
            );
            tokio::time::sleep(drain_delay).await;
            tracing::info!(service = name, "draining: no new connections");
            public_stop.trigger();
            if let Err(error) = public_task.await {
                tracing::error!(%error, "public listener task failed");
            }
            admin_stop.trigger();
            if let Err(error) = admin_task.await {
                tracing::error!(%error, "admin listener task failed");
            }
            tracing::info!(service = name, "stopped");
        });
        tracing::info!(service = name, public = %public_addr, admin = %admin_addr, "listening");
        Ok(Running {
            public_addr,
            admin_addr,
            task,
        })
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// While the process drains, an HTTP/1.1 answer carries `Connection:
/// close`, so its client opens a new connection for the next request,
/// which the load balancer (no longer seeing this instance ready) sends to
/// another, instead of reusing this one until the drain closes it under a
/// request. HTTP/2 is told by `GOAWAY` when the listener stops.
async fn close_while_draining(
    axum::extract::State(shutdown): axum::extract::State<Shutdown>,
    request: Request,
    next: middleware::Next,
) -> Response {
    let http1 = request.version() <= Version::HTTP_11;
    let mut response = next.run(request).await;
    if http1 && shutdown.is_triggered() {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn route_not_found(request: Request) -> Response {
    Error::RouteNotFound {
        method: request.method().clone(),
        path: request.uri().path().to_owned(),
    }
    .into_response()
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-text panic payload".to_owned());
    tracing::error!(panic = %message, "handler panicked");
    Error::Internal(message).into_response()
}

/// A server that is serving.
#[derive(Debug)]
pub struct Running {
    public_addr: SocketAddr,
    admin_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Running {
    /// The bound public address (with the real port when configured as 0).
    pub fn public_addr(&self) -> SocketAddr {
        self.public_addr
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Completes when the server has drained and stopped.
    pub async fn wait(self) {
        if let Err(error) = self.task.await {
            tracing::error!(%error, "server task failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_json_content_type_says_json() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            headers
        };
        assert!(has_json_body(&with("application/json")));
        assert!(has_json_body(&with("Application/JSON; charset=utf-8")));
        assert!(!has_json_body(&with("text/plain")));
        assert!(!has_json_body(&with("application/x-www-form-urlencoded")));
        assert!(!has_json_body(&with("multipart/form-data; boundary=x")));
        assert!(!has_json_body(&HeaderMap::new()));
    }

    #[test]
    fn a_json_body_is_read_or_refused_with_where_it_broke() {
        let json = |media: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(media).expect("header"),
            );
            headers
        };
        let value = json_body(&json("application/json"), br#"{"a": [1]}"#).expect("JSON");
        assert_eq!(value["a"][0], 1);
        let refused = json_body(&json("text/plain"), b"{}").expect_err("not JSON");
        assert_eq!(
            (refused.status(), refused.code()),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE")
        );
        let broken = json_body(
            &json("application/json"),
            b"{\"lines\": [\n  {\"productId\": 1,}\n]}",
        )
        .expect_err("malformed");
        assert_eq!(
            (broken.status(), broken.code()),
            (StatusCode::BAD_REQUEST, "MALFORMED_JSON")
        );
        assert!(broken.to_string().contains("line 2"), "{broken}");
    }
}
