//! Request body and time limits.
//!
//! [`BodyLimitLayer`] bounds the request body in size and in the time the
//! client takes to send it. A declared `Content-Length` over the limit is
//! refused at once with 413; a streamed (chunked) body is counted as it is
//! read, and the read fails as soon as it crosses the limit. A body that does
//! not arrive within the read timeout (a slow-POST attack) fails the read.
//! Either way the layer, not the handler, answers (413 or 408), and the
//! connection is closed since the rest of the body is never read.
//!
//! [`RequestTimeoutLayer`] bounds the whole request: past it the gateway
//! answers 504 and drops the work in progress.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use axum::{
    body::Body,
    extract::Request,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderValue, header};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

use crate::Error;

const WITHIN_LIMITS: u8 = 0;
const TOO_LARGE: u8 = 1;
const TOO_SLOW: u8 = 2;

/// Bounds request bodies; see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimitLayer {
    max_bytes: usize,
    read_timeout: Duration,
}

impl BodyLimitLayer {
    /// Bodies of at most `max_bytes`, received within `read_timeout`.
    pub fn new(max_bytes: usize, read_timeout: Duration) -> Self {
        Self {
            max_bytes,
            read_timeout,
        }
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyLimit {
            inner,
            limits: *self,
        }
    }
}

/// The service of [`BodyLimitLayer`].
#[derive(Debug, Clone)]
pub struct BodyLimit<S> {
    inner: S,
    limits: BodyLimitLayer,
}

impl<S> Service<Request> for BodyLimit<S>
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
        let BodyLimitLayer {
            max_bytes,
            read_timeout,
        } = self.limits;
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > max_bytes as u64) {
            return Box::pin(std::future::ready(Ok(closing(Error::PayloadTooLarge {
                limit: max_bytes,
            }))));
        }
        if request.body().is_end_stream() {
            return Box::pin(self.inner.call(request));
        }
        let verdict = Arc::new(AtomicU8::new(WITHIN_LIMITS));
        let request = request.map(|body| {
            Body::new(GuardedBody {
                inner: body,
                remaining: max_bytes,
                deadline: Instant::now() + read_timeout,
                timer: None,
                verdict: verdict.clone(),
            })
        });
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            Ok(match verdict.load(Ordering::Acquire) {
                TOO_LARGE => closing(Error::PayloadTooLarge { limit: max_bytes }),
                TOO_SLOW => closing(Error::BodyReadTimeout(read_timeout)),
                _ => response,
            })
        })
    }
}

/// An error response that also closes the connection, whose unread body
/// would otherwise be taken as the next request.
fn closing(error: Error) -> Response {
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Why a guarded body stopped.
#[derive(Debug, thiserror::Error)]
enum BodyLimitError {
    #[error("request body larger than the limit")]
    TooLarge,
    #[error("request body not received in time")]
    TooSlow,
}

/// A request body that fails once it exceeds its size or its deadline, and
/// records which in `verdict` for the layer to answer.
struct GuardedBody {
    inner: Body,
    remaining: usize,
    deadline: Instant,
    /// Created on the first poll, so bodies never read cost no timer.
    timer: Option<Pin<Box<Sleep>>>,
    verdict: Arc<AtomicU8>,
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.as_mut().poll(cx).is_ready() {
            this.verdict.store(TOO_SLOW, Ordering::Release);
            return Poll::Ready(Some(Err(BodyLimitError::TooSlow.into())));
        }
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(data) = frame
            .as_ref()
            .and_then(|frame| frame.as_ref().ok()?.data_ref())
        {
            if data.len() > this.remaining {
                this.verdict.store(TOO_LARGE, Ordering::Release);
                return Poll::Ready(Some(Err(BodyLimitError::TooLarge.into())));
            }
            this.remaining -= data.len();
        }
        Poll::Ready(frame.map(|result| result.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Answers 504 when the request takes longer than its timeout.
#[derive(Debug, Clone, Copy)]
pub struct RequestTimeoutLayer {
    timeout: Duration,
}

impl RequestTimeoutLayer {
    /// Requests must be answered within `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for RequestTimeoutLayer {
    type Service = RequestTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestTimeout {
            inner,
            timeout: self.timeout,
        }
    }
}

/// The service of [`RequestTimeoutLayer`].
#[derive(Debug, Clone)]
pub struct RequestTimeout<S> {
    inner: S,
    timeout: Duration,
}

impl<S> Service<Request> for RequestTimeout<S>
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
        let timeout = self.timeout;
        let future = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout(timeout, future).await {
                Ok(result) => result,
                Err(_) => Ok(Error::RequestTimeout(timeout).into_response()),
            }
        })
    }
}
