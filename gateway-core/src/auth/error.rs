//! Why a caller was not let in.

use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::error::ProblemDetails;

/// A failed authentication or authorisation.
///
/// Each variant has a stable code (`AUTH_TOKEN_EXPIRED`...), a reason class
/// used as the metrics label and in the client's `detail`, and the RFC 6750
/// `WWW-Authenticate` challenge. The token itself never appears in any of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token, cookie or API key.
    #[error("no credentials")]
    MissingCredentials,
    /// Two tokens (two `Authorization` headers, header and cookie disagreeing,
    /// or a token and an API key).
    #[error("more than one credential")]
    MultipleCredentials,
    /// `Authorization` is not `Bearer <token>`.
    #[error("the Authorization header is not a bearer token")]
    MalformedAuthorization,
    /// The token is longer than the configured maximum.
    #[error("token larger than {limit} bytes")]
    TokenTooLarge {
        /// The maximum in bytes.
        limit: usize,
    },
    /// The token is not a well-formed JWT; the text says which part.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The algorithm is not accepted, or not the one the key is pinned to.
    #[error("algorithm not accepted")]
    AlgorithmRejected,
    /// The header points at key material (`jku`, `x5u`, `x5c`, `jwk`), which is never trusted.
    #[error("the token header references key material ({0}), which is never trusted")]
    UntrustedKeyReference(&'static str),
    /// The header has a `crit` extension this gateway does not understand.
    #[error("unsupported critical header")]
    UnsupportedCritical,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    #[error("token issued in the future")]
    IssuedInFuture,
    /// A required claim is absent.
    #[error("missing claim {0}")]
    MissingClaim(&'static str),
    /// A claim has the wrong type or an unacceptable value.
    #[error("invalid claim {0}")]
    InvalidClaim(&'static str),
    /// `iss` is not the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` does not contain this BFF's audience.
    #[error("wrong audience")]
    WrongAudience,
    /// No key with the token's `kid`.
    #[error("unknown signing key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// This BFF has no source for this kind of credential (`"bearer tokens"`,
    /// `"API keys"`, `"RS256 and ES256 tokens"`...).
    #[error("{0} are not accepted here")]
    MethodNotAccepted(&'static str),
    /// The API key is unknown or revoked.
    #[error("invalid API key")]
    InvalidApiKey,
    /// The issuer's keys are not loaded (yet) or too old to trust.
    #[error("the identity provider's signing keys are unavailable; retry later")]
    KeysUnavailable {
        /// Seconds until the keys may have been fetched again.
        retry_after_secs: u64,
    },
    /// The session cookie came with an unsafe method from an origin that is
    /// not trusted (cross-site request forgery).
    #[error("the session cookie is not accepted for this request from this origin")]
    CrossSiteCookie,
    /// The caller lacks the scope the route needs.
    #[error("missing scope {0}")]
    InsufficientScope(&'static str),
    /// Introspection says the opaque token is not active (unknown, expired
    /// or revoked).
    #[error("the token is not active")]
    TokenInactive,
    /// The issuer's introspection endpoint did not answer in time or
    /// answered an error: the opaque token could not be checked.
    #[error("the token cannot be checked right now; retry in {retry_after_secs} s")]
    IntrospectionUnavailable {
        /// Seconds to wait before retrying.
        retry_after_secs: u64,
    },
}

impl ProblemDetails for AuthError {
    /// 401, except 400 for ambiguous credentials, 403 for a missing scope and
    /// 503 when the keys are unavailable.
    fn status(&self) -> StatusCode {
        match self {
            Self::MultipleCredentials => StatusCode::BAD_REQUEST,
            Self::InsufficientScope(_) | Self::CrossSiteCookie => StatusCode::FORBIDDEN,
            Self::KeysUnavailable { .. } | Self::IntrospectionUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::MissingCredentials => "AUTH_MISSING",
            Self::MultipleCredentials => "AUTH_AMBIGUOUS",
            Self::MalformedAuthorization | Self::TokenTooLarge { .. } | Self::Malformed(_) => {
                "AUTH_TOKEN_MALFORMED"
            }
            Self::AlgorithmRejected => "AUTH_ALGORITHM_REJECTED",
            Self::UntrustedKeyReference(_) | Self::UnsupportedCritical => "AUTH_HEADER_REJECTED",
            Self::Expired => "AUTH_TOKEN_EXPIRED",
            Self::NotYetValid | Self::IssuedInFuture => "AUTH_TOKEN_NOT_YET_VALID",
            Self::MissingClaim(_) | Self::InvalidClaim(_) => "AUTH_INVALID_CLAIMS",
            Self::WrongIssuer => "AUTH_WRONG_ISSUER",
            Self::WrongAudience => "AUTH_WRONG_AUDIENCE",
            Self::UnknownKey => "AUTH_UNKNOWN_KEY",
            Self::BadSignature => "AUTH_BAD_SIGNATURE",
            Self::InvalidApiKey => "AUTH_INVALID_API_KEY",
            Self::MethodNotAccepted(_) => "AUTH_METHOD_NOT_ACCEPTED",
            Self::KeysUnavailable { .. } => "AUTH_KEYS_UNAVAILABLE",
            Self::InsufficientScope(_) => "AUTH_INSUFFICIENT_SCOPE",
            Self::CrossSiteCookie => "AUTH_CROSS_SITE_COOKIE",
            Self::TokenInactive => "AUTH_TOKEN_INACTIVE",
            Self::IntrospectionUnavailable { .. } => "AUTH_INTROSPECTION_UNAVAILABLE",
        }
    }

    /// The reason; the token itself never appears in it.
    fn client_detail(&self) -> String {
        self.to_string()
    }

    /// The RFC 6750 challenge when the status has one, `Retry-After` with a 503.
    fn response_headers(&self, headers: &mut HeaderMap) {
        if let Some(challenge) = self.challenge() {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        if let Self::KeysUnavailable { retry_after_secs }
        | Self::IntrospectionUnavailable { retry_after_secs } = self
        {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
    }
}

impl AuthError {
    /// The reason class: a bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingCredentials => "missing",
            Self::MultipleCredentials => "ambiguous",
            Self::MalformedAuthorization => "malformed_authorization",
            Self::TokenTooLarge { .. } => "too_large",
            Self::Malformed(_) => "malformed",
            Self::AlgorithmRejected => "algorithm",
            Self::UntrustedKeyReference(_) => "untrusted_key_reference",
            Self::UnsupportedCritical => "critical_header",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::MissingClaim(_) => "missing_claim",
            Self::InvalidClaim(_) => "invalid_claim",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::InvalidApiKey => "invalid_api_key",
            Self::MethodNotAccepted(_) => "method_not_accepted",
            Self::KeysUnavailable { .. } => "keys_unavailable",
            Self::InsufficientScope(_) => "insufficient_scope",
            Self::CrossSiteCookie => "cross_site_cookie",
            Self::TokenInactive => "inactive",
            Self::IntrospectionUnavailable { .. } => "introspection_unavailable",
        }
    }

    /// The RFC 6750 challenge for `WWW-Authenticate`, when the status has one.
    pub fn challenge(&self) -> Option<HeaderValue> {
        let value = match self {
            Self::MissingCredentials => "Bearer".to_owned(),
            Self::MultipleCredentials => {
                format!("Bearer error=\"invalid_request\", error_description=\"{self}\"")
            }
            Self::InsufficientScope(scope) => {
                format!(
                    "Bearer error=\"insufficient_scope\", error_description=\"{self}\", scope=\"{scope}\""
                )
            }
            Self::KeysUnavailable { .. }
            | Self::IntrospectionUnavailable { .. }
            | Self::CrossSiteCookie => return None,
            _ => format!("Bearer error=\"invalid_token\", error_description=\"{self}\""),
        };
        // Every message above is ASCII without quotes or control characters.
        HeaderValue::try_from(value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_follow_rfc_6750() {
        assert_eq!(
            AuthError::MissingCredentials
                .challenge()
                .expect("challenge"),
            "Bearer"
        );
        assert_eq!(
            AuthError::Expired.challenge().expect("challenge"),
            "Bearer error=\"invalid_token\", error_description=\"token expired\""
        );
        assert_eq!(
            AuthError::InsufficientScope("orders:write")
                .challenge()
                .expect("challenge"),
            "Bearer error=\"insufficient_scope\", error_description=\"missing scope orders:write\", scope=\"orders:write\""
        );
        assert_eq!(
            AuthError::InsufficientScope("x").status(),
            StatusCode::FORBIDDEN
        );
        assert!(
            AuthError::KeysUnavailable {
                retry_after_secs: 5
            }
            .challenge()
            .is_none()
        );
    }
}
