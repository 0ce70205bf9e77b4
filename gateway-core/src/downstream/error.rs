//! How a downstream call fails, and how the client is told.

use std::time::Duration;

use http::StatusCode;

use crate::{Error, error::ProblemDetails};

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
    #[error("{service}: unavailable: {source}")]
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
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::InvalidPath { .. } => StatusCode::INTERNAL_SERVER_ERROR,
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
            Self::NotFound { .. } => "NOT_FOUND",
            Self::Status { .. } | Self::InvalidBody { .. } | Self::BodyTooLarge { .. } => {
                "DOWNSTREAM_BAD_RESPONSE"
            }
            Self::InvalidPath { .. } => "INTERNAL",
        }
    }

    fn client_detail(&self) -> String {
        match self {
            Self::Timeout { service, timeout } => {
                format!("the {service} service did not answer within {timeout:?}")
            }
            Self::NotFound { service } => format!("the {service} service has no such resource"),
            Self::Unavailable { service, .. } => format!("the {service} service is unavailable"),
            Self::Status { service, .. }
            | Self::InvalidBody { service, .. }
            | Self::BodyTooLarge { service, .. } => {
                format!("the {service} service gave an invalid answer")
            }
            Self::InvalidPath { .. } => "the gateway failed to handle the request".to_owned(),
        }
    }
}

/// Maps the failure of fetching `resource` `id` from its owning service: a
/// 404 there means the resource does not exist (the client's 404 names the
/// resource, not the service); anything else is the downstream failure.
///
/// `products.fetch::<Product>(id, &context).await.map_err(fetching("product", id))?`
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
