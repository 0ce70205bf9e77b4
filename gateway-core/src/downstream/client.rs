//! The client of one downstream service: its call stack, composed once at
//! start, around a pooled HTTP client.
//!
//! A call first waits for a slot among the calls its request may have
//! under way (`server.max_fan_out`, see [`super::aggregate`]), then goes
//! through, from the outside in:
//!
//! 1. **retries** ([`super::retry`]) of idempotent calls, within the
//!    service's retry budget and the call's deadline;
//! 2. the **circuit breaker** ([`super::breaker`]), for every attempt: while
//!    open, an attempt fails at once with 503 `DOWNSTREAM_CIRCUIT_OPEN`,
//!    without network I/O, so retries never go through an open circuit and
//!    each attempt's outcome is counted (the order resilience4j uses too);
//! 3. the **concurrency bound**: at most `max_concurrency` attempts in
//!    flight; over it an attempt waits at most `concurrency_wait` for a
//!    slot, then fails with 503 `DOWNSTREAM_OVERLOADED`, never queueing
//!    without bound;
//! 4. the **timeout**: what is left of the call's `timeout`, which covers
//!    every attempt and backoff, connect to last body byte (for an answer
//!    streamed through, [`DownstreamClient::forward`], to its head, then
//!    the same time between chunks).
//!
//! The layers are plain steps of [`DownstreamClient`] rather than tower
//! layers: a call is generic over the type its answer decodes to, the
//! breaker needs the decoded outcome, and the retry needs to rebuild the
//! request; one function shows the whole order.
//!
//! The HTTP client is hyper-util's pooled client rather than a higher-level
//! one, so that a call builds its request URI from parts: the service's
//! scheme and authority are parsed once at start and shared, and only the
//! path is new per call. No URL string is formatted or parsed on the hot
//! path. `https` services are verified with the [`ClientTls`] of
//! `[client_tls]`, or the service's own `ca_file`.

use std::{
    future::Future,
    marker::PhantomData,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU8, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::body::Body;
use bytes::Bytes;
use http::{
    HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header,
    uri::{Authority, PathAndQuery, Scheme},
};
use http_body::Frame;
use http_body_util::{BodyExt, Either, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use prometheus_client::metrics::gauge::Gauge;
use serde::{Serialize, de::DeserializeOwned};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};
use tower_http::timeout::TimeoutBody;
use tracing::Instrument;

use super::{
    DownstreamConfig, DownstreamError,
    breaker::Breaker,
    error::BoxError,
    retry::{Decision, RetryPolicy},
};
use crate::{
    auth::InternalTokens,
    cache::{Age, CacheKey, Entry, Filled, Found, Lookups, ResponseCache, ServiceCacheConfig},
    context::RequestContext,
    identity::{AUTH_TOKEN, VerifiedIdentity},
    observability::{
        DownstreamMetrics, REQUEST_ID, ServerTiming, TRACEPARENT, TRACESTATE, Telemetry,
        client_span, record_call, span_ids,
    },
    tls::{ClientTls, TlsError},
};

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// What the pooled client sends: a body kept whole (JSON calls, which a
/// retry can send again) or one streamed through from the client.
type ClientBody = Either<Full<Bytes>, Body>;

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
    client: Client<HttpsConnector<HttpConnector>, ClientBody>,
    timeout: Duration,
    max_response_bytes: usize,
    metrics: DownstreamMetrics,
    breaker: Breaker,
    retry: RetryPolicy,
    slots: Arc<Semaphore>,
    concurrency_wait: Duration,
    in_flight: Gauge,
    /// The response cache its `GET`s go through, unless the service's is off.
    cache: Option<ServiceCache>,
    /// Signs the caller into `X-Auth-Token`, when `[auth.internal_token]` is on.
    internal_tokens: Option<Arc<InternalTokens>>,
}

