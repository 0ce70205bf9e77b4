//! Retries of idempotent calls, within a budget.
//!
//! A `GET` that failed with a connection error, a timeout or a 5xx answer
//! is sent again after an exponential backoff with full jitter, at most
//! `max_retries` times, and only while:
//!
//! - the **retry budget** allows it: each first attempt deposits
//!   `budget_ratio` of a retry (0.1: one retry per ten calls) and
//!   `budget_min_per_second` retries a second are free, over the last
//!   `budget_window`. tower's `TpsBudget` (Finagle's design) keeps the
//!   account, so retries add at most that share of load to a struggling
//!   service, however many requests fail;
//! - the call's **deadline** leaves, after the backoff, at least as long as
//!   the failed attempt took: an attempt that cannot finish is never started;
//! - the **circuit** admits it, like any call.
//!
//! Every decision is counted in `downstream_retries_total{service,decision}`.

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use tower::retry::budget::{Budget, TpsBudget};

use crate::config::{ConfigError, Delay, HumanDuration};

/// The retry settings of one service (`[downstream.<name>.retry]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retries after the first attempt; `0` turns retries off (default 2).
    pub max_retries: u32,
    /// The first backoff's upper bound; each next one doubles (default `25ms`).
    pub backoff: Delay,
    /// The largest backoff (default `250ms`).
    pub max_backoff: Delay,
    /// Retries earned per call, 0 to 1 (default 0.1: at most one retry per ten calls).
    pub budget_ratio: f64,
    /// Retries a second allowed besides the earned ones (default 10).
    pub budget_min_per_second: u32,
    /// How long a call counts towards the budget, 1 s to 60 s (default `10s`).
    pub budget_window: HumanDuration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 2,
            backoff: Delay::from(Duration::from_millis(25)),
            max_backoff: Delay::from(Duration::from_millis(250)),
            budget_ratio: 0.1,
            budget_min_per_second: 10,
            budget_window: HumanDuration::from_secs(10),
        }
    }
}

impl RetryConfig {
    /// Checks the settings of service `service`.
    pub(crate) fn validate(&self, service: &str) -> Result<(), ConfigError> {
        let key = |field: &str| format!("downstream.{service}.retry.{field}");
        if !(0.0..=1.0).contains(&self.budget_ratio) {
            return Err(ConfigError::rule(&key("budget_ratio"), "must be 0 to 1"));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&self.budget_window.get()) {
            return Err(ConfigError::rule(
                &key("budget_window"),
                "must be 1s to 60s",
            ));
        }
        if self.max_backoff.get() < self.backoff.get() {
            return Err(ConfigError::rule(
                &key("max_backoff"),
                "must be at least `backoff`",
            ));
        }
        Ok(())
    }
}

/// Why a failed call is not tried again; the `decision` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Tried again after this backoff.
    Retry(Duration),
    /// `max_retries` were made.
    AttemptsExhausted,
    /// The budget has no retry left.
    BudgetExhausted,
    /// The deadline cannot cover another attempt.
    NoTimeLeft,
}

impl Decision {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Retry(_) => "retried",
            Self::AttemptsExhausted => "attempts_exhausted",
            Self::BudgetExhausted => "budget_exhausted",
            Self::NoTimeLeft => "no_time_left",
        }
    }
}

/// The retry policy and budget of one service; cheap to clone.
#[derive(Clone)]
pub(crate) struct RetryPolicy {
    config: Arc<RetryConfig>,
    budget: Arc<TpsBudget>,
}

impl std::fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RetryPolicy {
    /// The policy of `config`, which [`RetryConfig::validate`] accepted.
    pub(crate) fn new(config: &RetryConfig) -> Self {
        Self {
            budget: Arc::new(TpsBudget::new(
                config.budget_window.get(),
                config.budget_min_per_second,
                config.budget_ratio as f32,
            )),
            config: Arc::new(config.clone()),
        }
    }

    /// Counts a first attempt towards the budget.
    pub(crate) fn first_attempt(&self) {
        self.budget.deposit();
    }

    /// Whether to try again after `retries` retries, the last attempt
    /// having taken `took`, with `time_left` before the deadline.
    pub(crate) fn decide(&self, retries: u32, took: Duration, time_left: Duration) -> Decision {
        if retries >= self.config.max_retries {
            return Decision::AttemptsExhausted;
        }
        let backoff = self.backoff(retries);
        if time_left < backoff + took {
            return Decision::NoTimeLeft;
        }
        // Withdrawn last: a retry refused for time spends no token.
        if !self.budget.withdraw() {
            return Decision::BudgetExhausted;
        }
        Decision::Retry(backoff)
    }

    /// A random wait up to `backoff × 2^retries`, at most `max_backoff`
    /// ("full jitter": retries of many requests spread out instead of
    /// arriving together).
    fn backoff(&self, retries: u32) -> Duration {
        let ceiling = self
            .config
            .backoff
            .get()
            .saturating_mul(1 << retries.min(16))
            .min(self.config.max_backoff.get());
        ceiling.mul_f64(fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(config: RetryConfig) -> RetryPolicy {
        RetryPolicy::new(&config)
    }

    #[test]
    fn retries_stop_after_max_retries() {
        let policy = policy(RetryConfig::default());
        let plenty = Duration::from_secs(10);
        assert!(matches!(
            policy.decide(0, Duration::ZERO, plenty),
            Decision::Retry(_)
        ));
        assert!(matches!(
            policy.decide(1, Duration::ZERO, plenty),
            Decision::Retry(_)
        ));
        assert_eq!(
            policy.decide(2, Duration::ZERO, plenty),
            Decision::AttemptsExhausted
        );
    }

    #[test]
    fn backoffs_grow_with_full_jitter_up_to_the_maximum() {
        let policy = policy(RetryConfig::default());
        for retries in 0..6 {
            let ceiling =
                Duration::from_millis(25 * (1 << retries)).min(Duration::from_millis(250));
            for _ in 0..50 {
                assert!(policy.backoff(retries) <= ceiling);
            }
        }
        let spread: std::collections::BTreeSet<Duration> =
            (0..50).map(|_| policy.backoff(3)).collect();
        assert!(spread.len() > 10, "jittered, not fixed: {spread:?}");
    }

    #[test]
    fn a_retry_is_not_started_when_the_deadline_cannot_cover_it() {
        let policy = policy(RetryConfig {
            backoff: Delay::from_secs(0),
            max_backoff: Delay::from_secs(0),
            ..RetryConfig::default()
        });
        let took = Duration::from_millis(300);
        assert_eq!(
            policy.decide(0, took, Duration::from_millis(299)),
            Decision::NoTimeLeft
        );
        assert_eq!(
            policy.decide(0, took, Duration::from_millis(300)),
            Decision::Retry(Duration::ZERO)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_allows_the_floor_plus_the_earned_share_and_no_more() {
        let policy = policy(RetryConfig {
            max_retries: 10,
            budget_ratio: 0.1,
            budget_min_per_second: 1,
            budget_window: HumanDuration::from_secs(10),
            ..RetryConfig::default()
        });
        for _ in 0..200 {
            policy.first_attempt();
        }
        let plenty = Duration::from_secs(10);
        let granted = (0..1000)
            .take_while(|_| matches!(policy.decide(0, Duration::ZERO, plenty), Decision::Retry(_)))
            .count();
        // 20 earned by 200 calls, 10 free (1 a second over 10 s).
        assert_eq!(granted, 30);
        assert_eq!(
            policy.decide(0, Duration::ZERO, plenty),
            Decision::BudgetExhausted
        );
    }
}
