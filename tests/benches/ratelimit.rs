//! Rate-limit decisions per second and their latency, in process and in a
//! real Redis on loopback; how exactly one caller's bucket holds its plan
//! when decided as fast as the limiters can, by one limiter or by three
//! sharing one Redis (as three instances would); and the memory a flood of
//! distinct keys costs the in-process buckets.
//!
//! `bench/ratelimit.sh before=REV` builds this file against the limiter of
//! REV too and runs both in turn.
//!
//! `cargo bench -p platform-tests --bench ratelimit` (needs `redis-server`).
//! Not criterion: the figures wanted are throughput under concurrency and
//! latency percentiles, measured per decision.

use std::time::{Duration, Instant};

use gateway_core::{
    lifecycle::{Readiness, Shutdown},
    observability::Telemetry,
    ratelimit::{PlanConfig, RateLimitCharge, RateLimitConfig, RateLimiter},
    stores::SharedStores,
};
use http::HeaderMap;
use platform_tests::RedisServer;

/// Decisions of each measurement, in all (split among its tasks): about
/// 5 s in process and in Redis on loopback on a 2-core machine.
const IN_PROCESS_DECISIONS: u64 = 10_000_000;
const REDIS_DECISIONS: u64 = 300_000;
/// Decisions of each accuracy run per limiter (split among its tasks):
/// about 10 s in process and in Redis.
const IN_PROCESS_ACCURACY_DECISIONS: u64 = 20_000_000;
const REDIS_ACCURACY_DECISIONS: u64 = 400_000;
/// Concurrent deciders per limiter in an accuracy run.
const ACCURACY_TASKS: usize = 16;
/// The burst of the accuracy runs' plans.
const ACCURACY_CAPACITY: u32 = 100;

fn config(max_local_buckets: u64) -> RateLimitConfig {
    let mut config = RateLimitConfig {
        max_local_buckets,
        ..RateLimitConfig::default()
    };
    // Admit everything: the cost measured is the decision's, not a refusal's.
    config.plans.insert(
        "standard".to_owned(),
        PlanConfig {
            capacity: 1_000_000_000,
            refill_per_second: 1e9,
            daily_quota: None,
        },
    );
    config
}

fn limiter(
    name: &'static str,
    config: &RateLimitConfig,
    telemetry: &Telemetry,
    stores: &SharedStores,
) -> RateLimiter {
    RateLimiter::start(
        name,
        config,
        &[],
        telemetry,
        &Readiness::default(),
        &Shutdown::new(),
        stores,
        &gateway_core::clock::Clock::system(),
    )
    .expect("a valid configuration")
}

/// Runs `tasks` concurrent loops sharing `decisions`, each on its own
/// key; prints decisions per second and latency percentiles.
async fn measure(label: &str, limiter: &RateLimiter, tasks: usize, decisions: u64) {
    let started = Instant::now();
    let loops = (0..tasks).map(|task| {
        let charge: RateLimitCharge = limiter.charge_for(
            None,
            Some(std::net::IpAddr::from([
                10,
                0,
                (task / 256) as u8,
                (task % 256) as u8,
            ])),
            &HeaderMap::new(),
        );
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 20);
            for _ in 0..decisions / tasks as u64 {
                let before = Instant::now();
                let decision = charge.charge(1).await.expect("admitted");
                latencies.push(before.elapsed());
                assert!(decision.is_some_and(|decision| decision.allowed));
            }
            latencies
        })
    });
    let mut latencies: Vec<Duration> = Vec::new();
    for handle in loops.collect::<Vec<_>>() {
        latencies.extend(handle.await.expect("the loop completes"));
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let percentile =
        |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "{label:<28} {tasks:>5} {:>14.0} {:>12.2?} {:>12.2?}",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(0.50),
        percentile(0.99),
    );
}

/// `count` limiters deciding in `redis_url` (in process when empty), each
/// with its own connection, like `count` instances of one BFF, under a plan
/// of [`ACCURACY_CAPACITY`] tokens refilled at `rate` a second. Returns
/// once every one decides in Redis, with the shutdown that stops them.
async fn accuracy_limiters(
    redis_url: &str,
    count: usize,
    rate: f64,
) -> (Vec<RateLimiter>, Shutdown) {
    let shutdown = Shutdown::new();
    let mut config = config(1_000);
    config.plans.insert(
        "standard".to_owned(),
        PlanConfig {
            capacity: ACCURACY_CAPACITY,
            refill_per_second: rate,
            daily_quota: None,
        },
    );
    let mut limiters = Vec::new();
    for _ in 0..count {
        let stores = SharedStores::open(redis_url, &shutdown).expect("a valid URL");
        let telemetry = Telemetry::new("bench-accuracy");
        let limiter = RateLimiter::start(
            "bench-accuracy",
            &config,
            &[],
            &telemetry,
            &Readiness::default(),
            &shutdown,
            &stores,
            &gateway_core::clock::Clock::system(),
        )
        .expect("a valid configuration");
        let in_redis = "mode=\"redis\"} 1";
        if !redis_url.is_empty() {
            platform_tests::eventually("the limiter decides in Redis", async || {
                telemetry.encode().contains(in_redis)
            })
            .await;
        }
        limiters.push(limiter);
    }
    (limiters, shutdown)
}

