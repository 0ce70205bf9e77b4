//! Token-bucket arithmetic, free of clocks and storage.
//!
//! A bucket holds up to `capacity` tokens and gains `refill_per_second`
//! tokens a second. A request costing `cost` tokens is admitted when the
//! bucket holds at least that many, and takes them; otherwise it is refused
//! and told when enough will be there. The Redis backend runs the same
//! arithmetic in its server-side script (`shared.rs`), and both turn the
//! tokens left into a [`Decision`] here, so both backends answer alike.

use std::time::Duration;

/// A plan's bucket shape.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Shape {
    /// Most tokens held (the burst).
    pub(crate) capacity: f64,
    /// Tokens gained per second.
    pub(crate) refill_per_second: f64,
}

impl Shape {
    /// How long an empty bucket takes to fill: after that long idle, a
    /// bucket is as good as new and can be forgotten.
    pub(crate) fn time_to_fill(&self) -> Duration {
        Duration::from_secs_f64(self.capacity / self.refill_per_second)
    }
}

/// What a bucket says about one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The bucket's capacity (`RateLimit-Limit`).
    pub limit: u32,
    /// Whole tokens left after this decision (`RateLimit-Remaining`).
    pub remaining: u32,
    /// Until the bucket is full again (`RateLimit-Reset`).
    pub reset: Duration,
    /// When refused: until enough tokens for this request are there
    /// (`Retry-After`); `None` when admitted.
    pub retry_after: Option<Duration>,
}

/// The state of one bucket: its tokens at an instant, in microseconds of
/// the backend's clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bucket {
    tokens: f64,
    updated_at_micros: u64,
}

impl Bucket {
    /// A full bucket at `now_micros`.
    pub(crate) fn full(shape: &Shape, now_micros: u64) -> Self {
        Self {
            tokens: shape.capacity,
            updated_at_micros: now_micros,
        }
    }

    /// Refills to `now_micros`, then admits a request of `cost` tokens if
    /// they are there. A clock that went backwards adds nothing.
    pub(crate) fn decide(&mut self, shape: &Shape, cost: u32, now_micros: u64) -> Decision {
        let elapsed = now_micros.saturating_sub(self.updated_at_micros) as f64 / 1e6;
        self.tokens = (self.tokens + elapsed * shape.refill_per_second).min(shape.capacity);
        self.updated_at_micros = self.updated_at_micros.max(now_micros);
        let allowed = self.tokens >= f64::from(cost);
        if allowed {
            self.tokens -= f64::from(cost);
        }
        Decision::after(shape, cost, allowed, self.tokens)
    }
}

impl Decision {
    /// The decision on a request of `cost` that left the bucket with
    /// `tokens` (whether it was `allowed` or not).
    pub(crate) fn after(shape: &Shape, cost: u32, allowed: bool, tokens: f64) -> Self {
        let seconds =
            |tokens: f64| Duration::from_secs_f64(tokens.max(0.0) / shape.refill_per_second);
        Self {
            allowed,
            limit: shape.capacity as u32,
            remaining: tokens.max(0.0).floor() as u32,
            reset: seconds(shape.capacity - tokens),
            retry_after: (!allowed).then(|| seconds(f64::from(cost) - tokens)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;

    fn shape(capacity: f64, refill_per_second: f64) -> Shape {
        Shape {
            capacity,
            refill_per_second,
        }
    }

    #[test]
    fn a_burst_then_the_steady_rate() {
        let shape = shape(5.0, 2.0);
        let mut bucket = Bucket::full(&shape, 0);
        for expected_remaining in (0..5).rev() {
            let decision = bucket.decide(&shape, 1, 0);
            assert!(decision.allowed);
            assert_eq!(decision.remaining, expected_remaining);
            assert_eq!(decision.limit, 5);
        }
        let refused = bucket.decide(&shape, 1, 0);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.retry_after, Some(Duration::from_millis(500)));
        assert_eq!(refused.reset, Duration::from_millis(2500));
        // Two tokens a second: one every 500 ms, no more.
        assert!(bucket.decide(&shape, 1, SECOND / 2).allowed);
        assert!(!bucket.decide(&shape, 1, SECOND / 2 + 1).allowed);
        assert!(bucket.decide(&shape, 1, SECOND + 10).allowed);
    }

    #[test]
    fn a_request_may_cost_more_than_one_token() {
        let shape = shape(10.0, 1.0);
        let mut bucket = Bucket::full(&shape, 0);
        let decision = bucket.decide(&shape, 4, 0);
        assert!(decision.allowed);
        assert_eq!(decision.remaining, 6);
        assert_eq!(decision.reset, Duration::from_secs(4));
        assert!(bucket.decide(&shape, 4, 0).allowed);
        let refused = bucket.decide(&shape, 4, 0);
        assert!(!refused.allowed, "2 tokens left for a cost of 4");
        assert_eq!(refused.remaining, 2);
        assert_eq!(refused.retry_after, Some(Duration::from_secs(2)));
        // A refused request takes nothing.
        assert!(bucket.decide(&shape, 2, 0).allowed);
    }

    #[test]
    fn waiting_refills_up_to_the_capacity_only() {
        let shape = shape(3.0, 1.0);
        let mut bucket = Bucket::full(&shape, 0);
        for _ in 0..3 {
            assert!(bucket.decide(&shape, 1, 0).allowed);
        }
        let after_an_hour = bucket.decide(&shape, 1, 3600 * SECOND);
        assert!(after_an_hour.allowed);
        assert_eq!(after_an_hour.remaining, 2, "never more than the capacity");
        assert_eq!(after_an_hour.reset, Duration::from_secs(1));
    }

    #[test]
    fn a_clock_going_backwards_adds_nothing() {
        let shape = shape(2.0, 1.0);
        let mut bucket = Bucket::full(&shape, 10 * SECOND);
        assert!(bucket.decide(&shape, 2, 10 * SECOND).allowed);
        assert!(!bucket.decide(&shape, 1, 5 * SECOND).allowed);
        assert!(!bucket.decide(&shape, 1, 10 * SECOND + SECOND / 2).allowed);
        assert!(bucket.decide(&shape, 1, 11 * SECOND).allowed);
    }

    /// Over any sequence of requests, a bucket admits at most its capacity
    /// plus what it refilled, and refuses only when it has too few tokens.
    #[test]
    fn never_admits_more_than_capacity_plus_refill() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..200 {
            let shape = shape(f64::from(rng.u32(1..50)), f64::from(rng.u32(1..20)) / 2.0);
            let mut bucket = Bucket::full(&shape, 0);
            let mut now = 0;
            let mut admitted = 0u64;
            for _ in 0..500 {
                now += rng.u64(0..200_000);
                let cost = rng.u32(1..4);
                let before = bucket;
                let decision = bucket.decide(&shape, cost, now);
                if decision.allowed {
                    admitted += u64::from(cost);
                } else {
                    assert_eq!(bucket.tokens.floor(), f64::from(decision.remaining));
                    assert!(bucket.tokens < f64::from(cost), "{before:?} refused {cost}");
                }
                let ceiling = shape.capacity + now as f64 / 1e6 * shape.refill_per_second;
                assert!(admitted as f64 <= ceiling + 1e-6, "{admitted} > {ceiling}");
            }
        }
    }
}
