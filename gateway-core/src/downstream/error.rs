//! How a downstream call fails, and how the client is told.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::{
    Error,
    error::{ProblemDetails, causes},
};

/// A boxed transport error.
pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A downstream call that failed.
#[derive(Debug, thiserror::Error)]
pub enum DownstreamError {
    /// No complete answer within the time the call had.
    #[error("{service}: no answer within {timeout:?}")]
    Timeout {
        /// The service called.
        service: &'static str,
        /// Its timeout, or what was left of the request's deadline if less.
        timeout: Duration,
    },
    /// The service could not be reached or broke the connection.
    #[error("{service}: unavailable: {}", causes(.source.as_ref()))]
    Unavailable {
        /// The service called.
        service: &'static str,
        /// The transport error.
        source: BoxError,
    },
    /// The service answered 404.
    #[error("{service}: not found")]
    NotFound {
        /// The service called.
        service: &'static str,
    },
    /// The service answered with an unexpected status.
    #[error("{service}: answered {status}")]
    Status {
        /// The service called.
        service: &'static str,
        /// What it answered.
        status: StatusCode,
    },
    /// The answer is not the expected JSON.
    #[error("{service}: invalid body: {source}")]
    InvalidBody {
        /// The service called.
        service: &'static str,
        /// Why it did not parse.
        source: serde_json::Error,
    },
    /// The answer is larger than the configured maximum.
    #[error("{service}: body larger than {limit} bytes")]
    BodyTooLarge {
        /// The service called.
        service: &'static str,
        /// The configured maximum.
        limit: usize,
    },
    /// The route called a service for a request without a verified identity
    /// (a public route): refused before sending, since every service call
    /// carries the caller's tenant. A bug in the route, never the client's fault.
    #[error("{service}: not called: the request has no verified identity")]
    NoIdentity {
        /// The service that was not called.
        service: &'static str,
    },
    /// The request could not be formed: the path is not a valid URI path.
    /// A bug in the route that built it, never the client's fault.
    #[error("{service}: the request path is not a valid URI path")]
    InvalidPath {
        /// The service called.
        service: &'static str,
    },
    /// The service's circuit is open after recent failures: not called.
    #[error("{service}: circuit open; not called")]
    CircuitOpen {
        /// The service not called.
        service: &'static str,
        /// How long until the circuit lets a probe through (zero while probes run).
        retry_after: Duration,
    },
    /// This instance already has `max_concurrency` calls in flight to the
    /// service: not called.
    #[error("{service}: too many calls in flight; not called")]
    Overloaded {
        /// The service not called.
        service: &'static str,
    },
    /// The client's body, streamed to the service, broke (the client went
    /// away or sent too much) or had not arrived whole when the call timed
    /// out: the client's failure, not the service's.
    #[error("{service}: the client's request body did not arrive whole")]
    UploadIncomplete {
        /// The service it was streamed to.
        service: &'static str,
        /// Whether the call's time ran out while the body was still arriving.
        timed_out: bool,
    },
}

