//! What a handler knows about the request it serves.
//!
//! [`RequestContext`] is an axum extractor assembled from what the layer
//! stack put in the request extensions: the trace context, the request id,
//! the deadline, the `Server-Timing` record and (once authenticated) the
//! verified identity. Handlers pass it to every downstream call, which
//! forwards the trace and the identity, ends by the deadline and records
//! its time.

use std::{convert::Infallible, sync::Arc};

use axum::extract::FromRequestParts;
use http::{HeaderValue, request::Parts};
use tokio::time::Instant;

use crate::{
    identity::VerifiedIdentity,
    observability::{RequestId, ServerTiming, TraceContext},
};

/// When a request must be answered by, put in its extensions by the
/// server's deadline layer (`request_timeout`, or sooner if the client
/// sends `X-Request-Timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub Instant);

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
        }
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
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_parts(parts))
    }
}
