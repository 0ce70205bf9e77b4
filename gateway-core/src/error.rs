//! How a request fails: every error a client sees is `application/problem+json`.
//!
//! Each concern has its own error enum (`auth::AuthError`,
//! `downstream::DownstreamError`, ...) implementing [`ProblemDetails`]: its
//! status, a stable machine code, a client-safe detail and any headers the
//! answer needs (`WWW-Authenticate`, later `Retry-After`). [`Error`] is what
//! handlers and layers return: the failures that belong to no concern (bad
//! input, unknown route, body and time limits, panics) and any concern's
//! error, which converts into it with `?`. This module knows no concern:
//! concerns depend on it, never the other way round.
//!
//! Turning an [`Error`] into a response logs the full error (internals
//! included) and attaches a [`Problem`] to the response; [`ProblemLayer`],
//! outside every other layer, renders it as the body with the request's
//! `trace_id`. The same layer turns any other error response (an axum
//! extractor rejection, a 405, a panic) into problem+json, so a client never
//! sees another error format; the exceptions are a service's own 4xx on a
//! pass-through route ([`PassedThrough`]), which is that service's API, and
//! an error in a protocol's own format ([`ProtocolError`]: GraphQL over
//! HTTP's 400), which that protocol's clients read.

use std::{
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::Body,
    extract::Request,
    response::{IntoResponse, Response},
};
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use shared_schema::{InvalidParam, PROBLEM_JSON, Problem};
use tower::{Layer, Service};

use crate::observability::{TraceContext, TraceId};

/// Largest non-problem error body read to use as a problem's detail.
const MAX_DETAIL_SOURCE_BYTES: usize = 1024;
/// Longest detail taken from such a body.
const MAX_DETAIL_CHARS: usize = 300;

/// A concern's error as a client sees it.
///
/// Implemented by each concern's error enum, so [`Error`] can carry it and
/// render it without knowing the concern.
pub trait ProblemDetails: std::error::Error + Send + Sync + 'static {
    /// The HTTP status it is answered with.
    fn status(&self) -> StatusCode;
    /// The stable machine code clients may switch on (`AUTH_TOKEN_EXPIRED`).
    fn code(&self) -> &'static str;
    /// What the client is told: never internals such as addresses or bodies.
    fn client_detail(&self) -> String;
    /// Headers the answer needs besides the body (`WWW-Authenticate`).
    fn response_headers(&self, _headers: &mut HeaderMap) {}
}

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The resource the request names does not exist.
    #[error("{resource} {id} not found")]
    NotFound {
        /// What kind of resource (`product`, `order`).
        resource: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The request is malformed; the text says how.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No route matches the path.
    #[error("no route for {method} {path}")]
    RouteNotFound {
        /// The request method.
        method: http::Method,
        /// The normalised path.
        path: String,
    },
    /// The request body exceeds the configured limit.
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The client did not send its whole body in time.
    #[error("request body not received within {0:?}")]
    BodyReadTimeout(Duration),
    /// The gateway could not answer within the request timeout.
    #[error("request not answered within {0:?}")]
    RequestTimeout(Duration),
    /// A concern's own failure (authentication, a downstream call...),
    /// answered as the concern describes it.
    #[error("{0}")]
    Concern(Box<dyn ProblemDetails>),
    /// A bug: a handler panicked. The details are logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
    /// Parts of the request are invalid: a query parameter (400
    /// `INVALID_PARAMETER`) or fields of the body (422 `INVALID_BODY`).
    #[error("{detail}")]
    Invalid {
        /// 400 or 422.
        status: StatusCode,
        /// `INVALID_PARAMETER`, `INVALID_QUERY` or `INVALID_BODY`.
        code: &'static str,
        /// The whole of it, in words.
        detail: String,
        /// Each invalid part.
        params: Vec<InvalidParam>,
    },
}

