//! The in-process backend: buckets in this process's memory.
//!
//! The buckets live in a moka cache: concurrent lookups without a global
//! lock, a bound on how many are kept (past it the least useful are
//! evicted), and eviction of any bucket left idle for as long as the slowest
//! plan takes to fill (ten minutes at least, so a reload may bring slower
//! plans), since such a bucket is full again and as good as new.
//! Each bucket has its own lock, held for one decision's arithmetic.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use moka::sync::Cache;
use tokio::time::Instant;

use super::bucket::{Bucket, Decision, Shape};

/// The buckets of one process.
#[derive(Debug, Clone)]
pub(crate) struct LocalBuckets {
    buckets: Cache<String, Arc<Mutex<Bucket>>>,
    /// Where this process's bucket clock starts.
    epoch: Instant,
}

impl LocalBuckets {
    /// At most `max_buckets` buckets, each forgotten after `idle` unused.
    pub(crate) fn new(max_buckets: u64, idle: Duration) -> Self {
        Self {
            buckets: Cache::builder()
                .max_capacity(max_buckets)
                .time_to_idle(idle)
                .build(),
            epoch: Instant::now(),
        }
    }

    /// Decides a request of `cost` tokens against the bucket `key` of `shape`.
    pub(crate) fn decide(&self, key: &str, shape: &Shape, cost: u32) -> Decision {
        let now = self.now_micros();
        let bucket = self
            .buckets
            .get_with_by_ref(key, || Arc::new(Mutex::new(Bucket::full(shape, now))));
        let mut bucket = bucket.lock().unwrap_or_else(PoisonError::into_inner);
        bucket.decide(shape, cost, now)
    }

    /// Microseconds since this process's epoch (virtual in paused tests).
    fn now_micros(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Buckets held, once pending evictions are done.
    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        self.buckets.run_pending_tasks();
        self.buckets.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> Shape {
        Shape {
            capacity: 3.0,
            refill_per_second: 1.0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_key_has_its_own_bucket_refilled_by_time() {
        let buckets = LocalBuckets::new(100, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(buckets.decide("a", &shape(), 1).allowed);
        }
        assert!(!buckets.decide("a", &shape(), 1).allowed);
        assert!(
            buckets.decide("b", &shape(), 1).allowed,
            "another key, another bucket"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(buckets.decide("a", &shape(), 1).allowed);
        assert!(!buckets.decide("a", &shape(), 1).allowed);
    }

    #[test]
    fn a_flood_of_distinct_keys_keeps_the_bound() {
        let buckets = LocalBuckets::new(10_000, Duration::from_secs(60));
        for index in 0..100_000 {
            assert!(
                buckets
                    .decide(&format!("rl:{{test:-:ip:{index}}}"), &shape(), 1)
                    .allowed
            );
        }
        let held = buckets.len();
        assert!(held <= 10_000, "{held} buckets held");
        assert!(held >= 1_000, "the cache still holds buckets: {held}");
    }

    #[test]
    fn concurrent_decisions_on_one_key_admit_exactly_the_capacity() {
        let buckets = LocalBuckets::new(100, Duration::from_secs(60));
        let shape = Shape {
            capacity: 1000.0,
            refill_per_second: 0.001,
        };
        let admitted: u32 = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        (0..500)
                            .filter(|_| buckets.decide("shared", &shape, 1).allowed)
                            .count() as u32
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|worker| worker.join().expect("no panic"))
                .sum()
        });
        assert_eq!(admitted, 1000);
    }
}