impl DownstreamError {
    /// The service the call was for.
    pub fn service(&self) -> &'static str {
        match self {
            Self::Timeout { service, .. }
            | Self::Unavailable { service, .. }
            | Self::NotFound { service }
            | Self::Status { service, .. }
            | Self::InvalidBody { service, .. }
            | Self::BodyTooLarge { service, .. }
            | Self::NoIdentity { service }
            | Self::InvalidPath { service }
            | Self::CircuitOpen { service, .. }
            | Self::Overloaded { service }
            | Self::UploadIncomplete { service, .. } => service,
        }
    }

    /// The service failed the call: a timeout, a connection error or a
    /// 5xx answer. These count against its circuit and may be retried; a
    /// 4xx or an unreadable answer came from a service that is up.
    pub(crate) fn is_service_failure(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::Unavailable { .. } => true,
            Self::Status { status, .. } => status.is_server_error(),
            _ => false,
        }
    }

    /// A stale cached answer may stand in for this failure
    /// (`stale-if-error`): the service failed, or is not called because
    /// its circuit is open or this instance has too many calls in flight.
    pub(crate) fn serves_stale(&self) -> bool {
        self.is_service_failure()
            || matches!(self, Self::CircuitOpen { .. } | Self::Overloaded { .. })
    }

    /// The `outcome` label of the call in metrics and spans.
    pub(crate) fn outcome(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Self::Timeout { .. } => "timeout".into(),
            Self::NotFound { .. } => "404".into(),
            Self::Status { status, .. } => status.as_u16().to_string().into(),
            Self::Unavailable { .. } => "error".into(),
            Self::InvalidBody { .. } | Self::BodyTooLarge { .. } => "invalid".into(),
            Self::InvalidPath { .. } | Self::NoIdentity { .. } => "not_sent".into(),
            Self::CircuitOpen { .. } => "circuit_open".into(),
            Self::Overloaded { .. } => "overloaded".into(),
            Self::UploadIncomplete { .. } => "upload_incomplete".into(),
        }
    }

    /// What happened, in one token: the `desc` of the call's
    /// `Server-Timing` entry and the cause in `BFF-Partial`.
    pub(crate) fn cause(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::Unavailable { .. } => "unavailable",
            Self::NotFound { .. } => "not_found",
            Self::Status { .. } => "bad_status",
            Self::InvalidBody { .. } | Self::BodyTooLarge { .. } => "invalid",
            Self::InvalidPath { .. } | Self::NoIdentity { .. } => "not_sent",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::Overloaded { .. } => "overloaded",
            Self::UploadIncomplete { .. } => "upload_incomplete",
        }
    }

    /// The status code the service answered, if it answered.
    pub(crate) fn answered_status(&self) -> Option<u16> {
        match self {
            Self::NotFound { .. } => Some(404),
            Self::Status { status, .. } => Some(status.as_u16()),
            _ => None,
        }
    }
}

impl ProblemDetails for DownstreamError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            // A 404 there is the client's 404 only when the route says the
            // missing thing is what the client asked for (`fetching`).
            Self::NotFound { .. } => StatusCode::BAD_GATEWAY,
            Self::InvalidPath { .. } | Self::NoIdentity { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::CircuitOpen { .. } | Self::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::UploadIncomplete {
                timed_out: true, ..
            } => StatusCode::REQUEST_TIMEOUT,
            Self::UploadIncomplete { .. } => StatusCode::BAD_REQUEST,
            Self::Unavailable { .. }
            | Self::Status { .. }
            | Self::InvalidBody { .. }
            | Self::BodyTooLarge { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "DOWNSTREAM_TIMEOUT",
            Self::Unavailable { .. } => "DOWNSTREAM_UNAVAILABLE",
            Self::NotFound { .. } => "DOWNSTREAM_NOT_FOUND",
            Self::Status { .. } | Self::InvalidBody { .. } | Self::BodyTooLarge { .. } => {
                "DOWNSTREAM_BAD_RESPONSE"
            }
            Self::InvalidPath { .. } | Self::NoIdentity { .. } => "INTERNAL",
            Self::CircuitOpen { .. } => "DOWNSTREAM_CIRCUIT_OPEN",
            Self::Overloaded { .. } => "DOWNSTREAM_OVERLOADED",
            Self::UploadIncomplete {
                timed_out: true, ..
            } => "BODY_READ_TIMEOUT",
            Self::UploadIncomplete { .. } => "BAD_REQUEST",
        }
    }

    fn client_detail(&self) -> String {
        match self {
            Self::Timeout { service, timeout } => {
                // Whole milliseconds: the client reads it, not a profiler.
                let timeout =
                    Duration::from_millis(timeout.as_millis().try_into().unwrap_or(u64::MAX));
                format!(
                    "the {service} service did not answer within {}",
                    humantime::format_duration(timeout)
                )
            }
            Self::NotFound { service } => {
                format!("the {service} service has no resource this answer needs")
            }
            Self::Unavailable { service, .. } => format!("the {service} service is unavailable"),
            Self::Status { service, .. }
            | Self::InvalidBody { service, .. }
            | Self::BodyTooLarge { service, .. } => {
                format!("the {service} service gave an invalid answer")
            }
            Self::InvalidPath { .. } | Self::NoIdentity { .. } => {
                "the gateway failed to handle the request".to_owned()
            }
            Self::CircuitOpen { service, .. } => format!(
                "the {service} service is failing and is not called for a while; try again later"
            ),
            Self::Overloaded { service } => {
                format!("too many requests to the {service} service are under way; try again")
            }
            Self::UploadIncomplete {
                service,
                timed_out: true,
            } => format!("the request body did not arrive within the {service} service's time"),
            Self::UploadIncomplete { .. } => "the request body could not be read whole".to_owned(),
        }
    }

    /// `Retry-After` on a circuit that is open: when it will probe again,
    /// in whole seconds, at least one.
    fn response_headers(&self, headers: &mut HeaderMap) {
        if let Self::CircuitOpen { retry_after, .. } = self {
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
    }
}

