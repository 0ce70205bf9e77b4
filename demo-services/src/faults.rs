//! Fault injection: make any demo service slow, failing or down on purpose.
//!
//! Each service has a [`FaultConfig`], set at start from `[faults.<service>]`
//! and changed at run time through the admin API of the auth port
//! (`PUT /admin/faults/{service}`). [`Faulty`] applies it to every request:
//!
//! - `latency` (plus up to `latency_jitter`, uniformly): wait before answering;
//! - `error_rate`: that fraction of requests answers 500;
//! - `down`: the connection is closed without an answer, as a crashed
//!   process behind a load balancer would;
//! - `slow_body`: the body is sent in small chunks with this pause between
//!   them, so a client's body-read timeout can be exercised.
//!
//! Paths under `/admin/` are exempt, so injected faults can always be undone.
//!
//! Every other request is also logged in the service's [`RequestLog`]: the
//! last one with its headers, how many arrived, and how many were in flight
//! at most, so tests can see what a gateway forwarded and how hard it pushed.

use std::{
    convert::Infallible,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::Request,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use gateway_core::config::HumanDuration;
use serde::{Deserialize, Serialize};
use tower::{Service, ServiceExt};

use crate::Rejection;

/// Size of the chunks a slow body is sent in.
const SLOW_BODY_CHUNK: usize = 64;

/// The faults of one service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    /// Added to every answer.
    pub latency: Option<HumanDuration>,
    /// Up to this much more, chosen uniformly per request.
    pub latency_jitter: Option<HumanDuration>,
    /// Fraction of requests answered with a 500, from 0 to 1.
    pub error_rate: f64,
    /// Close every connection without answering.
    pub down: bool,
    /// Pause between body chunks.
    pub slow_body: Option<HumanDuration>,
}

impl FaultConfig {
    /// Checks the error rate is a fraction.
    pub fn validate(&self) -> Result<(), String> {
        if (0.0..=1.0).contains(&self.error_rate) {
            Ok(())
        } else {
            Err(format!(
                "error_rate must be between 0 and 1, not {}",
                self.error_rate
            ))
        }
    }
}

/// The live fault settings of one service, shared with the admin API.
#[derive(Debug, Clone, Default)]
pub struct FaultHandle(Arc<RwLock<FaultConfig>>);

impl FaultHandle {
    /// Settings starting as `config`.
    pub fn new(config: FaultConfig) -> Self {
        Self(Arc::new(RwLock::new(config)))
    }

    /// The current settings.
    pub fn get(&self) -> FaultConfig {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the settings.
    pub fn set(&self, config: FaultConfig) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = config;
    }
}

/// A request as a service received it, for tests to see what a gateway forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// Method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Every header, names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
}

impl RecordedRequest {
    /// The values of header `name` (lower case).
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(header, _)| header == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }
}

/// What a service received: the last request, the count, and the most in
/// flight at once; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RequestLog(Arc<Log>);

#[derive(Debug, Default)]
struct Log {
    last: RwLock<Option<RecordedRequest>>,
    received: AtomicU64,
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
}

