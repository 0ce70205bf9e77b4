//! The circuit breaker of one downstream service.
//!
//! - **Closed**: calls go through and their outcomes are counted. It opens
//!   after `consecutive_failures` failures in a row, or once at least
//!   `min_calls` calls ended within the last `window` and `failure_rate` of
//!   them failed.
//! - **Open**: calls fail at once ([`super::DownstreamError::CircuitOpen`]),
//!   without any network I/O, for `open_for` plus a random part of
//!   `open_jitter`, so replicas that opened together do not probe together.
//! - **Half-open**: then up to `probes` calls go through. When that many
//!   succeed it closes; when one fails it opens again. A probe cancelled
//!   before it ends (its request went away) frees its slot.
//!
//! Timeouts, connection errors and 5xx answers are failures; 4xx answers are
//! not (the service is healthy and said no). Outcomes of calls admitted
//! before the last state change are ignored, so a slow call that started
//! while closed cannot reopen a breaker that has since recovered.
//!
//! Hand-written rather than a crate: it reports each transition to this
//! gateway's metrics and logs, and frees probe slots on cancellation, which
//! a generic breaker would need adapting for anyway; it is one small
//! state machine behind one mutex.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::{
    config::{ConfigError, Delay, HumanDuration},
    observability::DownstreamMetrics,
};

/// The circuit breaker settings of one service (`[downstream.<name>.breaker]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// `false` turns the breaker off: every call goes through (default `true`).
    pub enabled: bool,
    /// Failures in a row that open the circuit (default 5).
    pub consecutive_failures: u32,
    /// Share of failed calls in `window` that opens the circuit, 0 to 1 (default 0.5).
    pub failure_rate: f64,
    /// Calls that must have ended in `window` before `failure_rate` applies (default 20).
    pub min_calls: u32,
    /// The rolling window of `failure_rate`, 1 s to 10 min (default `10s`).
    pub window: HumanDuration,
    /// How long the circuit stays open before probing (default `5s`).
    pub open_for: HumanDuration,
    /// Up to this much is added to `open_for` at random (default `1s`).
    pub open_jitter: Delay,
    /// Probe calls that must succeed, half-open, to close (default 2).
    pub probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            consecutive_failures: 5,
            failure_rate: 0.5,
            min_calls: 20,
            window: HumanDuration::from_secs(10),
            open_for: HumanDuration::from_secs(5),
            open_jitter: Delay::from_secs(1),
            probes: 2,
        }
    }
}

impl BreakerConfig {
    /// Checks the settings of service `service`.
    pub(crate) fn validate(&self, service: &str) -> Result<(), ConfigError> {
        let key = |field: &str| format!("downstream.{service}.breaker.{field}");
        if self.consecutive_failures == 0 {
            return Err(ConfigError::rule(
                &key("consecutive_failures"),
                "must be at least 1",
            ));
        }
        if !(self.failure_rate > 0.0 && self.failure_rate <= 1.0) {
            return Err(ConfigError::rule(
                &key("failure_rate"),
                "must be above 0 and at most 1",
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&self.window.get()) {
            return Err(ConfigError::rule(&key("window"), "must be 1s to 10m"));
        }
        if self.open_for.get().is_zero() {
            return Err(ConfigError::rule(&key("open_for"), "must be above 0"));
        }
        if self.probes == 0 {
            return Err(ConfigError::rule(&key("probes"), "must be at least 1"));
        }
        Ok(())
    }
}

/// Where the circuit is; the value is what `downstream_circuit_state` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CircuitState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl CircuitState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// Buckets of the rolling window.
const BUCKETS: usize = 10;

/// The breaker of one service; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Breaker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    service: &'static str,
    config: BreakerConfig,
    state: Mutex<State>,
    metrics: DownstreamMetrics,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// Bumped on every transition; outcomes of older admissions are ignored.
    epoch: u64,
    consecutive_failures: u32,
    window: Window,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { in_flight: u32, succeeded: u32 },
}

/// Calls and failures per bucket over the last `window`.
#[derive(Debug)]
struct Window {
    buckets: [(u32, u32); BUCKETS],
    bucket_length: Duration,
    current: usize,
    current_start: Instant,
}

impl Window {
    fn new(length: Duration, now: Instant) -> Self {
        Self {
            buckets: [(0, 0); BUCKETS],
            bucket_length: length / BUCKETS as u32,
            current: 0,
            current_start: now,
        }
    }

