//! W3C Trace Context (`traceparent`) and the request id.
//!
//! Every request gets a [`TraceContext`]: the caller's trace is continued when
//! it sends a valid `traceparent`, otherwise a new trace starts. The gateway is
//! one span of that trace; each downstream call gets a child span id
//! ([`TraceContext::child_traceparent`]). The request id is the caller's
//! `x-request-id` when it sent a sane one, else the trace id, and is echoed on
//! the response.
//!
//! With traces exported (see [`super::otlp`]) the hop's span is the exported
//! server span: its ids and sampling decision replace the locally drawn ones.
//!
//! Hand-written because tower-http's request-id layers know nothing of W3C
//! trace context, and the request id here is derived from the trace.

use std::{
    fmt,
    task::{Context, Poll},
};

use axum::{body::Body, extract::Request, response::Response};
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue};
use tower::{Layer, Service};
use tracing::Instrument;

use super::otlp;

/// The W3C `traceparent` header.
pub(crate) const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The W3C `tracestate` header, forwarded unchanged.
pub(crate) const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// The request id header, accepted from callers and echoed on responses.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest `tracestate` forwarded (the W3C limit is 512 bytes).
const MAX_TRACESTATE_LEN: usize = 512;
/// Longest caller-supplied request id kept.
const MAX_REQUEST_ID_LEN: usize = 128;

/// A 128-bit trace id, printed as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(u128);

impl TraceId {
    fn random() -> Self {
        Self(fastrand::u128(1..))
    }

    /// The 32 hex digits.
    fn hex(self) -> [u8; 32] {
        let mut digits = [0; 32];
        write_hex(self.0, &mut digits);
        digits
    }

    /// The id as a header value (the request id when the caller sent none).
    pub(crate) fn to_header_value(self) -> HeaderValue {
        HeaderValue::from_bytes(&self.hex()).expect("hex digits are a valid header value")
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.hex();
        f.write_str(std::str::from_utf8(&digits).expect("hex digits are ASCII"))
    }
}

