//! The access log and the request latency histogram.
//!
//! [`AccessLogLayer`] wraps each request in a `request` span carrying its
//! `trace_id` and `request_id` (so every log line of the request has them),
//! and when the response is ready writes one access-log line and one latency
//! observation. The route is the template the router matched
//! (`/api/product-page/{id}`), recorded by [`RouteTemplate::record`] inside
//! the router; requests no route matched are logged as `unmatched`.
//!
//! One hand-written layer rather than tower-http's `TraceLayer`: the line,
//! the histogram and the active-requests gauge all need the route template
//! and the caller found on the response, which `TraceLayer` would spread
//! over four callbacks sharing state.

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::Response,
};
use futures_util::future::BoxFuture;
use tower::{Layer, Service};
use tracing::Instrument;

use super::{HttpMetrics, RequestId, RouteLabel, TraceContext};
use crate::identity::VerifiedIdentity;

/// Route label of requests that matched no route.
const UNMATCHED: &str = "unmatched";

/// The route template a request matched, carried on the response so the
/// access log outside the router can label by it (a shared handle to the
/// router's own string: nothing is copied per request).
#[derive(Debug, Clone)]
pub(crate) struct RouteTemplate(pub(crate) MatchedPath);

impl RouteTemplate {
    /// Router middleware (`Router::layer(from_fn(RouteTemplate::record))`)
    /// copying the matched route into the response extensions.
    pub(crate) async fn record(request: Request, next: Next) -> Response {
        let template = request.extensions().get::<MatchedPath>().cloned();
        let mut response = next.run(request).await;
        if let Some(template) = template {
            response.extensions_mut().insert(RouteTemplate(template));
        }
        response
    }
}

/// One access-log line, written when a response is ready.
#[derive(Debug)]
pub(crate) struct AccessLog<'a> {
    /// The HTTP method.
    pub(crate) method: &'a http::Method,
    /// The matched route template, or `unmatched`.
    pub(crate) route: RouteLabel,
    /// The response status.
    pub(crate) status: u16,
    /// Time from request head to response head.
    pub(crate) latency: std::time::Duration,
    /// The verified caller, when the request was authenticated.
    pub(crate) identity: Option<&'a VerifiedIdentity>,
}

impl AccessLog<'_> {
    fn emit(self, metrics: &HttpMetrics) {
        tracing::info!(
            target: "access",
            method = %self.method,
            route = self.route.as_str(),
            status = self.status,
            latency_ms = self.latency.as_secs_f64() * 1000.0,
            subject = self.identity.map(|identity| identity.subject.as_str()),
            tenant = self.identity.map(|identity| identity.tenant.as_str()),
            "request served"
        );
        metrics.observe(self.route, self.method, self.status, self.latency);
    }
}

/// Logs and measures every request; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct AccessLogLayer {
    service: &'static str,
    metrics: HttpMetrics,
}

impl AccessLogLayer {
    /// Logs as `service` (the BFF's name) and records into `metrics`.
    pub(crate) fn new(service: &'static str, metrics: HttpMetrics) -> Self {
        Self { service, metrics }
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLogService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessLogService {
            inner,
            service: self.service,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service of [`AccessLogLayer`].
#[derive(Debug, Clone)]
pub(crate) struct AccessLogService<S> {
    inner: S,
    service: &'static str,
    metrics: HttpMetrics,
}

impl<S> Service<Request> for AccessLogService<S>
where
    S: Service<Request, Response = Response> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let method = request.method().clone();
        let span = match (
            request.extensions().get::<TraceContext>(),
            request.extensions().get::<RequestId>(),
        ) {
            (Some(trace), Some(RequestId(id))) => tracing::info_span!(
                "request",
                service = self.service,
                trace_id = %trace.trace_id(),
                request_id = id.to_str().unwrap_or_default()
            ),
            _ => tracing::info_span!("request", service = self.service),
        };
        let active = self.metrics.track_active();
        let metrics = self.metrics.clone();
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Box::pin(
            async move {
                let response = future.await?;
                drop(active);
                let route = match response.extensions().get::<RouteTemplate>() {
                    Some(RouteTemplate(template)) => RouteLabel::Matched(template.clone()),
                    None => RouteLabel::Fixed(UNMATCHED),
                };
                AccessLog {
                    method: &method,
                    route,
                    status: response.status().as_u16(),
                    latency: started.elapsed(),
                    identity: response
                        .extensions()
                        .get::<Arc<VerifiedIdentity>>()
                        .map(Arc::as_ref),
                }
                .emit(&metrics);
                Ok(response)
            }
            .instrument(span),
        )
    }
}
