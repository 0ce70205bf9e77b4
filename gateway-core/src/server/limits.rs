//! Request body limits.
//!
//! The size of a body is bounded by tower-http's `RequestBodyLimitLayer`;
//! the function here turns its bare 413 into the gateway's problem, right
//! next to the layer that produces it. A body over the limit is
//! refused at once when its `Content-Length` declares it, and fails the read
//! as soon as a streamed body crosses it.
//!
//! [`BodyDeadlineLayer`] is written here because tower-http's body timeout
//! bounds the wait for each chunk, not the whole body: a client trickling a
//! byte every few seconds (a slow-POST attack) would never hit it. Here the
//! whole body must arrive by one deadline, else the answer is 408.
//!
//! A refused body is never read to its end, so the answer also closes the
//! connection: what is left of the body would otherwise be taken as the
//! next request.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
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
use http::{HeaderValue, StatusCode, header};
use http_body::{Body as HttpBody, Frame, SizeHint};
use shared_schema::Problem;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

use crate::Error;

/// Turns the bare 413 of the body limit (or of an extractor that hit it
/// while reading) into the `PAYLOAD_TOO_LARGE` problem, closing the connection.
pub(super) fn payload_too_large(response: Response, limit: usize) -> Response {
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && is_bare(&response) {
        closing(Error::PayloadTooLarge { limit })
    } else {
        response
    }
}

/// True for an error response no part of the gateway described: a handler's
/// own 413 carries its [`Problem`] and is kept.
fn is_bare(response: &Response) -> bool {
    response.extensions().get::<Problem>().is_none()
}

/// An error response that also closes the connection.
fn closing(error: Error) -> Response {
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Requires the whole request body within one deadline; see the module docs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyDeadlineLayer {
    read_timeout: Duration,
}

impl BodyDeadlineLayer {
    /// Bodies must be received within `read_timeout` of the request head.
    pub(crate) fn new(read_timeout: Duration) -> Self {
        Self { read_timeout }
    }
}

impl<S> Layer<S> for BodyDeadlineLayer {
    type Service = BodyDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyDeadline {
            inner,
            read_timeout: self.read_timeout,
        }
    }
}

/// The service of [`BodyDeadlineLayer`].
#[derive(Debug, Clone)]
pub(crate) struct BodyDeadline<S> {
    inner: S,
    read_timeout: Duration,
}

impl<S> Service<Request> for BodyDeadline<S>
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
        if request.body().is_end_stream() {
            return Box::pin(self.inner.call(request));
        }
        let read_timeout = self.read_timeout;
        let expired = Arc::new(AtomicBool::new(false));
        let request = request.map(|body| {
            Body::new(DeadlineBody {
                inner: body,
                deadline: Instant::now() + read_timeout,
                timer: None,
                expired: expired.clone(),
            })
        });
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            Ok(if expired.load(Ordering::Acquire) {
                closing(Error::BodyReadTimeout(read_timeout))
            } else {
                response
            })
        })
    }
}

/// The body was not received by its deadline.
#[derive(Debug, thiserror::Error)]
#[error("request body not received in time")]
struct BodyTooSlow;

/// A request body that fails once its deadline passes, and records it in
/// `expired` for the layer to answer 408 whatever the handler made of the
/// failed read.
struct DeadlineBody {
    inner: Body,
    deadline: Instant,
    /// Created on the first poll, so bodies never read cost no timer.
    timer: Option<Pin<Box<Sleep>>>,
    expired: Arc<AtomicBool>,
}

impl HttpBody for DeadlineBody {
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
            this.expired.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(BodyTooSlow.into())));
        }
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        Poll::Ready(frame.map(|result| result.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