/// The response cache, how the service's answers are kept in it, and its
/// lookups counted.
#[derive(Debug, Clone)]
struct ServiceCache {
    cache: ResponseCache,
    config: ServiceCacheConfig,
    lookups: Lookups,
}

impl DownstreamClient {
    /// Builds the pooled client of the service named `service`; `tls`
    /// verifies it when its URL is `https` and it has no `ca_file` of its
    /// own. Its `GET`s go through `cache` unless the service's
    /// `[downstream.<name>.cache]` is off.
    pub fn new(
        service: &'static str,
        config: &DownstreamConfig,
        tls: &ClientTls,
        telemetry: &Telemetry,
        cache: Option<&ResponseCache>,
    ) -> Result<Self, ClientBuildError> {
        Self::signing(service, config, tls, telemetry, cache, None)
    }

    /// [`Self::new`], its calls also carrying the caller's internal token
    /// (`X-Auth-Token`) when `internal_tokens` is given.
    pub(crate) fn signing(
        service: &'static str,
        config: &DownstreamConfig,
        tls: &ClientTls,
        telemetry: &Telemetry,
        cache: Option<&ResponseCache>,
        internal_tokens: Option<Arc<InternalTokens>>,
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
                breaker: Breaker::new(service, &config.breaker, telemetry.downstream()),
                retry: RetryPolicy::new(&config.retry),
                slots: Arc::new(Semaphore::new(config.max_concurrency.get())),
                concurrency_wait: config.concurrency_wait.get(),
                in_flight: telemetry.downstream().in_flight(service),
                cache: cache
                    .filter(|_| config.cache.enabled)
                    .map(|cache| ServiceCache {
                        cache: cache.clone(),
                        config: config.cache,
                        lookups: cache.lookups(service),
                    }),
                internal_tokens,
            }),
        })
    }

    /// The service's name, as used in metrics and errors.
    pub fn service(&self) -> &'static str {
        self.inner.service
    }

    /// `GET {base}{path_and_query}`, decoding a JSON answer, through the
    /// response cache when the service's answers are cached. A `String`
    /// path becomes the request's path without being copied.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path_and_query: impl Into<String>,
        context: &RequestContext,
    ) -> Result<T, DownstreamError> {
        let uri = self.uri(path_and_query.into())?;
        if let (Some(cache), Some(identity)) = (&self.inner.cache, &context.identity) {
            let body = Box::pin(self.get_cached(cache, uri, identity, context)).await?;
            return self.decode(&body);
        }
        let body = CallBody::Whole(Full::default());
        // Boxed: the call stack's future is large, and the futures of the
        // handlers and `aggregate` holding it move it; a box moves as a pointer.
        Box::pin(self.send(
            Method::GET,
            uri,
            json_headers(false),
            body,
            context,
            &Json::<T>::new(),
        ))
        .await
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
        let body = CallBody::Whole(Full::new(Bytes::from(body)));
        Box::pin(self.send(
            Method::POST,
            uri,
            json_headers(true),
            body,
            context,
            &Json::<T>::new(),
        ))
        .await
    }

    /// `DELETE {base}{path}`; any 2xx answer is success, its body unread
    /// beyond the size cap.
    pub async fn delete(
        &self,
        path: &str,
        context: &RequestContext,
    ) -> Result<(), DownstreamError> {
        let uri = self.uri(path.to_owned())?;
        Box::pin(self.send(
            Method::DELETE,
            uri,
            json_headers(false),
            CallBody::Whole(Full::default()),
            context,
            &Raw,
        ))
        .await
        .map(drop)
    }

    /// The body of `GET uri` from the cache, or from the service (then
    /// stored as the service allows); see the `cache` module.
    async fn get_cached(
        &self,
        cache: &ServiceCache,
        uri: Uri,
        identity: &Arc<VerifiedIdentity>,
        context: &RequestContext,
    ) -> Result<Bytes, DownstreamError> {
        let service = self.inner.service;
        let caller = identity.as_ref();
        let started = Instant::now();
        let waiting_since = std::time::Instant::now();
        let mut key = CacheKey::shared(&uri);
        loop {
            let (found_under, found) = cache.cache.lookup(key, caller).await;
            key = found_under;
            match &found {
                Found::Uncacheable => return self.pass(cache, &uri, context).await,
                Found::Nothing => {}
                Found::Answer(entry) => match entry.age() {
                    Age::Fresh => {
                        return Ok(self.served(cache, context, started, entry, Served::Hit));
                    }
                    Age::Revalidate => {
                        if entry.start_refresh() {
                            self.refresh(cache, &key, &uri, context, entry.clone());
                        }
                        return Ok(self.served(cache, context, started, entry, Served::Stale));
                    }
                    Age::OnErrorOnly | Age::Expired => {}
                },
            }
            let fetch = || self.fetch_to_keep(&uri, context);
            // Boxed: a miss is rare, and the fill's future is large; inline it
            // would be copied with this future on every call, hits and passes too.
            let filling = Box::pin(cache.cache.fill(
                &key,
                caller,
                &cache.config,
                fetch,
                DownstreamError::serves_stale,
                waiting_since,
            ));
            // Waiting for another call's answer is bounded by this request's
            // deadline too; past it, an entry that may stand in for a failure does.
            let filled = match context.deadline {
                None => filling.await,
                Some(deadline) => match tokio::time::timeout_at(deadline, filling).await {
                    Ok(filled) => filled,
                    Err(_) => match &found {
                        Found::Answer(entry) if entry.serves_errors() => {
                            return Ok(self.served(cache, context, started, entry, Served::Stale));
                        }
                        _ => Err(DownstreamError::Timeout {
                            service,
                            timeout: started.elapsed(),
                        }),
                    },
                },
            };
            match filled? {
                Filled::Stored(entry) => {
                    return Ok(self.served(cache, context, started, &entry, Served::Hit));
                }
                Filled::Fetched(body) => {
                    cache.lookups.miss.inc();
                    return Ok(body);
                }
                Filled::Stale(entry, error) => {
                    match error {
                        Some(error) => {
                            tracing::info!(service, %error, "serving a stale answer instead of the failure")
                        }
                        None => tracing::debug!(
                            service,
                            "serving a stale answer: the call made for it failed"
                        ),
                    }
                    return Ok(self.served(cache, context, started, &entry, Served::Stale));
                }
                Filled::Uncacheable => return self.pass(cache, &uri, context).await,
                // The path's answers are kept per caller: look up this caller's.
                Filled::PerCaller => {}
            }
        }
    }

    /// The body of `GET uri` from the service, whose answers to it are
    /// not kept: no waiting for other calls of the same key.
    async fn pass(
        &self,
        cache: &ServiceCache,
        uri: &Uri,
        context: &RequestContext,
    ) -> Result<Bytes, DownstreamError> {
        cache.lookups.pass.inc();
        let (_, _, body) = self.fetch_raw(uri, context).await?;
        Ok(body)
    }

    /// `entry`'s body, counted and shown in `Server-Timing` as `how`.
    fn served(
        &self,
        cache: &ServiceCache,
        context: &RequestContext,
        started: Instant,
        entry: &Entry,
        how: Served,
    ) -> Bytes {
        let desc = match how {
            Served::Hit => {
                cache.lookups.hit.inc();
                "hit"
            }
            Served::Stale => {
                cache.lookups.stale.inc();
                "stale"
            }
        };
        if let Some(timing) = &context.timing {
            timing.record(self.inner.service, started.elapsed(), Some(desc));
        }
        entry.body.clone()
    }

    /// Refreshes the stale `entry` of `key` in the background, outside the
    /// request (its deadline, fan-out and timing), with its caller and trace.
    fn refresh(
        &self,
        cache: &ServiceCache,
        key: &CacheKey,
        uri: &Uri,
        context: &RequestContext,
        entry: Arc<Entry>,
    ) {
        let (client, cache, key, uri) = (self.clone(), cache.clone(), key.clone(), uri.clone());
        let context = RequestContext {
            deadline: None,
            timing: None,
            fan_out: None,
            ..context.clone()
        };
        tokio::spawn(async move {
            let Some(identity) = context.identity.clone() else {
                return;
            };
            let fetch = || client.fetch_to_keep(&uri, &context);
            let refreshed = cache
                .cache
                .fill(
                    &key,
                    &identity,
                    &cache.config,
                    fetch,
                    |_| false,
                    std::time::Instant::now(),
                )
                .await;
            if let Err(error) = refreshed {
                tracing::debug!(service = client.inner.service, %error, "background refresh failed");
                entry.refresh_failed();
            }
        });
    }

    /// `GET uri` through the call stack, for an answer the cache may keep:
    /// only a 200 whose body is JSON (what a call decodes) is offered as
    /// it came; any other success is marked `no-store`.
    async fn fetch_to_keep(
        &self,
        uri: &Uri,
        context: &RequestContext,
    ) -> Result<(HeaderMap, Bytes), DownstreamError> {
        let (status, mut headers, body) = self.fetch_raw(uri, context).await?;
        if let Err(source) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
            return Err(DownstreamError::InvalidBody {
                service: self.inner.service,
                source,
            });
        }
        if status != StatusCode::OK {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        Ok((headers, body))
    }

    /// `GET uri` through the call stack, for its status, headers and raw body.
    async fn fetch_raw(
        &self,
        uri: &Uri,
        context: &RequestContext,
    ) -> Result<(StatusCode, HeaderMap, Bytes), DownstreamError> {
        let body = CallBody::Whole(Full::default());
        Box::pin(self.send(
            Method::GET,
            uri.clone(),
            json_headers(false),
            body,
            context,
            &Raw,
        ))
        .await
    }

    /// Forwards a client's request to `{base}{path_and_query}` through the
    /// call stack, streaming its body, and streams back the answer: its
    /// status, headers and body as the service sent them, except that a 5xx
    /// is this call's failure (502, never the service's body). The body
    /// keeps the call's concurrency slot until it ends, and fails if it
    /// stalls for longer than the service's `timeout`. Only a `GET` or
    /// `HEAD` without a body is retried. `headers` are sent as given, with
    /// the trace and identity headers added.
    pub async fn forward(
        &self,
        method: Method,
        path_and_query: String,
        headers: HeaderMap,
        body: Body,
        context: &RequestContext,
    ) -> Result<Response<Body>, DownstreamError> {
        let uri = self.uri(path_and_query)?;
        let body = match (&method, http_body::Body::is_end_stream(&body)) {
            (&Method::GET | &Method::HEAD, true) => CallBody::Whole(Full::default()),
            _ => CallBody::streamed(body),
        };
        Box::pin(self.send(method, uri, headers, body, context, &Streamed)).await
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

    /// The call stack: retries of idempotent calls around [`Self::attempt`].
    async fn send<R: ReadAnswer>(
        &self,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: CallBody,
        context: &RequestContext,
        reader: &R,
    ) -> Result<R::Answer, DownstreamError> {
        let service = self.inner.service;
        // Fail closed: no service ever sees a request without its verified tenant.
        let Some(identity) = &context.identity else {
            tracing::error!(
                service,
                "a route called a service for a request without a verified identity; not sent"
            );
            let error = DownstreamError::NoIdentity { service };
            self.inner
                .metrics
                .observe(service, error.outcome(), Duration::ZERO);
            return Err(error);
        };
        let entry = TimingEntry {
            timing: context.timing.as_deref(),
            service,
            started: Instant::now(),
            done: false,
        };
        // The request's own bound on calls under way: waiting for a slot
        // spends the request's time, not the call's.
        let _slot = match &context.fan_out {
            None => None,
            Some(fan_out) => {
                let slot = fan_out.slot();
                match context.deadline {
                    None => Some(slot.await),
                    Some(deadline) => match tokio::time::timeout_at(deadline, slot).await {
                        Ok(slot) => Some(slot),
                        Err(_) => {
                            let error = DownstreamError::Timeout {
                                service,
                                timeout: entry.started.elapsed(),
                            };
                            entry.finish(Some(error.cause()));
                            return Err(error);
                        }
                    },
                }
            }
        };
        let started = Instant::now();
        // The call's own timeout, or what is left of the request's, if less.
        let own_deadline = started + self.inner.timeout;
        let deadline = context
            .deadline
            .map_or(own_deadline, |request| request.min(own_deadline));
        let call = Call {
            idempotent: matches!(method, Method::GET | Method::HEAD)
                && matches!(body, CallBody::Whole(_)),
            method,
            uri,
            headers,
            body,
            context,
            identity,
            deadline,
            budget: deadline.saturating_duration_since(started),
        };
        let (result, retries) = self.attempts(&call, reader).await;
        entry.finish(match &result {
            Ok(_) if retries > 0 => Some("retried"),
            Ok(_) => None,
            Err(error) => Some(error.cause()),
        });
        result
    }

    /// The first attempt and the retries the policy allows; with the
    /// number of retries made.
    async fn attempts<R: ReadAnswer>(
        &self,
        call: &Call<'_>,
        reader: &R,
    ) -> (Result<R::Answer, DownstreamError>, u32) {
        let service = self.inner.service;
        self.inner.retry.first_attempt();
        let mut retries = 0;
        loop {
            let started = Instant::now();
            let error = match self.attempt(call, reader).await {
                Err(error) if call.idempotent && error.is_service_failure() => error,
                done => return (done, retries),
            };
            let now = Instant::now();
            let decision = self.inner.retry.decide(
                retries,
                now - started,
                call.deadline.saturating_duration_since(now),
            );
            self.inner.metrics.retry_decision(service, decision.label());
            let Decision::Retry(backoff) = decision else {
                return (Err(error), retries);
            };
            tracing::debug!(service, %error, retry = retries + 1, ?backoff, "retrying");
            tokio::time::sleep(backoff).await;
            retries += 1;
        }
    }

    /// One attempt: admitted by the breaker, within the concurrency bound,
    /// ending by `deadline`; measured, and traced as one client span.
    async fn attempt<R: ReadAnswer>(
        &self,
        call: &Call<'_>,
        reader: &R,
    ) -> Result<R::Answer, DownstreamError> {
        let service = self.inner.service;
        let started = Instant::now();
        let result = match self.inner.breaker.admit() {
            Err(rejected) => Err(DownstreamError::CircuitOpen {
                service,
                retry_after: rejected.retry_after,
            }),
            Ok(admission) => match self.slot(call.deadline).await {
                None => Err(DownstreamError::Overloaded { service }),
                Some(slot) => {
                    let result = self.exchange_traced(call, reader, slot).await;
                    admission.record(
                        result
                            .as_ref()
                            .is_err_and(DownstreamError::is_service_failure),
                    );
                    result
                }
            },
        };
        let outcome = match &result {
            Ok(answer) => match R::status(answer) {
                StatusCode::OK => std::borrow::Cow::Borrowed("200"),
                status => status.as_u16().to_string().into(),
            },
            Err(error) => error.outcome(),
        };
        self.inner
            .metrics
            .observe(service, outcome, started.elapsed());
        result
    }

    /// A slot under `max_concurrency`, waiting at most `concurrency_wait`
    /// (and never past `deadline`); `None` when there is none.
    async fn slot(&self, deadline: Instant) -> Option<InFlight> {
        let slots = &self.inner.slots;
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) if self.inner.concurrency_wait.is_zero() => return None,
            Err(_) => {
                let until = deadline.min(Instant::now() + self.inner.concurrency_wait);
                tokio::time::timeout_at(until, slots.clone().acquire_owned())
                    .await
                    .ok()?
                    .ok()?
            }
        };
        self.inner.in_flight.inc();
        Some(InFlight {
            _permit: permit,
            gauge: self.inner.in_flight.clone(),
        })
    }

    /// Sends the call's request once, by its deadline, in a client span.
    async fn exchange_traced<R: ReadAnswer>(
        &self,
        call: &Call<'_>,
        reader: &R,
        slot: InFlight,
    ) -> Result<R::Answer, DownstreamError> {
        let context = call.context;
        // An unsampled trace records no span: the service gets an id no span carries.
        let span = match context.trace.is_sampled() {
            true => client_span(self.inner.service, &call.method),
            false => tracing::Span::none(),
        };
        let body = match &call.body {
            CallBody::Whole(body) => Either::Left(body.clone()),
            CallBody::Streamed { body, .. } => Either::Right(
                body.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()
                    .unwrap_or_default(),
            ),
        };
        let mut request = Request::new(body);
        *request.uri_mut() = call.uri.clone();
        *request.headers_mut() = call.headers.clone();
        // The service's parent is this call's exported span, when traces are exported.
        let traceparent = match span_ids(&span) {
            Some((_, span_id, sampled)) => context
                .trace
                .traceparent_for(span_id, (context.trace.flags() & !0x01) | u8::from(sampled)),
            None => context.trace.child_traceparent(),
        };
        with_context(request.headers_mut(), context, call.identity, traceparent);
        if let Some(tokens) = &self.inner.internal_tokens {
            request.headers_mut().insert(
                AUTH_TOKEN,
                tokens.header_for(call.identity, &context.request_id),
            );
        }
        *request.method_mut() = call.method.clone();
        let result = tokio::time::timeout_at(call.deadline, self.exchange(request, reader, slot))
            .instrument(span.clone())
            .await
            .unwrap_or_else(|_| {
                Err(DownstreamError::Timeout {
                    service: self.inner.service,
                    timeout: call.budget,
                })
            })
            .map_err(|error| call.body.blame(error));
        match &result {
            Ok(answer) => {
                let status = R::status(answer);
                record_call(&span, status.as_str(), Some(status.as_u16()));
            }
            Err(error) => record_call(&span, &error.outcome(), error.answered_status()),
        }
        result
    }

    /// Sends `request` and reads its answer with `reader`.
    async fn exchange<R: ReadAnswer>(
        &self,
        request: Request<ClientBody>,
        reader: &R,
        slot: InFlight,
    ) -> Result<R::Answer, DownstreamError> {
        let response = self
            .inner
            .client
            .request(request)
            .await
            .map_err(|error| self.transport_error(error.into()))?;
        reader.read(self, response, slot).await
    }

    /// A transport error: a timeout (connecting, most often) or the service unreachable.
    fn transport_error(&self, source: BoxError) -> DownstreamError {
        let service = self.inner.service;
        if is_timeout(source.as_ref()) {
            DownstreamError::Timeout {
                service,
                timeout: self.inner.timeout,
            }
        } else {
            DownstreamError::Unavailable { service, source }
        }
    }

    /// Decodes a JSON answer.
    fn decode<T: DeserializeOwned>(&self, body: &[u8]) -> Result<T, DownstreamError> {
        serde_json::from_slice(body).map_err(|source| DownstreamError::InvalidBody {
            service: self.inner.service,
            source,
        })
    }

    /// Reads the headers and the whole body of a successful answer, within
    /// `max_response_bytes`.
    async fn read_body(
        &self,
        response: Response<Incoming>,
    ) -> Result<(HeaderMap, Bytes), DownstreamError> {
        let service = self.inner.service;
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
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, limit)
            .collect()
            .await
            .map_err(|error| {
                if error.is::<LengthLimitError>() {
                    DownstreamError::BodyTooLarge { service, limit }
                } else {
                    self.transport_error(error)
                }
            })?
            .to_bytes();
        Ok((parts.headers, body))
    }
}

