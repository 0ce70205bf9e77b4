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

use std::{
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    extract::Request,
    response::{IntoResponse, Response},
};
use futures_util::future::BoxFuture;
use http::HeaderName;
use tokio::time::Instant;
use tower::{Layer, Service};

use crate::{Error, context::Deadline};

/// The header a client shortens its request's deadline with.
pub const REQUEST_TIMEOUT_HEADER: HeaderName = HeaderName::from_static("x-request-timeout");

/// Sets each request's [`Deadline`] and answers 504 when it passes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeadlineLayer {
    request_timeout: Duration,
}

impl DeadlineLayer {
    /// Requests are answered within `request_timeout`, or sooner if they ask.
    pub(crate) fn new(request_timeout: Duration) -> Self {
        Self { request_timeout }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService {
            inner,
            request_timeout: self.request_timeout,
        }
    }
}

/// The service of [`DeadlineLayer`].
#[derive(Debug, Clone)]
pub(crate) struct DeadlineService<S> {
    inner: S,
    request_timeout: Duration,
}

impl<S> Service<Request> for DeadlineService<S>
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

    fn call(&mut self, mut request: Request) -> Self::Future {
        let timeout = match request.headers().get(REQUEST_TIMEOUT_HEADER) {
            None => self.request_timeout,
            Some(value) => match value.to_str().ok().and_then(parse_timeout) {
                Some(asked) => asked.min(self.request_timeout),
                None => {
                    let error = Error::BadRequest(
                        "X-Request-Timeout must be a positive duration such as 800ms or 2s"
                            .to_owned(),
                    );
                    return Box::pin(std::future::ready(Ok(error.into_response())));
                }
            },
        };
        let deadline = Instant::now() + timeout;
        request.extensions_mut().insert(Deadline(deadline));
        let future = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout_at(deadline, future).await {
                Ok(answer) => answer,
                Err(_) => Ok(Error::RequestTimeout(timeout).into_response()),
            }
        })
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