    /// Moves the current bucket up to `now`, emptying the buckets passed.
    fn advance(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.current_start);
        let steps = (elapsed.as_nanos() / self.bucket_length.as_nanos().max(1)) as usize;
        if steps == 0 {
            return;
        }
        for _ in 0..steps.min(BUCKETS) {
            self.current = (self.current + 1) % BUCKETS;
            self.buckets[self.current] = (0, 0);
        }
        self.current_start += self.bucket_length * steps.min(u32::MAX as usize) as u32;
    }

    fn record(&mut self, now: Instant, failed: bool) -> (u32, u32) {
        self.advance(now);
        let bucket = &mut self.buckets[self.current];
        bucket.0 += 1;
        bucket.1 += u32::from(failed);
        self.buckets
            .iter()
            .fold((0, 0), |(calls, failures), (c, f)| {
                (calls + c, failures + f)
            })
    }

    fn clear(&mut self, now: Instant) {
        self.buckets = [(0, 0); BUCKETS];
        self.current_start = now;
    }
}

/// The circuit is open: the call was not made. `retry_after` is how long
/// until it probes again (zero while probes are under way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rejected {
    pub(crate) retry_after: Duration,
}

/// Leave to make one call; report how it ended with [`Admission::record`].
#[derive(Debug)]
pub(crate) struct Admission {
    breaker: Option<Breaker>,
    epoch: u64,
    probe: bool,
}

impl Breaker {
    /// The breaker of `service`, closed.
    pub(crate) fn new(
        service: &'static str,
        config: &BreakerConfig,
        metrics: &DownstreamMetrics,
    ) -> Self {
        metrics.set_circuit_state(service, CircuitState::Closed as i64);
        Self {
            inner: Arc::new(Inner {
                service,
                config: config.clone(),
                state: Mutex::new(State {
                    phase: Phase::Closed,
                    epoch: 0,
                    consecutive_failures: 0,
                    window: Window::new(config.window.get(), Instant::now()),
                }),
                metrics: metrics.clone(),
            }),
        }
    }

    /// Leave to call the service, or the reason there is none.
    pub(crate) fn admit(&self) -> Result<Admission, Rejected> {
        if !self.inner.config.enabled {
            return Ok(Admission {
                breaker: None,
                epoch: 0,
                probe: false,
            });
        }
        let now = Instant::now();
        let (admission, transition) = {
            let mut state = self.lock();
            match state.phase {
                Phase::Closed => (Ok(self.admission(state.epoch, false)), None),
                Phase::Open { until } if now < until => (
                    Err(Rejected {
                        retry_after: until - now,
                    }),
                    None,
                ),
                Phase::Open { .. } => {
                    state.enter(Phase::HalfOpen {
                        in_flight: 1,
                        succeeded: 0,
                    });
                    (
                        Ok(self.admission(state.epoch, true)),
                        Some(CircuitState::HalfOpen),
                    )
                }
                Phase::HalfOpen {
                    in_flight,
                    succeeded,
                } if in_flight + succeeded < self.inner.config.probes => {
                    state.phase = Phase::HalfOpen {
                        in_flight: in_flight + 1,
                        succeeded,
                    };
                    (Ok(self.admission(state.epoch, true)), None)
                }
                Phase::HalfOpen { .. } => (
                    Err(Rejected {
                        retry_after: Duration::ZERO,
                    }),
                    None,
                ),
            }
        };
        self.report(transition);
        admission
    }