/// How a call's answer is read: decoded whole, or streamed through.
trait ReadAnswer: Sync {
    /// What the call returns.
    type Answer;

    /// Reads `response`; `slot` is held for as long as the service is busy with it.
    fn read(
        &self,
        client: &DownstreamClient,
        response: Response<Incoming>,
        slot: InFlight,
    ) -> impl Future<Output = Result<Self::Answer, DownstreamError>> + Send;

    /// The status the service answered with, for the call's span.
    fn status(answer: &Self::Answer) -> StatusCode;
}

/// A JSON answer decoded into `T`.
struct Json<T>(PhantomData<fn() -> T>);

impl<T> Json<T> {
    fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T: DeserializeOwned> ReadAnswer for Json<T> {
    type Answer = T;

    async fn read(
        &self,
        client: &DownstreamClient,
        response: Response<Incoming>,
        _slot: InFlight,
    ) -> Result<T, DownstreamError> {
        let (_, body) = client.read_body(response).await?;
        client.decode(&body)
    }

    fn status(_: &T) -> StatusCode {
        StatusCode::OK
    }
}

/// A successful answer's status, headers and body as they came (cached calls).
struct Raw;

impl ReadAnswer for Raw {
    type Answer = (StatusCode, HeaderMap, Bytes);

    async fn read(
        &self,
        client: &DownstreamClient,
        response: Response<Incoming>,
        _slot: InFlight,
    ) -> Result<(StatusCode, HeaderMap, Bytes), DownstreamError> {
        let status = response.status();
        let (headers, body) = client.read_body(response).await?;
        Ok((status, headers, body))
    }