impl Error {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound { .. } | Self::RouteNotFound { .. } => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyReadTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::RequestTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Concern(error) => error.status(),
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Invalid { status, .. } => *status,
        }
    }

    /// A 400 `INVALID_PARAMETER`: the query parameter `name` is wrong as `reason` says.
    pub fn invalid_parameter(name: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self::Invalid {
            status: StatusCode::BAD_REQUEST,
            code: "INVALID_PARAMETER",
            detail: format!("the query parameter {name} {reason}"),
            params: vec![InvalidParam {
                name: name.to_owned(),
                reason,
            }],
        }
    }

    /// A 422 `INVALID_QUERY`: each of `params` (query parameters) is wrong
    /// as its reason says; for an API that answers every invalid input 422
    /// (bff-partner), where bff-web's listing answers one 400 `INVALID_PARAMETER`.
    pub fn invalid_query(params: Vec<InvalidParam>) -> Self {
        let detail = match params.as_slice() {
            [one] => format!("the query parameter {} {}", one.name, one.reason),
            many => format!("{} query parameters are invalid", many.len()),
        };
        Self::Invalid {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "INVALID_QUERY",
            detail,
            params,
        }
    }

    /// A 422 `INVALID_BODY`: each of `params` (JSON Pointers into the body)
    /// is wrong as its reason says.
    pub fn invalid_body(params: Vec<InvalidParam>) -> Self {
        let detail = match params.as_slice() {
            [one] => format!("{}: {}", one.name, one.reason),
            many => format!("{} fields of the body are invalid", many.len()),
        };
        Self::Invalid {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "INVALID_BODY",
            detail,
            params,
        }
    }

    /// The stable machine code clients may switch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "NOT_FOUND",
            Self::BadRequest(_) => "BAD_REQUEST",
            Self::RouteNotFound { .. } => "ROUTE_NOT_FOUND",
            Self::PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            Self::BodyReadTimeout(_) => "BODY_READ_TIMEOUT",
            Self::RequestTimeout(_) => "REQUEST_TIMEOUT",
            Self::Concern(error) => error.code(),
            Self::Internal(_) => "INTERNAL",
            Self::Invalid { code, .. } => code,
        }
    }

    /// What the client is told: never internals such as addresses or bodies.
    pub fn client_detail(&self) -> String {
        match self {
            Self::NotFound { .. }
            | Self::BadRequest(_)
            | Self::RouteNotFound { .. }
            | Self::PayloadTooLarge { .. } => self.to_string(),
            Self::BodyReadTimeout(limit) => {
                format!("the request body was not received within {limit:?}")
            }
            Self::RequestTimeout(limit) => {
                format!("the request could not be answered within {limit:?}")
            }
            Self::Concern(error) => error.client_detail(),
            Self::Internal(_) => "the gateway failed to handle the request".to_owned(),
            Self::Invalid { detail, .. } => detail.clone(),
        }
    }

    /// The problem+json body (without `trace_id`, which [`ProblemLayer`] adds).
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let mut problem = Problem::new(
            status.as_u16(),
            self.code(),
            status.canonical_reason().unwrap_or("Error"),
            Some(self.client_detail()),
        );
        if let Self::Invalid { params, .. } = self {
            problem.errors.clone_from(params);
        }
        problem
    }
}

impl<E: ProblemDetails> From<E> for Error {
    fn from(error: E) -> Self {
        Self::Concern(Box::new(error))
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, code = self.code(), "request failed");
        } else {
            tracing::debug!(error = %self, code = self.code(), "request rejected");
        }
        let mut response = problem_response(self.problem());
        if let Self::Concern(error) = &self {
            error.response_headers(response.headers_mut());
        }
        response
    }
}

/// A response that [`ProblemLayer`] renders as `problem` with the trace id.
pub fn problem_response(problem: Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Body::empty()).into_response();
    response.extensions_mut().insert(problem);
    response
}

/// Marks a response a downstream service gave, passed through as it is
/// (pass-through routes): its 4xx is the service's answer to the client,
/// whose body [`ProblemLayer`] keeps.
#[derive(Debug, Clone, Copy)]
pub struct PassedThrough;

/// Marks an error response whose body is its protocol's own error document
/// (a GraphQL response with `errors` and a 400, as GraphQL over HTTP asks),
/// which [`ProblemLayer`] keeps.
#[derive(Debug, Clone, Copy)]
pub struct ProtocolError;

/// Renders every error response as `application/problem+json`; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProblemLayer;

impl<S> Layer<S> for ProblemLayer {
    type Service = ProblemService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ProblemService { inner }
    }
}

/// The service of [`ProblemLayer`].
#[derive(Debug, Clone)]
pub struct ProblemService<S> {
    inner: S,
}

impl<S> Service<Request> for ProblemService<S>
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
        // Kept as the id itself: it is formatted only if an error is rendered.
        let trace_id = request
            .extensions()
            .get::<TraceContext>()
            .map(TraceContext::trace_id);
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            Ok(render(response, trace_id).await)
        })
    }
}

async fn render(mut response: Response, trace_id: Option<TraceId>) -> Response {
    let problem = match response.extensions_mut().remove::<Problem>() {
        Some(problem) => problem,
        None if response.status().is_client_error() || response.status().is_server_error() => {
            let extensions = response.extensions();
            if is_problem_json(&response)
                || extensions.get::<PassedThrough>().is_some()
                || extensions.get::<ProtocolError>().is_some()
            {
                return response;
            }
            generic_problem(&mut response).await
        }
        None => return response,
    };
    let (mut parts, _) = response.into_parts();
    let problem = Problem {
        trace_id: trace_id.map(|id| id.to_string()),
        ..problem
    };
    let body = serde_json::to_vec(&problem).expect("a Problem always serialises");
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    parts.headers.remove(header::CONTENT_ENCODING);
    Response::from_parts(parts, Body::from(body))
}