/// Writes the low `4 * out.len()` bits of `value` as lower-case hex into
/// `out`, zero-padded: ids are rendered per request, without `format!`.
fn write_hex(value: u128, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (index, digit) in out.iter_mut().rev().enumerate() {
        *digit = DIGITS[((value >> (4 * index)) & 0xf) as usize];
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The request id of one request (an extension set by [`TraceContextLayer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestId(pub(crate) HeaderValue);

/// Where this request sits in a distributed trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: TraceId,
    /// This gateway hop's own span id.
    span_id: u64,
    /// The caller's span, when the trace was continued.
    parent_span_id: Option<u64>,
    /// W3C trace flags (bit 0: sampled).
    flags: u8,
    /// Vendor state, forwarded as received.
    tracestate: Option<HeaderValue>,
}

impl TraceContext {
    /// Starts a new, sampled trace.
    pub(crate) fn new_root() -> Self {
        Self {
            trace_id: TraceId::random(),
            span_id: fastrand::u64(1..),
            parent_span_id: None,
            flags: 0x01,
            tracestate: None,
        }
    }

    /// Continues the trace of `headers` when they carry exactly one valid
    /// `traceparent`, else starts a new one.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        let mut values = headers.get_all(TRACEPARENT).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Self::new_root();
        };
        let Some((trace_id, parent, flags)) = value.to_str().ok().and_then(parse_traceparent)
        else {
            return Self::new_root();
        };
        let tracestate = headers
            .get(TRACESTATE)
            .filter(|state| {
                state.len() <= MAX_TRACESTATE_LEN && headers.get_all(TRACESTATE).iter().count() == 1
            })
            .cloned();
        Self {
            trace_id: TraceId(trace_id),
            span_id: fastrand::u64(1..),
            parent_span_id: Some(parent),
            flags,
            tracestate,
        }
    }

    /// The trace id.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The caller's span id, when the trace was continued.
    pub fn parent_span_id(&self) -> Option<u64> {
        self.parent_span_id
    }

    /// A `traceparent` for a call this hop makes: same trace, new span id.
    /// With traces exported, the span is the call's client span (see
    /// [`Self::traceparent_for`]); without, an id no span carries.
    pub(crate) fn child_traceparent(&self) -> HeaderValue {
        self.traceparent_for(fastrand::u64(1..), self.flags)
    }

    /// A `traceparent` naming span `span_id` of this trace with `flags`.
    pub(crate) fn traceparent_for(&self, span_id: u64, flags: u8) -> HeaderValue {
        // 00-{trace id: 32}-{span id: 16}-{flags: 2}
        let mut value = [b'-'; 55];
        value[..2].copy_from_slice(b"00");
        value[3..35].copy_from_slice(&self.trace_id.hex());
        write_hex(u128::from(span_id), &mut value[36..52]);
        write_hex(u128::from(flags), &mut value[53..55]);
        HeaderValue::from_bytes(&value).expect("hex digits and dashes are a valid header value")
    }

    /// Takes the ids of the exported server span `span`, when traces are
    /// exported: its trace (the caller's, or a new one the tracer started),
    /// its span id and its sampling decision.
    fn adopt_exported_span(&mut self, span: &tracing::Span) {
        if let Some(parent) = self.parent_span_id {
            otlp::continue_remote_trace(span, self.trace_id.0, parent, self.flags);
        }
        if let Some((trace_id, span_id, sampled)) = otlp::span_ids(span) {
            self.trace_id = TraceId(trace_id);
            self.span_id = span_id;
            self.flags = (self.flags & !0x01) | u8::from(sampled);
        }
    }

    /// The trace flags.
    pub(crate) fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the trace is recorded (the sampled flag).
    pub(crate) fn is_sampled(&self) -> bool {
        self.flags & 0x01 == 0x01
    }

    /// The `tracestate` to forward, if the caller sent one.
    pub(crate) fn tracestate(&self) -> Option<&HeaderValue> {
        self.tracestate.as_ref()
    }
}

/// Parses `traceparent` per W3C Trace Context level 1: version `00` exactly,
/// later versions by their first four fields; `ff`, zero ids and upper-case
/// hex are invalid.
fn parse_traceparent(value: &str) -> Option<(u128, u64, u8)> {
    let bytes = value.as_bytes();
    if bytes.len() < 55 || bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    let version = lower_hex(&value[0..2])? as u8;
    if version == 0xff
        || (version == 0 && bytes.len() != 55)
        || (bytes.len() > 55 && bytes[55] != b'-')
    {
        return None;
    }
    let trace_id = lower_hex(&value[3..35])?;
    let parent = lower_hex(&value[36..52])? as u64;
    let flags = lower_hex(&value[53..55])? as u8;
    (trace_id != 0 && parent != 0).then_some((trace_id, parent, flags))
}

fn lower_hex(digits: &str) -> Option<u128> {
    digits
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        .then(|| u128::from_str_radix(digits, 16).ok())
        .flatten()
}

fn caller_request_id(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut values = headers.get_all(REQUEST_ID).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    let sane = !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value
            .as_bytes()
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    sane.then(|| value.clone())
}

/// Sets [`TraceContext`] and [`RequestId`] on every request and echoes the
/// request id on the response.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TraceContextLayer;

impl<S> Layer<S> for TraceContextLayer {
    type Service = TraceContextService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceContextService { inner }
    }
}

/// The service of [`TraceContextLayer`].
#[derive(Debug, Clone)]
pub(crate) struct TraceContextService<S> {
    inner: S,
}

impl<S> Service<Request> for TraceContextService<S>
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

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let span = otlp::server_span();
        let mut trace = TraceContext::from_headers(request.headers());
        trace.adopt_exported_span(&span);
        let sampled = trace.is_sampled();
        let request_id = caller_request_id(request.headers())
            .unwrap_or_else(|| trace.trace_id().to_header_value());
        request.extensions_mut().insert(trace);
        request
            .extensions_mut()
            .insert(RequestId(request_id.clone()));
        let method = request.method().clone();
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        let recorded = span.clone();
        Box::pin(
            async move {
                let mut response = future.await?;
                otlp::record_response(&recorded, sampled, &method, &response);
                response.headers_mut().insert(REQUEST_ID, request_id);
                Ok(response)
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::try_from(*name).expect("name"),
                HeaderValue::try_from(*value).expect("value"),
            );
        }
        map
    }

    #[test]
    fn continues_a_valid_traceparent() {
        let context = TraceContext::from_headers(&headers(&[
            ("traceparent", VALID),
            ("tracestate", "vendor=1"),
        ]));
        assert_eq!(
            context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(context.parent_span_id(), Some(0x00f0_67aa_0ba9_02b7));
        assert_eq!(
            context.tracestate().map(HeaderValue::as_bytes),
            Some(&b"vendor=1"[..])
        );
    }

    #[test]
    fn ids_render_as_zero_padded_lower_case_hex() {
        let id = TraceId(0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c);
        assert_eq!(id.to_string(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(id.to_header_value(), id.to_string().as_str());
        let child = TraceContext {
            trace_id: id,
            span_id: 1,
            parent_span_id: None,
            flags: 0x01,
            tracestate: None,
        }
        .child_traceparent();
        let child = child.to_str().expect("ascii");
        assert!(
            child.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
            "{child}"
        );
        assert!(child.ends_with("-01"), "{child}");
        assert_eq!(child.len(), 55);
    }

    #[test]
    fn child_keeps_the_trace_and_changes_the_span() {
        let context = TraceContext::from_headers(&headers(&[("traceparent", VALID)]));
        let child = context.child_traceparent();
        let child = child.to_str().expect("ascii");
        assert!(
            child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{child}"
        );
        assert!(child.ends_with("-01"));
        assert_ne!(&child[36..52], "00f067aa0ba902b7");
        assert!(parse_traceparent(child).is_some());
    }

    #[test]
    fn invalid_traceparents_start_a_new_trace() {
        for invalid in [
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "garbage",
        ] {
            let context = TraceContext::from_headers(&headers(&[("traceparent", invalid)]));
            assert_eq!(context.parent_span_id(), None, "{invalid}");
        }
    }

    #[test]
    fn future_versions_are_read_by_their_first_fields() {
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
        let context = TraceContext::from_headers(&headers(&[("traceparent", future)]));
        assert_eq!(context.parent_span_id(), Some(0x00f0_67aa_0ba9_02b7));
    }

    #[test]
    fn two_traceparents_are_ignored() {
        let context =
            TraceContext::from_headers(&headers(&[("traceparent", VALID), ("traceparent", VALID)]));
        assert_eq!(context.parent_span_id(), None);
    }

    #[test]
    fn request_ids_are_kept_only_when_sane() {
        assert!(caller_request_id(&headers(&[("x-request-id", "abc-123_x.y:z")])).is_some());
        assert!(caller_request_id(&headers(&[("x-request-id", "has space")])).is_none());
        assert!(caller_request_id(&headers(&[("x-request-id", &"a".repeat(129))])).is_none());
        assert!(
            caller_request_id(&headers(&[("x-request-id", "a"), ("x-request-id", "b")])).is_none()
        );
    }
}
