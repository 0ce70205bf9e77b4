//! The pooled HTTP client of one downstream service.
//!
//! Built on hyper-util's pooled client rather than a higher-level one so
//! that a call builds its request URI from parts: the service's scheme and
//! authority are parsed once at start and shared, and only the path is new
//! per call. No URL string is formatted or parsed on the hot path. `https`
//! services are verified with the [`ClientTls`] of `[client_tls]`, or the
//! service's own `ca_file`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{
    HeaderValue, Method, Request, StatusCode, Uri, header,
    uri::{Authority, PathAndQuery, Scheme},
};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use serde::{Serialize, de::DeserializeOwned};
use tracing::Instrument;

use super::{DownstreamConfig, DownstreamError, error::BoxError};
use crate::{
    context::RequestContext,
    identity::VerifiedIdentity,
    observability::{
        DownstreamMetrics, REQUEST_ID, TRACEPARENT, TRACESTATE, Telemetry, client_span,
        record_call, span_ids,
    },
    tls::{ClientTls, TlsError},
};

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A client could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    /// The BFF lists the service but the configuration has no section for it.
    #[error("downstream.{0}: missing: the service is called but not configured")]
    NotConfigured(&'static str),
    /// The host and port of the URL do not form a request authority.
    #[error("downstream.{service}.url: {reason}")]
    InvalidUrl {
        /// The service.
        service: &'static str,
        /// Why.
        reason: String,
    },
    /// The service's own CA file cannot be used.
    #[error("downstream.{service}.ca_file: {source}")]
    CaFile {
        /// The service.
        service: &'static str,
        /// Why.
        source: TlsError,
    },
}

/// The client of one downstream service; cheap to clone.
#[derive(Debug, Clone)]
pub struct DownstreamClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    service: &'static str,
    scheme: Scheme,
    authority: Authority,
    /// The URL's path without its trailing slash, put before every call's
    /// path; empty for a service at the root.
    base_path: String,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    max_response_bytes: usize,
    metrics: DownstreamMetrics,
}

