//! Daily quotas: how many requests a caller may make in a UTC day, on top
//! of its bucket's rate (`[rate_limit.plans.<name>] daily_quota`).
//!
//! A request the bucket admitted is counted against the caller's day (the
//! day of the limiter's [`Clock`], so a test moves it to midnight); past
//! the quota it is a 429 `QUOTA_EXCEEDED` whose `Retry-After` is the next
//! UTC midnight. Every answer of a caller with a quota carries
//! `Quota-Limit`, `Quota-Remaining` and `Quota-Reset` (seconds to
//! midnight). The count lives where the buckets do: in Redis, shared by
//! every instance, one key per caller and day that expires a day after it
//! ends; else in process (`DailyCounters`).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use http::{HeaderMap, HeaderName, HeaderValue};
use moka::sync::Cache;

use crate::clock::Clock;

/// `Quota-Limit`: requests a caller may make in a UTC day.
pub(crate) const QUOTA_LIMIT: HeaderName = HeaderName::from_static("quota-limit");
/// `Quota-Remaining`: requests left today.
pub(crate) const QUOTA_REMAINING: HeaderName = HeaderName::from_static("quota-remaining");
/// `Quota-Reset`: seconds until the next UTC day, when the count starts again.
pub(crate) const QUOTA_RESET: HeaderName = HeaderName::from_static("quota-reset");

/// How long a day's count is kept after the day ends: long enough for an
/// instance whose clock is a little behind.
pub(crate) const KEPT_AFTER_THE_DAY: Duration = Duration::from_secs(86_400);

/// A caller's day so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaUse {
    /// The plan's daily quota.
    pub limit: u64,
    /// Requests counted today, this one included.
    pub used: u64,
    /// Time until the next UTC day.
    pub reset: Duration,
}

impl QuotaUse {
    /// Whether the request just counted is within the quota.
    pub(crate) fn allowed(&self) -> bool {
        self.used <= self.limit
    }

    /// Writes the `Quota-*` headers.
    pub(crate) fn write_headers(&self, headers: &mut HeaderMap) {
        headers.insert(QUOTA_LIMIT, HeaderValue::from(self.limit));
        headers.insert(
            QUOTA_REMAINING,
            HeaderValue::from(self.limit.saturating_sub(self.used)),
        );
        headers.insert(QUOTA_RESET, HeaderValue::from(self.reset_seconds()));
    }

    /// Whole seconds until the next day, at least 1.
    pub(crate) fn reset_seconds(&self) -> u64 {
        (self.reset.as_secs() + u64::from(self.reset.subsec_nanos() > 0)).max(1)
    }
}

/// The key of `bucket`'s count on `day`: in the bucket's hash slot.
pub(crate) fn day_key(bucket: &str, day: u64) -> String {
    format!("{bucket}:quota:{day}")
}

/// The day counts of one process: all of them without Redis, the outage
/// fallback with it. Bounded; a day's count is forgotten once the day is over.
#[derive(Debug, Clone)]
pub(crate) struct DailyCounters {
    counts: Cache<String, Arc<AtomicU64>>,
    clock: Clock,
}

impl DailyCounters {
    /// At most `max_callers` counts, on the days of `clock`.
    pub(crate) fn new(max_callers: u64, clock: Clock) -> Self {
        Self {
            counts: Cache::builder()
                .max_capacity(max_callers)
                .time_to_live(Duration::from_secs(86_400) + KEPT_AFTER_THE_DAY)
                .build(),
            clock,
        }
    }

    /// The clock the days are counted on.
    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Counts one request of `bucket` today; its count so far, this one included.
    pub(crate) fn count(&self, bucket: &str) -> u64 {
        let (day, _) = self.clock.utc_day();
        self.counts
            .get_with(day_key(bucket, day), || Arc::new(AtomicU64::new(0)))
            .fetch_add(1, Ordering::AcqRel)
            + 1
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn a_day_counts_until_midnight_and_the_next_starts_again() {
        let clock = Clock::manual(UNIX_EPOCH + Duration::from_secs(20_000 * 86_400 + 86_000));
        let counters = DailyCounters::new(100, clock.clone());
        assert_eq!(
            (1..=3)
                .map(|_| counters.count("rl:{a}"))
                .collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(counters.count("rl:{b}"), 1, "each caller has its own");
        clock.advance(Duration::from_secs(400));
        assert_eq!(counters.count("rl:{a}"), 1, "a new day");
    }

    #[test]
    fn the_headers_say_what_is_left_and_when_it_resets() {
        let used = QuotaUse {
            limit: 10,
            used: 12,
            reset: Duration::from_millis(90_500),
        };
        assert!(!used.allowed());
        let mut headers = HeaderMap::new();
        used.write_headers(&mut headers);
        assert_eq!(headers[QUOTA_LIMIT], "10");
        assert_eq!(headers[QUOTA_REMAINING], "0");
        assert_eq!(headers[QUOTA_RESET], "91");
    }
}
