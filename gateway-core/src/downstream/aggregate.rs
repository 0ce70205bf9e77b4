//! Answers assembled from several downstream parts, with a partial-response
//! contract.
//!
//! [`aggregate`] runs the parts of an answer in parallel, so its latency is
//! that of the slowest part rather than their sum. Each part is either
//! [`required`] or [`optional`]:
//!
//! - a required part that fails fails the whole request **at once**: the
//!   parts still under way are cancelled (each shows `desc="cancelled"` in
//!   `Server-Timing`) and the client gets the part's problem+json (502, 503
//!   or 504, with a code naming the cause and a detail naming the service);
//! - a [`dependent`] part is required, but its 404 fails the request only
//!   once the others succeeded, so that a missing product is the product's
//!   404 and not whichever 404 (its price's) answered first;
//! - an optional part that fails becomes `None`, which the BFF turns into
//!   its fallback (`null`, an empty list, a default), and is recorded as a
//!   [`DegradedPart`] of the request. The answer is still a 200, whose
//!   `BFF-Partial` header lists every degraded part with its cause, and
//!   whose body says the same in the BFF's own shape:
//!
//! ```text
//! BFF-Partial: reviews=timeout, price=circuit_open
//! ```
//!
//! The causes are those of `Server-Timing`: `timeout`, `unavailable`,
//! `bad_status`, `not_found`, `invalid`, `circuit_open`, `overloaded`.
//!
//! How many downstream calls one request has under way at once is bounded
//! by `server.max_fan_out` (the request's [`FanOut`]): a GraphQL query that
//! selects a hundred products waits for slots instead of opening a hundred
//! calls at once.
//!
//! # Example
//!
//! ```no_run
//! use gateway_core::{Error, RequestContext};
//! use gateway_core::downstream::{Downstreams, fetching};
//! use gateway_core::downstream::aggregate::{aggregate, optional, required};
//! # #[derive(serde::Deserialize)] struct Product;
//! # #[derive(serde::Deserialize)] struct Reviews;
//! # async fn page(services: Downstreams, context: RequestContext) -> Result<(), Error> {
//! let client = |name| services.client(name);
//! let (product, reviews) = aggregate((
//!     required(async {
//!         client("products")
//!             .get::<Product>("/products/42", &context)
//!             .await
//!             .map_err(fetching("product", 42))
//!     }),
//!     optional("reviews", &context, client("reviews").get::<Reviews>("/reviews?product=42", &context)),
//! ))
//! .await?;
//! // `reviews` is `None` when they failed; `BFF-Partial: reviews=timeout` says why.
//! # Ok(()) }
//! ```

use std::{future::Future, num::NonZeroUsize, sync::Arc};

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use http::{HeaderName, HeaderValue};

use super::DownstreamError;
use crate::{
    Error,
    context::{DegradedPart, FanOut, RequestContext},
};

/// The response header listing the degraded parts of a 200.
pub const BFF_PARTIAL: HeaderName = HeaderName::from_static("bff-partial");

