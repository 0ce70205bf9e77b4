//! What a handler knows about the request it serves.
//!
//! [`RequestContext`] is an axum extractor assembled from what the layer
//! stack put in the request extensions: the trace context, the request id,
//! the deadline, the `Server-Timing` record, the request's [`FanOut`] and
//! (once authenticated) the verified identity. Handlers pass it to every
//! downstream call, which forwards the trace and the identity, ends by the
//! deadline, takes a fan-out slot and records its time.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex, PoisonError},
};

use axum::extract::FromRequestParts;
use http::{HeaderValue, StatusCode, request::Parts};
use tokio::{
    sync::{Semaphore, SemaphorePermit},
    time::Instant,
};

use crate::{
    Error,
    error::ProblemDetails,
    identity::VerifiedIdentity,
    observability::{RequestId, ServerTiming, TraceContext},
};

/// When a request must be answered by, put in its extensions by the
/// server's deadline layer (`request_timeout`, or sooner if the client
/// sends `X-Request-Timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub Instant);

/// What the downstream calls of one request share: a bound on how many
/// are under way at once (`server.max_fan_out`), and the optional parts of
/// the answer that failed, for its `BFF-Partial` header and body. Put in
/// the request extensions by the server's fan-out layer.
#[derive(Debug)]
pub struct FanOut {
    slots: Semaphore,
    degraded: Mutex<Vec<DegradedPart>>,
}

/// An optional part of an answer that is missing or stale, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DegradedPart {
    /// The part, as the answer names it (`reviews`, `price`).
    pub part: &'static str,
    /// What happened to it (`timeout`, `circuit_open`, `unavailable`...).
    pub cause: &'static str,
}

impl FanOut {
    /// At most `max_parallel` downstream calls of the request at once.
    pub fn new(max_parallel: usize) -> Self {
        Self {
            slots: Semaphore::new(max_parallel),
            degraded: Mutex::new(Vec::new()),
        }
    }

    /// A slot for one downstream call, once fewer than `max_parallel` are
    /// under way; callers bound the wait by their deadline.
    pub async fn slot(&self) -> SemaphorePermit<'_> {
        self.slots
            .acquire()
            .await
            .expect("the fan-out semaphore is never closed")
    }

    /// Records that `part` is degraded by `cause`; the same part and cause
    /// are recorded once however many calls degrade it.
    pub fn degrade(&self, part: &'static str, cause: &'static str) {
        let degraded = DegradedPart { part, cause };
        let mut parts = self.degraded.lock().unwrap_or_else(PoisonError::into_inner);
        if !parts.contains(&degraded) {
            parts.push(degraded);
        }
    }

    /// The degraded parts, in the order they were recorded.
    pub fn degraded(&self) -> Vec<DegradedPart> {
        self.degraded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// An answer about a user of the shop asked for by a caller who is not one.
#[derive(Debug, thiserror::Error)]
#[error("this is for signed-in users of the shop; the caller is {0:?}")]
pub struct NotAUser(String);

impl ProblemDetails for NotAUser {
    fn status(&self) -> StatusCode {
        StatusCode::FORBIDDEN
    }

    fn code(&self) -> &'static str {
        "USER_REQUIRED"
    }

    fn client_detail(&self) -> String {
        "this is for signed-in users of the shop".to_owned()
    }
}

/// The trace, request id and caller of one request.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Where the request sits in its distributed trace.
    pub trace: TraceContext,
    /// The request id echoed to the client and forwarded downstream.
    pub request_id: HeaderValue,
    /// The verified caller; `None` on routes that need no authentication.
    pub identity: Option<Arc<VerifiedIdentity>>,
    /// When the request must be answered; no downstream call outlives it.
    /// `None` for detached work, bounded by each call's own timeout.
    pub deadline: Option<Instant>,
    /// Where downstream calls record their time for `Server-Timing`; `None`
    /// for detached work.
    pub timing: Option<Arc<ServerTiming>>,
    /// The request's fan-out bound and degraded parts; `None` for detached
    /// work, whose calls are bounded by each service's own limits only.
    pub fan_out: Option<Arc<FanOut>>,
}

impl RequestContext {
    /// A context for work not started by a request (warm-up, background refresh).
    pub fn detached() -> Self {
        let trace = TraceContext::new_root();
        let request_id = trace.trace_id().to_header_value();
        Self {
            trace,
            request_id,
            identity: None,
            deadline: None,
            timing: None,
            fan_out: None,
        }
    }

    /// The user id of the verified caller, a user of the shop (`user-{id}`):
    /// the only user an answer about a user may be about. A caller that is
    /// not a user (a partner client) gets [`NotAUser`].
    pub fn user_id(&self) -> Result<u64, Error> {
        let identity = self.identity.as_ref().ok_or_else(|| {
            Error::Internal("a user's answer without a verified caller".to_owned())
        })?;
        identity
            .subject
            .strip_prefix("user-")
            .and_then(|id| id.parse::<u64>().ok())
            .filter(|id| *id > 0)
            .ok_or_else(|| NotAUser(identity.subject.clone()).into())
    }

    /// The optional parts of this request's answer that failed, in the
    /// order they did; empty for detached work.
    pub fn degraded(&self) -> Vec<DegradedPart> {
        self.fan_out
            .as_ref()
            .map_or_else(Vec::new, |fan_out| fan_out.degraded())
    }

    fn from_parts(parts: &Parts) -> Self {
        let Some(trace) = parts.extensions.get::<TraceContext>().cloned() else {
            return Self::detached();
        };
        let request_id = match parts.extensions.get::<RequestId>() {
            Some(RequestId(id)) => id.clone(),
            None => trace.trace_id().to_header_value(),
        };
        Self {
            trace,
            request_id,
            identity: parts.extensions.get::<Arc<VerifiedIdentity>>().cloned(),
            deadline: parts.extensions.get::<Deadline>().map(|Deadline(at)| *at),
            timing: parts.extensions.get::<Arc<ServerTiming>>().cloned(),
            fan_out: parts.extensions.get::<Arc<FanOut>>().cloned(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_parts(parts))
    }
}