impl RequestLog {
    /// The last request received, if any.
    pub fn last(&self) -> Option<RecordedRequest> {
        self.0
            .last
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Requests received so far.
    pub fn received(&self) -> u64 {
        self.0.received.load(Ordering::SeqCst)
    }

    /// Requests being handled right now.
    pub fn in_flight(&self) -> u64 {
        self.0.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests ever handled at once.
    pub fn peak_in_flight(&self) -> u64 {
        self.0.peak_in_flight.load(Ordering::SeqCst)
    }

    /// Logs `request` and counts it in flight until the guard drops.
    fn record(&self, request: &Request) -> InFlight {
        let recorded = RecordedRequest {
            method: request.method().to_string(),
            uri: request.uri().to_string(),
            headers: request
                .headers()
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect(),
        };
        *self
            .0
            .last
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(recorded);
        self.0.received.fetch_add(1, Ordering::SeqCst);
        let now = self.0.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.0.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(self.clone())
    }
}

/// A request being handled, counted in its service's [`RequestLog`].
struct InFlight(RequestLog);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The service is down: hyper closes the connection without an answer.
#[derive(Debug, thiserror::Error)]
#[error("service is down (fault injection)")]
pub struct ServiceDown;

/// A service router with its faults applied and its requests logged; see
/// the module docs.
#[derive(Debug, Clone)]
pub struct Faulty {
    router: Router,
    faults: FaultHandle,
    log: RequestLog,
}

impl Faulty {
    /// Applies `faults` to `router`, logging requests in `log`.
    pub fn new(router: Router, faults: FaultHandle, log: RequestLog) -> Self {
        Self {
            router,
            faults,
            log,
        }
    }
}

impl Service<Request> for Faulty {
    type Response = Response;
    type Error = ServiceDown;
    type Future = BoxFuture<'static, Result<Response, ServiceDown>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The admin API is the control plane: faults never apply to it, and
        // its own requests are not recorded.
        let (faults, in_flight) = if request.uri().path().starts_with("/admin/") {
            (FaultConfig::default(), None)
        } else {
            (self.faults.get(), Some(self.log.record(&request)))
        };
        let router = self.router.clone();
        Box::pin(async move {
            // Counted until the answer (or the dropped connection) is done.
            let _in_flight = in_flight;
            if faults.down {
                return Err(ServiceDown);
            }
            let mut delay = faults.latency.map_or(Duration::ZERO, HumanDuration::get);
            if let Some(jitter) = faults.latency_jitter {
                delay += jitter.get().mul_f64(fastrand::f64());
            }
            if !delay.is_zero() {
                sleep_precisely(delay).await;
            }
            if faults.error_rate > 0.0 && fastrand::f64() < faults.error_rate {
                let failure = Rejection::new(
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    "INJECTED_FAULT",
                    "injected failure",
                );
                return Ok(failure.into_response());
            }
            let response = match router.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            Ok(match faults.slow_body {
                Some(pause) => slow_down(response, pause.get()).await,
                None => response,
            })
        })
    }
}

/// How early tokio's timer hands a precise wait over to a thread.
const TIMER_TICK_MARGIN: Duration = Duration::from_millis(2);

/// Waits `delay` to within tens of microseconds. tokio's timer ticks every
/// millisecond and rounds a deadline up to the next tick, so a 20 ms latency
/// took 20 to 22 ms and a benchmark's critical path grew by a millisecond
/// per round: the bulk of the wait is on tokio's timer, the last
/// milliseconds on a blocking-pool thread's `nanosleep`.
async fn sleep_precisely(delay: Duration) {
    let deadline = tokio::time::Instant::now() + delay;
    if delay > TIMER_TICK_MARGIN {
        tokio::time::sleep_until(deadline - TIMER_TICK_MARGIN).await;
    }
    let rest = deadline.saturating_duration_since(tokio::time::Instant::now());
    if !rest.is_zero() {
        // The thread only sleeps; if the pool is gone (shutdown), so is the wait.
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(rest)).await;
    }
}

/// Re-sends `response`'s body in small chunks, pausing between them.
async fn slow_down(response: Response, pause: Duration) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    parts.headers.remove(http::header::CONTENT_LENGTH);
    let chunks: Vec<Bytes> = bytes
        .chunks(SLOW_BODY_CHUNK)
        .map(Bytes::copy_from_slice)
        .collect();
    let stream = futures_util::stream::unfold(chunks.into_iter(), move |mut chunks| async move {
        let chunk = chunks.next()?;
        tokio::time::sleep(pause).await;
        Some((Ok::<_, Infallible>(chunk), chunks))
    });
    Response::from_parts(parts, Body::from_stream(stream))
}
