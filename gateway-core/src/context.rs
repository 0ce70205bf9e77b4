//! What a handler knows about the request it serves.
//!
//! [`RequestContext`] is an axum extractor assembled from what the layer
//! stack put in the request extensions: the trace context, the request id and
//! (once authenticated) the verified identity. Handlers pass it to every
//! downstream call, which forwards the trace and the identity.

use std::{convert::Infallible, sync::Arc};

use axum::extract::FromRequestParts;
use http::{HeaderValue, request::Parts};

use crate::{
    identity::VerifiedIdentity,
    observability::{RequestId, TraceContext},
};

/// The trace, request id and caller of one request.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Where the request sits in its distributed trace.
    pub trace: TraceContext,
    /// The request id echoed to the client and forwarded downstream.
    pub request_id: HeaderValue,
    /// The verified caller; `None` on routes that need no authentication.
    pub identity: Option<Arc<VerifiedIdentity>>,
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
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_parts(parts))
    }
}