/// Maps the failure of fetching `resource` `id` from its owning service: a
/// 404 there means the resource does not exist (the client's 404 names the
/// resource, not the service); anything else is the downstream failure.
///
/// `downstreams.fetch::<Quote>(id, &context).await.map_err(fetching("quote", id))?`
pub fn fetching(
    resource: &'static str,
    id: impl ToString,
) -> impl FnOnce(DownstreamError) -> Error {
    move |error| match error {
        DownstreamError::NotFound { .. } => Error::NotFound {
            resource,
            id: id.to_string(),
        },
        other => other.into(),
    }
}

/// A write the service refused as the client's own fault (it answered a
/// 4xx): a 422 with the route's code, since the request was understood but
/// cannot be carried out, never the gateway's 502.
#[derive(Debug, thiserror::Error)]
#[error("{detail} (the service answered {status})")]
pub struct Refused {
    /// The route's stable code, for example `ORDER_REJECTED`.
    pub code: &'static str,
    /// What the client is told.
    pub detail: &'static str,
    /// What the service answered.
    pub status: StatusCode,
}

impl ProblemDetails for Refused {
    fn status(&self) -> StatusCode {
        StatusCode::UNPROCESSABLE_ENTITY
    }

    fn code(&self) -> &'static str {
        self.code
    }

    fn client_detail(&self) -> String {
        self.detail.to_owned()
    }
}

/// Maps the failure of a write: a 4xx other than 404 from the service (a
/// 404 is a wrong path, the gateway's fault) is [`Refused`] with
/// `code` and `detail`; anything else is the downstream failure.
///
/// `client.post("/orders", &order, &context).await.map_err(refused(ORDER_REJECTED, "..."))?`
pub fn refused(code: &'static str, detail: &'static str) -> impl FnOnce(DownstreamError) -> Error {
    move |error| match error {
        DownstreamError::Status { status, .. } if status.is_client_error() => Refused {
            code,
            detail,
            status,
        }
        .into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct ClientError(#[source] std::io::Error);

    #[test]
    fn the_log_names_every_cause_and_the_client_none() {
        let refused =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let error = DownstreamError::Unavailable {
            service: "quotes",
            source: Box::new(ClientError(refused)),
        };
        assert_eq!(
            error.to_string(),
            "quotes: unavailable: client error (Connect): connection refused"
        );
        assert_eq!(error.client_detail(), "the quotes service is unavailable");
        assert_eq!(error.code(), "DOWNSTREAM_UNAVAILABLE");
        assert_eq!(error.status(), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn a_404_there_is_a_bad_gateway_unless_it_is_the_resource_asked_for() {
        let error = Error::from(DownstreamError::NotFound { service: "quotes" });
        assert_eq!(error.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(error.code(), "DOWNSTREAM_NOT_FOUND");
    }

    #[test]
    fn a_404_there_is_the_resource_missing_here() {
        let error = fetching("quote", 42)(DownstreamError::NotFound { service: "quotes" });
        assert_eq!(error.code(), "NOT_FOUND");
        assert_eq!(error.client_detail(), "quote 42 not found");
        let error = fetching("quote", 42)(DownstreamError::Timeout {
            service: "quotes",
            timeout: Duration::from_secs(2),
        });
        assert_eq!(error.code(), "DOWNSTREAM_TIMEOUT");
        assert_eq!(error.status(), StatusCode::GATEWAY_TIMEOUT);
    }
}