    fn status(answer: &(StatusCode, HeaderMap, Bytes)) -> StatusCode {
        answer.0
    }
}

/// An answer streamed through as it comes (pass-through routes).
struct Streamed;

impl ReadAnswer for Streamed {
    type Answer = Response<Body>;

    async fn read(
        &self,
        client: &DownstreamClient,
        response: Response<Incoming>,
        slot: InFlight,
    ) -> Result<Response<Body>, DownstreamError> {
        let status = response.status();
        if status.is_server_error() {
            return Err(DownstreamError::Status {
                service: client.inner.service,
                status,
            });
        }
        Ok(response.map(|body| {
            let held = HoldingSlot { body, _slot: slot };
            Body::new(TimeoutBody::new(client.inner.timeout, held))
        }))
    }

    fn status(answer: &Response<Body>) -> StatusCode {
        answer.status()
    }
}

/// A streamed answer's body, holding its call's concurrency slot until it
/// is dropped: the service is busy until the last byte is sent.
struct HoldingSlot {
    body: Incoming,
    _slot: InFlight,
}

impl http_body::Body for HoldingSlot {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// One call as the stack sees it: what to send, for whom, and by when.
struct Call<'a> {
    method: Method,
    /// Only idempotent calls whose body can be sent again are retried.
    idempotent: bool,
    uri: Uri,
    /// Sent as given, with the trace and identity headers added.
    headers: HeaderMap,
    body: CallBody,
    context: &'a RequestContext,
    identity: &'a VerifiedIdentity,
    /// Ends every attempt and backoff.
    deadline: Instant,
    /// The time the call had in all: its own timeout, or less when the
    /// request's deadline was nearer.
    budget: Duration,
}

/// The call's `Server-Timing` entry: recorded when the call ends, or with
/// `desc="cancelled"` when it is dropped before (a required part failed
/// first, or the request's deadline passed).
struct TimingEntry<'a> {
    timing: Option<&'a ServerTiming>,
    service: &'static str,
    started: Instant,
    done: bool,
}

