//! The request's deadline: `request_timeout` from its arrival, or sooner
//! when the client asks for it.
//!
//! A client that will give up after 800 ms says so with
//! `X-Request-Timeout: 800ms` (a duration with its unit, or a number of
//! milliseconds); the gateway then stops working for it at that point
//! instead of finishing an answer nobody reads. A longer value than
//! `request_timeout` is capped to it; a malformed or zero one is a 400.
//!
//! The deadline goes into the request extensions as a [`Deadline`], so every
//! downstream call made for the request gets the smaller of its own timeout
//! and what is left. When it passes, the handler is dropped (with the calls
//! it still had under way) and the client gets 504 `REQUEST_TIMEOUT`.
//!
//! Hand-written rather than tower-http's `TimeoutLayer`, whose duration is
//! fixed per layer: here each request has its own.

use std::time::Duration;

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::HeaderName;
use tokio::time::Instant;

use crate::{Error, context::Deadline};

/// The header a client shortens its request's deadline with.
pub const REQUEST_TIMEOUT_HEADER: HeaderName = HeaderName::from_static("x-request-timeout");

/// Middleware setting each request's [`Deadline`] and answering 504 when
/// it passes (`axum::middleware::from_fn_with_state`, with `request_timeout`).
pub(crate) async fn deadline(
    State(request_timeout): State<Duration>,
    mut request: Request,
    next: Next,
) -> Response {
    let timeout = match request.headers().get(REQUEST_TIMEOUT_HEADER) {
        None => request_timeout,
        Some(value) => match value.to_str().ok().and_then(parse_timeout) {
            Some(asked) => asked.min(request_timeout),
            None => {
                return Error::BadRequest(
                    "X-Request-Timeout must be a positive duration such as 800ms or 2s".to_owned(),
                )
                .into_response();
            }
        },
    };
    let deadline = Instant::now() + timeout;
    request.extensions_mut().insert(Deadline(deadline));
    match tokio::time::timeout_at(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Error::RequestTimeout(timeout).into_response(),
    }
}

/// `800ms`, `2s`, `1m` or a bare number of milliseconds; never zero.
fn parse_timeout(text: &str) -> Option<Duration> {
    let text = text.trim();
    let timeout = match text.parse::<u64>() {
        Ok(millis) => Duration::from_millis(millis),
        Err(_) => humantime::parse_duration(text).ok()?,
    };
    (!timeout.is_zero()).then_some(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_is_a_duration_with_its_unit_or_milliseconds_and_never_zero() {
        assert_eq!(parse_timeout("800ms"), Some(Duration::from_millis(800)));
        assert_eq!(parse_timeout(" 2s "), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout("1500"), Some(Duration::from_millis(1500)));
        for refused in ["0", "0ms", "", "soon", "-5", "5 parsecs"] {
            assert_eq!(parse_timeout(refused), None, "{refused:?}");
        }
    }
}
