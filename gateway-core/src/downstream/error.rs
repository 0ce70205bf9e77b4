//! How a downstream call fails, and how the client is told.

use std::time::Duration;

use http::StatusCode;

use crate::{
    Error,
    error::{ProblemDetails, causes},
};

/// A boxed transport error.
pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A downstream call that failed.
#[derive(Debug, thiserror::Error)]
pub enum DownstreamError {
    /// No complete answer within the timeout.
    #[error("{service}: no answer within {timeout:?}")]
    Timeout {
        /// The service called.
        service: &'static str,
        /// Its configured timeout.
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
}

impl ProblemDetails for DownstreamError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            // A 404 there is the client's 404 only when the route says the
            // missing thing is what the client asked for (`fetching`).
            Self::NotFound { .. } => StatusCode::BAD_GATEWAY,
            Self::InvalidPath { .. } | Self::NoIdentity { .. } => StatusCode::INTERNAL_SERVER_ERROR,
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
        }
    }

    fn client_detail(&self) -> String {
        match self {
            Self::Timeout { service, timeout } => {
                format!("the {service} service did not answer within {timeout:?}")
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