impl DownstreamClient {
    /// Builds the pooled client of the service named `service`; `tls`
    /// verifies it when its URL is `https` and it has no `ca_file` of its own.
    pub fn new(
        service: &'static str,
        config: &DownstreamConfig,
        tls: &ClientTls,
        telemetry: &Telemetry,
    ) -> Result<Self, ClientBuildError> {
        let url = config.url.url();
        let host = url.host_str().unwrap_or_default();
        let authority = match url.port() {
            Some(port) => Authority::try_from(format!("{host}:{port}")),
            None => Authority::try_from(host),
        }
        .map_err(|error| ClientBuildError::InvalidUrl {
            service,
            reason: error.to_string(),
        })?;
        let own_tls;
        let tls = match &config.ca_file {
            Some(path) => {
                own_tls = ClientTls::load(Some(path))
                    .map_err(|source| ClientBuildError::CaFile { service, source })?;
                &own_tls
            }
            None => tls,
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.connect_timeout.get()));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout.get())
            .pool_max_idle_per_host(config.pool_max_idle)
            .build(tls.connector(connector));
        Ok(Self {
            inner: Arc::new(Inner {
                service,
                scheme: match url.scheme() {
                    "https" => Scheme::HTTPS,
                    _ => Scheme::HTTP,
                },
                authority,
                base_path: url.path().trim_end_matches('/').to_owned(),
                client,
                timeout: config.timeout.get(),
                max_response_bytes: config.max_response_bytes.get(),
                metrics: telemetry.downstream().clone(),
            }),
        })
    }

    /// The service's name, as used in metrics and errors.
    pub fn service(&self) -> &'static str {
        self.inner.service
    }

    /// `GET {base}{path_and_query}`, decoding a JSON answer. A `String`
    /// path becomes the request's path without being copied.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path_and_query: impl Into<String>,
        context: &RequestContext,
    ) -> Result<T, DownstreamError> {
        let uri = self.uri(path_and_query.into())?;
        self.send(Method::GET, uri, Full::default(), context).await
    }

    /// `POST {base}{path}` with a JSON body, decoding a JSON answer.
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        context: &RequestContext,
    ) -> Result<T, DownstreamError> {
        let body = serde_json::to_vec(body).map_err(|source| DownstreamError::InvalidBody {
            service: self.inner.service,
            source,
        })?;
        let uri = self.uri(path.to_owned())?;
        self.send(Method::POST, uri, Full::new(Bytes::from(body)), context)
            .await
    }

    /// The request URI: the shared scheme and authority, and the path.
    fn uri(&self, path_and_query: String) -> Result<Uri, DownstreamError> {
        debug_assert!(
            path_and_query.starts_with('/'),
            "downstream paths are absolute"
        );
        let base = &self.inner.base_path;
        let full = if base.is_empty() {
            path_and_query
        } else {
            let mut full = String::with_capacity(base.len() + path_and_query.len());
            full.push_str(base);
            full.push_str(&path_and_query);
            full
        };
        let invalid = |_| DownstreamError::InvalidPath {
            service: self.inner.service,
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.inner.scheme.clone());
        parts.authority = Some(self.inner.authority.clone());
        parts.path_and_query =
            Some(PathAndQuery::from_maybe_shared(Bytes::from(full)).map_err(invalid)?);
        Uri::from_parts(parts).map_err(|_| DownstreamError::InvalidPath {
            service: self.inner.service,
        })
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        uri: Uri,
        body: Full<Bytes>,
        context: &RequestContext,
    ) -> Result<T, DownstreamError> {
        let started = Instant::now();
        // An unsampled trace records no span: the service gets an id no span carries.
        let span = match context.trace.is_sampled() {
            true => client_span(self.inner.service, &method),
            false => tracing::Span::none(),
        };
        let result = match &context.identity {
            Some(identity) => {
                let mut request = Request::new(body);
                *request.uri_mut() = uri;
                // The service's parent is this call's exported span, when traces are exported.
                let traceparent = match span_ids(&span) {
                    Some((_, span_id, sampled)) => context.trace.traceparent_for(
                        span_id,
                        (context.trace.flags() & !0x01) | u8::from(sampled),
                    ),
                    None => context.trace.child_traceparent(),
                };
                with_context(request.headers_mut(), context, identity, traceparent);
                if method == Method::POST {
                    request
                        .headers_mut()
                        .insert(header::CONTENT_TYPE, APPLICATION_JSON);
                }
                *request.method_mut() = method;
                tokio::time::timeout(self.inner.timeout, self.exchange(request))
                    .instrument(span.clone())
                    .await
                    .unwrap_or_else(|_| {
                        Err(DownstreamError::Timeout {
                            service: self.inner.service,
                            timeout: self.inner.timeout,
                        })
                    })
            }
            // Fail closed: no service ever sees a request without its verified tenant.
            None => {
                tracing::error!(
                    service = self.inner.service,
                    "a route called a service for a request without a verified identity; not sent"
                );
                Err(DownstreamError::NoIdentity {
                    service: self.inner.service,
                })
            }
        };
        let outcome = match &result {
            Ok(_) => std::borrow::Cow::Borrowed("200"),
            Err(DownstreamError::Timeout { .. }) => "timeout".into(),
            Err(DownstreamError::NotFound { .. }) => "404".into(),
            Err(DownstreamError::Status { status, .. }) => status.as_u16().to_string().into(),
            Err(DownstreamError::Unavailable { .. }) => "error".into(),
            Err(DownstreamError::InvalidBody { .. } | DownstreamError::BodyTooLarge { .. }) => {
                "invalid".into()
            }
            Err(DownstreamError::InvalidPath { .. } | DownstreamError::NoIdentity { .. }) => {
                "not_sent".into()
            }
        };
        record_call(
            &span,
            &outcome,
            match &result {
                Ok(_) => Some(200),
                Err(DownstreamError::NotFound { .. }) => Some(404),
                Err(DownstreamError::Status { status, .. }) => Some(status.as_u16()),
                Err(_) => None,
            },
        );
        self.inner
            .metrics
            .observe(self.inner.service, outcome, started.elapsed());
        result
    }

    /// Sends `request` and reads the whole JSON answer.
    async fn exchange<T: DeserializeOwned>(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<T, DownstreamError> {
        let service = self.inner.service;
        let transport = |source: BoxError| {
            if is_timeout(source.as_ref()) {
                DownstreamError::Timeout {
                    service,
                    timeout: self.inner.timeout,
                }
            } else {
                DownstreamError::Unavailable { service, source }
            }
        };
        let response = self
            .inner
            .client
            .request(request)
            .await
            .map_err(|error| transport(error.into()))?;
        match response.status() {
            status if status.is_success() => {}
            StatusCode::NOT_FOUND => return Err(DownstreamError::NotFound { service }),
            status => return Err(DownstreamError::Status { service, status }),
        }
        let limit = self.inner.max_response_bytes;
        let declared = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            return Err(DownstreamError::BodyTooLarge { service, limit });
        }
        let body = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|error| {
                if error.is::<LengthLimitError>() {
                    DownstreamError::BodyTooLarge { service, limit }
                } else {
                    transport(error)
                }
            })?
            .to_bytes();
        serde_json::from_slice(&body)
            .map_err(|source| DownstreamError::InvalidBody { service, source })
    }
}

/// True when a transport error was caused by a timeout (connecting, most often).
fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        cause = error.source();
    }
    false
}

/// Adds the trace headers and the identity headers the gateway sets itself.
fn with_context(
    headers: &mut http::HeaderMap,
    context: &RequestContext,
    identity: &VerifiedIdentity,
    traceparent: HeaderValue,
) {
    headers.insert(header::ACCEPT, APPLICATION_JSON);
    headers.insert(TRACEPARENT, traceparent);
    headers.insert(REQUEST_ID, context.request_id.clone());
    if let Some(state) = context.trace.tracestate() {
        headers.insert(TRACESTATE, state.clone());
    }
    for (name, value) in identity.forwarded_headers() {
        headers.insert(name, value.clone());
    }
}