/// A part the answer cannot do without: its failure is the request's.
pub async fn required<T, E: Into<Error>>(
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, Error> {
    call.await.map_err(Into::into)
}

/// A required part describing what another part fetches (the price of
/// a product): its 404 says only that the thing is missing, which the other
/// part reports itself. So that the client gets that part's own 404 rather
/// than whichever 404 came first, a [`Deferred`] 404 fails the answer only
/// once the other parts succeeded ([`Deferred::get`]); any other failure
/// fails it at once, like [`required`].
pub async fn dependent<T>(
    call: impl Future<Output = Result<T, DownstreamError>>,
) -> Result<Deferred<T>, Error> {
    match call.await {
        Err(error @ DownstreamError::NotFound { .. }) => Ok(Deferred(Err(error))),
        Err(error) => Err(error.into()),
        Ok(value) => Ok(Deferred(Ok(value))),
    }
}

/// The value of a [`dependent`] part, or its 404.
#[derive(Debug)]
pub struct Deferred<T>(Result<T, DownstreamError>);

impl<T> Deferred<T> {
    /// The value, or the 404 as the request's failure.
    pub fn get(self) -> Result<T, Error> {
        self.0.map_err(Into::into)
    }
}

/// A part the answer can do without, named `part` in `BFF-Partial` and in
/// the body: `None` when it failed, with the failure recorded as a
/// [`DegradedPart`] of the request. Never an `Err`: it is a `Result` only
/// to join the required parts in [`aggregate`].
pub async fn optional<T>(
    part: &'static str,
    context: &RequestContext,
    call: impl Future<Output = Result<T, DownstreamError>>,
) -> Result<Option<T>, Error> {
    Ok(call
        .await
        .inspect_err(|error| record_degraded(context, part, error))
        .ok())
}

/// Records that optional `part` of the request's answer failed with
/// `error`, for `BFF-Partial`; for parts resolved outside [`aggregate`]
/// (GraphQL fields).
pub fn record_degraded(context: &RequestContext, part: &'static str, error: &DownstreamError) {
    tracing::warn!(part, %error, "optional part degraded");
    if let Some(fan_out) = &context.fan_out {
        fan_out.degrade(part, error.cause());
    }
}

/// Parts of an answer joined by [`aggregate`]: a tuple of futures, each a
/// [`required`] or an [`optional`] part.
pub trait Parts {
    /// The parts' values, in order.
    type Output;

    /// Runs the parts concurrently until all succeed or one fails.
    fn join(self) -> impl Future<Output = Result<Self::Output, Error>> + Send;
}

macro_rules! tuple_parts {
    ($($part:ident $value:ident),+) => {
        impl<$($part, $value),+> Parts for ($($part,)+)
        where
            $($part: Future<Output = Result<$value, Error>> + Send, $value: Send,)+
        {
            type Output = ($($value,)+);

            #[allow(non_snake_case)]
            fn join(self) -> impl Future<Output = Result<Self::Output, Error>> + Send {
                let ($($part,)+) = self;
                async move { tokio::try_join!($($part),+) }
            }
        }
    };
}

tuple_parts!(A Va, B Vb);
tuple_parts!(A Va, B Vb, C Vc);
tuple_parts!(A Va, B Vb, C Vc, D Vd);
tuple_parts!(A Va, B Vb, C Vc, D Vd, E Ve);
tuple_parts!(A Va, B Vb, C Vc, D Vd, E Ve, F Vf);

/// Runs the parts of an answer concurrently; the first required part to
/// fail ends it with that failure, cancelling the others. See the module docs.
pub async fn aggregate<P: Parts>(parts: P) -> Result<P::Output, Error> {
    parts.join().await
}

/// Middleware giving each request its [`FanOut`] (bounded by
/// `server.max_fan_out`) and writing `BFF-Partial` on a successful answer
/// with degraded parts (`axum::middleware::from_fn_with_state`).
pub(crate) async fn fan_out(
    State(max_fan_out): State<NonZeroUsize>,
    mut request: Request,
    next: Next,
) -> Response {
    let fan_out = Arc::new(FanOut::new(max_fan_out.get()));
    request.extensions_mut().insert(fan_out.clone());
    let mut response = next.run(request).await;
    if response.status().is_success()
        && let Some(value) = partial_header(&fan_out.degraded())
    {
        response.headers_mut().insert(BFF_PARTIAL, value);
    }
    response
}

/// `reviews=timeout, price=circuit_open`; `None` when nothing degraded.
fn partial_header(degraded: &[DegradedPart]) -> Option<HeaderValue> {
    if degraded.is_empty() {
        return None;
    }
    let value = degraded
        .iter()
        .map(|DegradedPart { part, cause }| format!("{part}={cause}"))
        .collect::<Vec<_>>()
        .join(", ");
    Some(HeaderValue::try_from(value).expect("part names and causes are header-safe tokens"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn timeout(service: &'static str) -> DownstreamError {
        DownstreamError::Timeout {
            service,
            timeout: Duration::from_millis(300),
        }
    }

    fn context() -> RequestContext {
        RequestContext {
            fan_out: Some(Arc::new(FanOut::new(4))),
            ..RequestContext::detached()
        }
    }

    #[tokio::test]
    async fn optional_parts_that_fail_are_none_and_named_with_their_cause() {
        let context = context();
        let (kept, lost, also_lost) = aggregate((
            optional("price", &context, async { Ok::<_, DownstreamError>(7) }),
            optional("reviews", &context, async {
                Err::<u8, _>(timeout("reviews"))
            }),
            optional("stock", &context, async {
                Err::<u8, _>(DownstreamError::CircuitOpen {
                    service: "inventory",
                    retry_after: Duration::from_secs(1),
                })
            }),
        ))
        .await
        .expect("optional parts never fail the answer");
        assert_eq!((kept, lost, also_lost), (Some(7), None, None));
        let degraded = context.degraded();
        assert_eq!(
            partial_header(&degraded).expect("degraded parts"),
            "reviews=timeout, stock=circuit_open"
        );
    }

    #[tokio::test]
    async fn a_failed_required_part_ends_the_answer_and_cancels_the_rest() {
        let context = context();
        let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
        let never_finished = optional("reviews", &context, async move {
            // Holds the sender until dropped: only cancellation drops it here.
            let _cancel = cancel;
            std::future::pending::<Result<u8, DownstreamError>>().await
        });
        let failed = aggregate((
            required(async { Err::<u8, _>(timeout("products")) }),
            never_finished,
        ))
        .await
        .expect_err("the required part failed");
        assert_eq!(failed.code(), "DOWNSTREAM_TIMEOUT");
        assert!(
            cancelled.await.is_err(),
            "the optional part still under way was dropped"
        );
        assert!(
            context.degraded().is_empty(),
            "a cancelled part is not degraded"
        );
    }

    #[tokio::test]
    async fn the_primary_parts_404_wins_over_a_dependent_404_that_came_first() {
        let (answered, answer) = tokio::sync::oneshot::channel::<()>();
        let not_found = |service| DownstreamError::NotFound { service };
        let failed = aggregate((
            required(async {
                // Answers only after the dependent part has failed.
                let _ = answer.await;
                Err::<u8, _>(crate::Error::NotFound {
                    resource: "product",
                    id: "42".to_owned(),
                })
            }),
            dependent(async {
                let result = Err::<u8, _>(not_found("pricing"));
                let _ = answered.send(());
                result
            }),
        ))
        .await
        .expect_err("the product is missing");
        assert_eq!(failed.code(), "NOT_FOUND");

        let (_, price) = aggregate((
            required(async { Ok::<_, Error>(1) }),
            dependent(async { Err::<u8, _>(not_found("pricing")) }),
        ))
        .await
        .expect("the 404 waits for the others");
        assert_eq!(
            price.get().expect_err("then it fails").code(),
            "DOWNSTREAM_NOT_FOUND"
        );
        let timed_out = aggregate((
            required(std::future::pending::<Result<u8, Error>>()),
            dependent(async { Err::<u8, _>(timeout("pricing")) }),
        ))
        .await
        .expect_err("any other failure fails at once");
        assert_eq!(timed_out.code(), "DOWNSTREAM_TIMEOUT");
    }

    #[test]
    fn the_same_part_and_cause_is_listed_once() {
        let context = context();
        record_degraded(&context, "price", &timeout("pricing"));
        record_degraded(&context, "price", &timeout("pricing"));
        assert_eq!(
            partial_header(&context.degraded()).expect("one part"),
            "price=timeout"
        );
        assert_eq!(partial_header(&[]), None);
    }
}