fn is_problem_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(PROBLEM_JSON.as_bytes()))
}

/// The code of an error response nobody described, by its status.
fn generic_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "BAD_REQUEST",
        StatusCode::NOT_FOUND => "NOT_FOUND",
        StatusCode::METHOD_NOT_ALLOWED => "METHOD_NOT_ALLOWED",
        StatusCode::NOT_ACCEPTABLE => "NOT_ACCEPTABLE",
        StatusCode::PAYLOAD_TOO_LARGE => "PAYLOAD_TOO_LARGE",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UNSUPPORTED_MEDIA_TYPE",
        StatusCode::UNPROCESSABLE_ENTITY => "UNPROCESSABLE_ENTITY",
        StatusCode::SERVICE_UNAVAILABLE => "UNAVAILABLE",
        status if status.is_server_error() => "INTERNAL",
        _ => "CLIENT_ERROR",
    }
}

/// A problem for an error response nobody described: an extractor rejection
/// keeps its (short, plain-text) message as the detail; anything else gets
/// only its status.
async fn generic_problem(response: &mut Response) -> Problem {
    let status = response.status();
    let is_text = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"text/plain"));
    let detail = if status.is_client_error() && is_text {
        let body = std::mem::take(response.body_mut());
        axum::body::to_bytes(body, MAX_DETAIL_SOURCE_BYTES)
            .await
            .ok()
            .map(|bytes| {
                String::from_utf8_lossy(&bytes)
                    .chars()
                    .take(MAX_DETAIL_CHARS)
                    .collect::<String>()
            })
            .filter(|text| !text.trim().is_empty())
    } else {
        None
    };
    let code = generic_code(status);
    Problem::new(
        status.as_u16(),
        code,
        status.canonical_reason().unwrap_or("Error"),
        detail,
    )
}

/// An error and its causes, `outer: inner: innermost`: the HTTP client's
/// own message ("client error (Connect)") alone does not say what happened.
pub(crate) fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(": ");
        text.push_str(&error.to_string());
        cause = error.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_render_as_problem_json_with_the_trace_id() {
        let response = Error::NotFound {
            resource: "product",
            id: "7".to_owned(),
        }
        .into_response();
        let trace_id = TraceContext::new_root().trace_id();
        let rendered = render(response, Some(trace_id)).await;
        assert_eq!(rendered.status(), StatusCode::NOT_FOUND);
        assert_eq!(rendered.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = axum::body::to_bytes(rendered.into_body(), 4096)
            .await
            .expect("body");
        let problem: Problem = serde_json::from_slice(&body).expect("problem json");
        assert_eq!(problem.code, "NOT_FOUND");
        assert_eq!(problem.detail.as_deref(), Some("product 7 not found"));
        assert_eq!(problem.trace_id, Some(trace_id.to_string()));
    }

    #[tokio::test]
    async fn plain_text_rejections_become_problems_keeping_their_message() {
        let response = (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expected request with `Content-Type: application/json`",
        )
            .into_response();
        let rendered = render(response, None).await;
        assert_eq!(rendered.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let body = axum::body::to_bytes(rendered.into_body(), 4096)
            .await
            .expect("body");
        let problem: Problem = serde_json::from_slice(&body).expect("problem json");
        assert_eq!(problem.code, "UNSUPPORTED_MEDIA_TYPE");
        assert!(problem.detail.expect("detail").contains("application/json"));
    }

    #[tokio::test]
    async fn a_protocols_own_error_document_and_a_services_answer_are_kept() {
        for marked in [
            |response: &mut Response| {
                response.extensions_mut().insert(ProtocolError);
            },
            |response: &mut Response| {
                response.extensions_mut().insert(PassedThrough);
            },
        ] {
            let mut response = (StatusCode::BAD_REQUEST, r#"{"errors":[]}"#).into_response();
            marked(&mut response);
            let rendered = render(response, None).await;
            assert_eq!(rendered.status(), StatusCode::BAD_REQUEST);
            let body = axum::body::to_bytes(rendered.into_body(), 4096)
                .await
                .expect("body");
            assert_eq!(&body[..], br#"{"errors":[]}"#);
        }
    }

    #[tokio::test]
    async fn server_errors_never_leak_their_body() {
        let response = (
            StatusCode::INTERNAL_SERVER_ERROR,
            "stack trace at 0xdeadbeef",
        )
            .into_response();
        let body = axum::body::to_bytes(render(response, None).await.into_body(), 4096)
            .await
            .expect("body");
        assert!(!String::from_utf8_lossy(&body).contains("deadbeef"));
    }

    #[tokio::test]
    async fn successes_pass_untouched() {
        let response = (StatusCode::OK, "fine").into_response();
        let rendered = render(response, None).await;
        let body = axum::body::to_bytes(rendered.into_body(), 4096)
            .await
            .expect("body");
        assert_eq!(&body[..], b"fine");
    }
}