impl TimingEntry<'_> {
    fn finish(mut self, desc: Option<&'static str>) {
        self.done = true;
        if let Some(timing) = self.timing {
            timing.record(self.service, self.started.elapsed(), desc);
        }
    }
}

impl Drop for TimingEntry<'_> {
    fn drop(&mut self) {
        if let (false, Some(timing)) = (self.done, self.timing) {
            timing.record(self.service, self.started.elapsed(), Some("cancelled"));
        }
    }
}

/// How a cached answer was served.
#[derive(Debug, Clone, Copy)]
enum Served {
    /// Fresh.
    Hit,
    /// Stale: while it is refreshed, or instead of a failure.
    Stale,
}

/// A call's request body.
enum CallBody {
    /// Kept whole: every attempt sends it.
    Whole(Full<Bytes>),
    /// Streamed from the client: the first attempt takes it, and there is
    /// no other (the call is not idempotent).
    Streamed {
        body: Mutex<Option<Body>>,
        upload: Arc<AtomicU8>,
    },
}

/// How far a streamed upload got ([`WatchedUpload`]).
const UPLOAD_SENDING: u8 = 0;
const UPLOAD_DONE: u8 = 1;
const UPLOAD_FAILED: u8 = 2;

impl CallBody {
    fn streamed(body: Body) -> Self {
        let upload = Arc::new(AtomicU8::new(match http_body::Body::is_end_stream(&body) {
            true => UPLOAD_DONE,
            false => UPLOAD_SENDING,
        }));
        let watched = WatchedUpload {
            body,
            upload: upload.clone(),
        };
        Self::Streamed {
            body: Mutex::new(Some(Body::new(watched))),
            upload,
        }
    }