/// One caller's bucket decided by [`ACCURACY_TASKS`] loops per limiter for
/// `decisions` per limiter between them; prints what was admitted against what was due:
/// capacity + rate x the time from the first decision to the last.
async fn accuracy(label: &str, limiters: &[RateLimiter], rate: f64, caller: u8, decisions: u64) {
    // Each run its own caller, so that each starts on a full bucket.
    let caller = std::net::IpAddr::from([10, 9, 9, caller]);
    let started = Instant::now();
    let loops: Vec<_> = limiters
        .iter()
        .flat_map(|limiter| {
            let charge = limiter.charge_for(None, Some(caller), &HeaderMap::new());
            (0..ACCURACY_TASKS).map(move |_| {
                let charge = charge.clone();
                tokio::spawn(async move {
                    let (mut admitted, mut decided) = (0u64, 0u64);
                    for _ in 0..decisions / ACCURACY_TASKS as u64 {
                        decided += 1;
                        admitted += u64::from(matches!(charge.charge(1).await, Ok(Some(_))));
                    }
                    (admitted, decided)
                })
            })
        })
        .collect();
    let (mut admitted, mut decided) = (0, 0);
    for handle in loops {
        let (admitted_here, decided_here) = handle.await.expect("the loop completes");
        admitted += admitted_here;
        decided += decided_here;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let due = f64::from(ACCURACY_CAPACITY) + rate * elapsed;
    println!(
        "{label:<28} {:>9} {:>10} {:>14.0} {admitted:>9} {due:>9.0} {:>9.4}",
        limiters.len(),
        format!("{ACCURACY_CAPACITY}+{rate}/s"),
        decided as f64 / elapsed,
        admitted as f64 / due,
    );
}

fn resident_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| value.trim().trim_end_matches(" kB").parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let telemetry = Telemetry::new("bench");
        println!(
            "{:<28} {:>5} {:>14} {:>12} {:>12}",
            "backend", "tasks", "decisions/s", "p50", "p99"
        );
        let in_process = limiter(
            "bench",
            &config(1_000_000),
            &telemetry,
            &SharedStores::default(),
        );
        for tasks in [1, 2, 32] {
            measure("in process", &in_process, tasks, IN_PROCESS_DECISIONS).await;
        }

        let redis = RedisServer::start().await;
        let shutdown = Shutdown::new();
        let stores = SharedStores::open(&redis.url(), &shutdown).expect("a valid URL");
        let telemetry = Telemetry::new("bench-redis");
        let shared = limiter("bench-redis", &config(1_000_000), &telemetry, &stores);
        let in_redis = "rate_limit_backend{bff=\"bench-redis\",mode=\"redis\"} 1";
        platform_tests::eventually("the limiter decides in Redis", async || {
            telemetry.encode().contains(in_redis)
        })
        .await;
        for tasks in [1, 2, 32] {
            measure("redis (loopback)", &shared, tasks, REDIS_DECISIONS).await;
        }
        shutdown.trigger();

        println!(
            "\n{:<28} {:>9} {:>10} {:>14} {:>9} {:>9} {:>9}",
            "accuracy", "limiters", "plan", "decisions/s", "admitted", "due", "ratio"
        );
        let mut caller = 0;
        for rate in [200.0, 1000.0] {
            let (local, stop_local) = accuracy_limiters("", 1, rate).await;
            accuracy(
                "in process",
                &local,
                rate,
                caller,
                IN_PROCESS_ACCURACY_DECISIONS,
            )
            .await;
            stop_local.trigger();
            for count in [1, 3] {
                caller += 1;
                let (shared, stop_shared) = accuracy_limiters(&redis.url(), count, rate).await;
                accuracy(
                    "redis (loopback)",
                    &shared,
                    rate,
                    caller,
                    REDIS_ACCURACY_DECISIONS,
                )
                .await;
                stop_shared.trigger();
            }
        }

        // A flood of distinct callers: the in-process buckets stay bounded.
        let bounded = limiter(
            "bench-flood",
            &config(100_000),
            &Telemetry::new("bench-flood"),
            &SharedStores::default(),
        );
        let before = resident_kb();
        for index in 0..1_000_000u32 {
            let address = std::net::IpAddr::from(index.to_be_bytes());
            let charge = bounded.charge_for(None, Some(address), &HeaderMap::new());
            charge.charge(1).await.expect("admitted");
        }
        println!(
            "1,000,000 distinct callers, at most 100,000 buckets kept: resident memory +{} MB",
            (resident_kb().saturating_sub(before)) / 1024
        );
    });
}