    fn admission(&self, epoch: u64, probe: bool) -> Admission {
        Admission {
            breaker: Some(self.clone()),
            epoch,
            probe,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts the outcome of an admitted call.
    fn record(&self, epoch: u64, probe: bool, failed: bool) {
        let now = Instant::now();
        let config = &self.inner.config;
        let transition = {
            let mut state = self.lock();
            if state.epoch != epoch {
                return;
            }
            match (state.phase, probe) {
                (Phase::HalfOpen { .. }, true) if failed => Some(state.open(config, now)),
                (
                    Phase::HalfOpen {
                        in_flight,
                        succeeded,
                    },
                    true,
                ) => {
                    if succeeded + 1 >= config.probes {
                        state.close(now);
                        Some(CircuitState::Closed)
                    } else {
                        state.phase = Phase::HalfOpen {
                            in_flight: in_flight.saturating_sub(1),
                            succeeded: succeeded + 1,
                        };
                        None
                    }
                }
                (Phase::Closed, false) => {
                    let (calls, failures) = state.window.record(now, failed);
                    state.consecutive_failures = match failed {
                        true => state.consecutive_failures + 1,
                        false => 0,
                    };
                    let too_many_in_a_row =
                        state.consecutive_failures >= config.consecutive_failures;
                    let rate_too_high = calls >= config.min_calls
                        && f64::from(failures) >= config.failure_rate * f64::from(calls);
                    (too_many_in_a_row || rate_too_high).then(|| state.open(config, now))
                }
                _ => None,
            }
        };
        self.report(transition);
    }

    /// A probe ended without an outcome (cancelled): its slot is free again.
    fn release(&self, epoch: u64) {
        let mut state = self.lock();
        if state.epoch != epoch {
            return;
        }
        if let Phase::HalfOpen {
            in_flight,
            succeeded,
        } = state.phase
        {
            state.phase = Phase::HalfOpen {
                in_flight: in_flight.saturating_sub(1),
                succeeded,
            };
        }
    }

    /// Logs a transition once and exports it.
    fn report(&self, transition: Option<CircuitState>) {
        let Some(to) = transition else { return };
        let service = self.inner.service;
        self.inner
            .metrics
            .circuit_transition(service, to.as_str(), to as i64);
        match to {
            CircuitState::Open => tracing::warn!(
                service,
                open_for = ?self.inner.config.open_for.get(),
                "circuit opened: calls to the service fail at once until it is probed"
            ),
            CircuitState::HalfOpen => {
                tracing::info!(service, "circuit half-open: probing the service");
            }
            CircuitState::Closed => {
                tracing::info!(service, "circuit closed: the service recovered")
            }
        }
    }

    /// The current state (for tests and the admin view).
    #[cfg(test)]
    fn state(&self) -> CircuitState {
        match self.lock().phase {
            Phase::Closed => CircuitState::Closed,
            Phase::Open { .. } => CircuitState::Open,
            Phase::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

impl State {
    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.epoch += 1;
    }

    fn open(&mut self, config: &BreakerConfig, now: Instant) -> CircuitState {
        let jitter = config.open_jitter.get().mul_f64(fastrand::f64());
        self.enter(Phase::Open {
            until: now + config.open_for.get() + jitter,
        });
        self.consecutive_failures = 0;
        self.window.clear(now);
        CircuitState::Open
    }

    fn close(&mut self, now: Instant) {
        self.enter(Phase::Closed);
        self.consecutive_failures = 0;
        self.window.clear(now);
    }
}

impl Admission {
    /// Reports how the call ended: `failed` for a timeout, a connection
    /// error or a 5xx answer.
    pub(crate) fn record(mut self, failed: bool) {
        if let Some(breaker) = self.breaker.take() {
            breaker.record(self.epoch, self.probe, failed);
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(breaker) = self.breaker.take()
            && self.probe
        {
            breaker.release(self.epoch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(config: BreakerConfig) -> Breaker {
        Breaker::new("quotes", &config, &DownstreamMetrics::default())
    }

    fn quick() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 3,
            min_calls: 10,
            failure_rate: 0.5,
            open_for: HumanDuration::from_secs(5),
            open_jitter: Delay::from_secs(0),
            probes: 2,
            ..BreakerConfig::default()
        }
    }

    fn call(breaker: &Breaker, failed: bool) -> Result<(), Rejected> {
        breaker.admit()?.record(failed);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_open_it_and_successes_in_between_reset_the_count() {
        let breaker = breaker(quick());
        for failed in [true, true, false, true, true] {
            call(&breaker, failed).expect("closed");
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
        call(&breaker, true).expect("closed");
        assert_eq!(breaker.state(), CircuitState::Open);
        let rejected = breaker.admit().expect_err("open");
        assert_eq!(rejected.retry_after, Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_rate_over_the_window_opens_it_once_enough_calls_are_seen() {
        let config = BreakerConfig {
            consecutive_failures: 100,
            ..quick()
        };
        let breaker = breaker(config.clone());
        for _ in 0..9 {
            call(&breaker, true).expect("closed");
        }
        assert_eq!(breaker.state(), CircuitState::Closed, "9 calls are too few");
        call(&breaker, false).expect("closed");
        assert_eq!(breaker.state(), CircuitState::Open, "9 of 10 failed");

        let breaker = self::breaker(config);
        for call_number in 0..10 {
            call(&breaker, call_number % 5 < 2).expect("closed");
        }
        assert_eq!(breaker.state(), CircuitState::Closed, "4 of 10 failed");
        call(&breaker, true).expect("closed");
        assert_eq!(breaker.state(), CircuitState::Closed, "5 of 11 failed");
        call(&breaker, true).expect("closed");
        assert_eq!(breaker.state(), CircuitState::Open, "6 of 12 failed");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_older_than_the_window_are_forgotten() {
        let breaker = breaker(BreakerConfig {
            consecutive_failures: 100,
            ..quick()
        });
        for _ in 0..9 {
            call(&breaker, true).expect("closed");
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        for _ in 0..9 {
            call(&breaker, false).expect("closed");
        }
        call(&breaker, true).expect("closed");
        assert_eq!(breaker.state(), CircuitState::Closed, "1 of 10 failed");
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_open_time_probes_close_it_when_they_all_succeed() {
        let breaker = breaker(quick());
        for _ in 0..3 {
            call(&breaker, true).expect("closed");
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        let first = breaker.admit().expect("a probe");
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        let second = breaker.admit().expect("a second probe");
        assert_eq!(
            breaker.admit().expect_err("no third probe").retry_after,
            Duration::ZERO
        );
        first.record(false);
        assert_eq!(breaker.state(), CircuitState::HalfOpen, "one of two probes");
        second.record(false);
        assert_eq!(breaker.state(), CircuitState::Closed);
        call(&breaker, false).expect("closed again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_it_for_another_open_time() {
        let breaker = breaker(quick());
        for _ in 0..3 {
            call(&breaker, true).expect("closed");
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        call(&breaker, true).expect("a probe");
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(
            breaker.admit().expect_err("open").retry_after,
            Duration::from_secs(5)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_probe_frees_its_slot_and_late_outcomes_are_ignored() {
        let breaker = breaker(BreakerConfig {
            probes: 1,
            ..quick()
        });
        let slow = breaker.admit().expect("closed");
        for _ in 0..3 {
            call(&breaker, true).expect("closed");
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(breaker.admit().expect("a probe"));
        let probe = breaker.admit().expect("the slot is free again");
        probe.record(false);
        assert_eq!(breaker.state(), CircuitState::Closed);
        // The call admitted before the circuit opened ends now: ignored.
        slow.record(true);
        for _ in 0..2 {
            call(&breaker, true).expect("closed");
        }
        assert_eq!(breaker.state(), CircuitState::Closed, "2 failures, not 3");
    }

    #[tokio::test(start_paused = true)]
    async fn the_open_time_gets_up_to_the_jitter_added() {
        let breaker = breaker(BreakerConfig {
            open_jitter: Delay::from_secs(1),
            ..quick()
        });
        for _ in 0..3 {
            call(&breaker, true).expect("closed");
        }
        let wait = breaker.admit().expect_err("open").retry_after;
        assert!(
            wait >= Duration::from_secs(5) && wait <= Duration::from_secs(6),
            "{wait:?}"
        );
    }

    #[test]
    fn a_disabled_breaker_lets_everything_through() {
        let breaker = breaker(BreakerConfig {
            enabled: false,
            ..quick()
        });
        for _ in 0..100 {
            call(&breaker, true).expect("always admitted");
        }
    }
}
