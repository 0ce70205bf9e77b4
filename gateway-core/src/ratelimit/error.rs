//! A refused request, and the headers every limited answer carries.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

use super::{bucket::Decision, quota::QuotaUse};
use crate::error::ProblemDetails;

/// `RateLimit-Limit`: the plan's burst.
pub(crate) const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
/// `RateLimit-Remaining`: whole tokens left.
pub(crate) const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// `RateLimit-Reset`: seconds until the bucket is full again.
pub(crate) const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
/// `RateLimit-Policy`: the quota and the window it refills in.
pub(crate) const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// Why a request was not let through by the rate limiter.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RateLimitError {
    /// The caller's bucket has too few tokens.
    #[error("rate limited on plan {plan}: retry in {:?}", .decision.retry_after.unwrap_or_default())]
    Limited {
        /// The caller's plan.
        plan: &'static str,
        /// What the bucket said.
        decision: Decision,
        /// The plan's `RateLimit-Limit` value.
        limit: HeaderValue,
        /// The plan's `RateLimit-Policy` value.
        policy: HeaderValue,
    },
    /// The caller's daily quota is used up.
    #[error("daily quota of plan {plan} used up: {} requests today", .used.used)]
    QuotaExceeded {
        /// The caller's plan.
        plan: &'static str,
        /// The caller's day.
        used: QuotaUse,
    },
    /// Redis cannot decide and the outage policy is `closed`.
    #[error("the shared rate limiter is unavailable")]
    Unavailable,
}

/// Whole seconds, rounded up: a client waiting this long is never early.
fn seconds_up(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// Writes the `RateLimit-*` headers of `decision` under the plan's `limit`
/// and `policy` values.
pub(crate) fn write_headers(
    headers: &mut HeaderMap,
    decision: &Decision,
    limit: &HeaderValue,
    policy: &HeaderValue,
) {
    headers.insert(RATELIMIT_LIMIT, limit.clone());
    headers.insert(RATELIMIT_REMAINING, HeaderValue::from(decision.remaining));
    headers.insert(
        RATELIMIT_RESET,
        HeaderValue::from(seconds_up(decision.reset)),
    );
    headers.insert(RATELIMIT_POLICY, policy.clone());
}

impl ProblemDetails for RateLimitError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Limited { .. } | Self::QuotaExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Limited { .. } => "RATE_LIMITED",
            Self::QuotaExceeded { .. } => "QUOTA_EXCEEDED",
            Self::Unavailable => "RATE_LIMIT_UNAVAILABLE",
        }
    }

    fn client_detail(&self) -> String {
        match self {
            Self::Limited { decision, .. } => format!(
                "too many requests: retry in {} s",
                seconds_up(decision.retry_after.unwrap_or_default()).max(1)
            ),
            Self::QuotaExceeded { used, .. } => format!(
                "the daily quota of {} requests is used up: it starts again at 00:00 UTC, in {} s",
                used.limit,
                used.reset_seconds()
            ),
            Self::Unavailable => {
                "the rate limiter cannot decide right now; retry shortly".to_owned()
            }
        }
    }

    fn response_headers(&self, headers: &mut HeaderMap) {
        match self {
            Self::Limited {
                decision,
                limit,
                policy,
                ..
            } => {
                let retry_after = seconds_up(decision.retry_after.unwrap_or_default()).max(1);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                write_headers(headers, decision, limit, policy);
            }
            Self::QuotaExceeded { used, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(used.reset_seconds()));
                used.write_headers(headers);
            }
            Self::Unavailable => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
        }
    }
}
