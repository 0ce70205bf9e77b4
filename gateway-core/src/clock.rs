//! The time of day, for what follows the calendar: a daily quota's UTC
//! day, a route's deprecation and sunset dates.
//!
//! Durations (timeouts, buckets, deadlines) use tokio's monotonic clock;
//! only calendar rules read this one. A test gives a BFF a manual clock
//! ([`Clock::manual`]) and moves it, to see a quota reset at midnight or a
//! sunset pass without waiting for either.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Seconds in a day.
const DAY: u64 = 86_400;

/// The wall clock: the system's, or a manual one a test moves. Cheap to clone;
/// clones of a manual clock move together.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    manual: Option<Arc<Mutex<SystemTime>>>,
}

impl Clock {
    /// The system's clock (the default).
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that stands at `at` until [`Clock::set`] or
    /// [`Clock::advance`] moves it.
    pub fn manual(at: SystemTime) -> Self {
        Self {
            manual: Some(Arc::new(Mutex::new(at))),
        }
    }

    /// Now.
    pub fn now(&self) -> SystemTime {
        match &self.manual {
            Some(at) => *at.lock().unwrap_or_else(PoisonError::into_inner),
            None => SystemTime::now(),
        }
    }

    /// Seconds since the Unix epoch, now.
    pub fn unix_seconds(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs())
    }

    /// The UTC day of now (days since the Unix epoch) and the time left
    /// until the next one begins.
    pub fn utc_day(&self) -> (u64, Duration) {
        let since = self
            .now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let day = since.as_secs() / DAY;
        let next = Duration::from_secs((day + 1) * DAY);
        (day, next.saturating_sub(since))
    }

    /// Moves a manual clock to `at`.
    ///
    /// # Panics
    ///
    /// On the system clock, which only time moves.
    pub fn set(&self, at: SystemTime) {
        let manual = self
            .manual
            .as_ref()
            .expect("only a manual clock can be set");
        *manual.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }

    /// Moves a manual clock forward by `by`.
    ///
    /// # Panics
    ///
    /// On the system clock.
    pub fn advance(&self, by: Duration) {
        self.set(self.now() + by);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_moved_and_its_clones_with_it() {
        let start = UNIX_EPOCH + Duration::from_secs(20_000 * DAY + 3_600);
        let clock = Clock::manual(start);
        let clone = clock.clone();
        assert_eq!(clock.now(), start);
        assert_eq!(clock.utc_day(), (20_000, Duration::from_secs(DAY - 3_600)));
        clone.advance(Duration::from_secs(DAY - 3_600));
        assert_eq!(clock.utc_day(), (20_001, Duration::from_secs(DAY)));
        assert_eq!(clock.unix_seconds(), 20_001 * DAY);
    }

    #[test]
    fn the_system_clock_is_now() {
        let before = SystemTime::now();
        let now = Clock::system().now();
        assert!(now >= before && now <= SystemTime::now());
    }
}