    /// Who `error` is on: a call whose client's body broke, or had not
    /// arrived whole when the call timed out, failed because of the client,
    /// not the service, and must not count against the service's circuit.
    fn blame(&self, error: DownstreamError) -> DownstreamError {
        let Self::Streamed { upload, .. } = self else {
            return error;
        };
        let service = error.service();
        match (upload.load(Ordering::Acquire), &error) {
            (UPLOAD_FAILED, _) => DownstreamError::UploadIncomplete {
                service,
                timed_out: false,
            },
            (UPLOAD_SENDING, DownstreamError::Timeout { .. }) => {
                DownstreamError::UploadIncomplete {
                    service,
                    timed_out: true,
                }
            }
            _ => error,
        }
    }
}

/// A client's body on its way to a service, recording whether it arrived
/// whole or broke (the client went away, or sent more than `max_body_bytes`).
struct WatchedUpload {
    body: Body,
    upload: Arc<AtomicU8>,
}

impl http_body::Body for WatchedUpload {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        match &frame {
            Poll::Ready(None) => self.upload.store(UPLOAD_DONE, Ordering::Release),
            Poll::Ready(Some(Err(_))) => self.upload.store(UPLOAD_FAILED, Ordering::Release),
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A slot under the concurrency bound, shown in `downstream_in_flight`.
struct InFlight {
    _permit: OwnedSemaphorePermit,
    gauge: Gauge,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
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

/// The headers of a JSON call: it accepts JSON, and sends JSON when it has a body.
fn json_headers(with_body: bool) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(8);
    headers.insert(header::ACCEPT, APPLICATION_JSON);
    if with_body {
        headers.insert(header::CONTENT_TYPE, APPLICATION_JSON);
    }
    headers
}

/// Adds the trace headers and the identity headers the gateway sets itself.
fn with_context(
    headers: &mut http::HeaderMap,
    context: &RequestContext,
    identity: &VerifiedIdentity,
    traceparent: HeaderValue,
) {
    headers.insert(TRACEPARENT, traceparent);
    headers.insert(REQUEST_ID, context.request_id.clone());
    if let Some(state) = context.trace.tracestate() {
        headers.insert(TRACESTATE, state.clone());
    }
    for (name, value) in identity.forwarded_headers() {
        headers.insert(name, value.clone());
    }
}
