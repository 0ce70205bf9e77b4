//! The shared backend: buckets in Redis, seen alike by every instance.
//!
//! A decision is one round trip: a server-side script ([`BUCKET_SCRIPT`],
//! called by its SHA and loaded again if Redis answers `NOSCRIPT`) refills
//! the bucket to the Redis server's own clock (`TIME`, so instances with
//! skewed clocks agree), takes the tokens if they are there, and sets the
//! key to expire once an idle bucket would be full again. Each bucket is one
//! hash under one hash-tagged key, so it works on a cluster too.
//!
//! Every second each instance registers itself ([`HEARTBEAT_SCRIPT`]: a
//! sorted set of instances seen in the last three seconds) and learns how
//! many instances are live. The heartbeat is also how the limiter knows
//! Redis is back after an outage.
//!
//! When Redis fails or answers slower than `decision_timeout`, the limiter
//! switches to its outage policy at once and stops asking Redis until a
//! heartbeat succeeds again: `local` decides in process with each instance
//! enforcing its share of the plan (the plan divided by the live instances
//! last counted), `open` admits, `closed` refuses with 503 and turns
//! `/readyz` to 503. Each switch is one log line and moves the
//! `rate_limit_backend{mode}` gauge.
//!
//! A starting instance has not heard from Redis yet, and a full bucket of
//! its own would admit a whole plan on top of the fleet's. So it is not
//! ready (`/readyz` names the `rate_limit_redis` gate and why) until its
//! first heartbeat is answered, which it tries as soon as the connection
//! is open and then every [`STARTUP_RETRY`]; after `startup_wait` without
//! an answer it is ready under its outage policy (never under `closed`).
//! Until Redis has counted the instances, the `local` share is the plan
//! divided by `expected_instances`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};
use redis::Script;

use super::{
    ModeLabels, OutagePolicy, RateLimitConfig, RateLimitError,
    bucket::{Decision, Shape},
    local::LocalBuckets,
    quota::{DailyCounters, KEPT_AFTER_THE_DAY, day_key},
};
use crate::{
    lifecycle::{ReadinessGate, Shutdown},
    observability::Telemetry,
    stores::RedisStore,
};

/// How often an instance registers itself and checks Redis.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// How often a starting instance that has not heard from Redis tries again.
const STARTUP_RETRY: Duration = Duration::from_millis(50);
/// An instance not seen for this long is no longer counted.
const INSTANCE_TTL: Duration = Duration::from_secs(3);

/// KEYS[1]: the bucket. ARGV: capacity, refill per second, cost, idle TTL in ms.
/// Returns whether the request was admitted and the tokens left.
///
/// Numbers are written with every digit: Lua's `tostring` keeps 14
/// significant ones, which rounded the microsecond clock (16 digits) to
/// 100 µs. A request arriving within 50 µs of the rounded-up time refilled
/// nothing, and the next one was measured from the grid point before it:
/// under load, each decision saw a little more time pass than had, and the
/// bucket admitted 5 to 20 % over its rate.
const BUCKET_SCRIPT: &str = r"
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 't', 'u')
local tokens = tonumber(state[1])
local updated = tonumber(state[2])
if tokens == nil or updated == nil then
  tokens = capacity
  updated = now_us
end
tokens = math.min(capacity, tokens + math.max(0, now_us - updated) / 1000000 * rate)
updated = math.max(updated, now_us)
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens), 'u', string.format('%d', updated))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {allowed, string.format('%.17g', tokens)}
";

/// KEYS[1]: the set of live instances. ARGV: this instance, TTL in ms.
/// Returns how many instances were seen within the TTL.
const HEARTBEAT_SCRIPT: &str = r"
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], now_ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('ZCARD', KEYS[1])
";

/// KEYS[1]: a caller's count for one day. ARGV: seconds the count lives.
/// Returns the count with this request.
const QUOTA_SCRIPT: &str = r"
local used = redis.call('INCR', KEYS[1])
if used == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return used
";

/// Where decisions are made right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Redis,
    Outage,
}

/// The Redis side of a limiter; see the module docs.
#[derive(Debug)]
pub(super) struct SharedBuckets {
    store: RedisStore,
    policy: OutagePolicy,
    decision_timeout: Duration,
    bucket_script: Script,
    quota_script: Script,
    /// Whether Redis decides (else the outage policy does).
    healthy: AtomicBool,
    /// Live instances of this BFF last counted, at least 1.
    instances: AtomicU32,
    /// The `rate_limit_backend` gauges.
    modes: Family<ModeLabels, Gauge>,
    /// What the heartbeats counted and how they went.
    metrics: RedisMetrics,
    /// `rate_limit_redis`: closed until Redis first answers (or
    /// `startup_wait` passes), and under the `closed` policy whenever
    /// Redis does not answer.
    gate: ReadinessGate,
    /// How long the gate waits for Redis at start.
    startup_wait: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HeartbeatLabels {
    outcome: &'static str,
}

/// The metrics of the shared buckets' heartbeat.
#[derive(Debug, Clone)]
pub(super) struct RedisMetrics {
    /// `rate_limit_live_instances`: what the last heartbeat counted.
    live_instances: Gauge,
    /// `rate_limit_redis_heartbeats_total{outcome}`: answered or failed.
    heartbeats: Family<HeartbeatLabels, Counter>,
}

impl RedisMetrics {
    pub(super) fn register(telemetry: &Telemetry) -> Self {
        let metrics = Self {
            live_instances: Gauge::default(),
            heartbeats: Family::default(),
        };
        telemetry.register(
            "rate_limit_live_instances",
            "Instances of this BFF deciding in the same Redis, as last counted",
            metrics.live_instances.clone(),
        );
        telemetry.register(
            "rate_limit_redis_heartbeats",
            "Heartbeats to Redis by outcome (answered, failed): each one moves the limiter to Redis or to its outage policy",
            metrics.heartbeats.clone(),
        );
        metrics
    }

    fn heartbeat(&self, outcome: &'static str) {
        self.heartbeats
            .get_or_create(&HeartbeatLabels { outcome })
            .inc();
    }
}

impl SharedBuckets {
    /// Buckets in `store`, checked every second by a heartbeat that runs
    /// until `shutdown`. Until the first heartbeat succeeds the outage
    /// policy decides and `gate` is closed (see the module docs).
    pub(super) fn start(
        bff: &'static str,
        store: RedisStore,
        config: &RateLimitConfig,
        modes: Family<ModeLabels, Gauge>,
        metrics: RedisMetrics,
        gate: ReadinessGate,
        shutdown: &Shutdown,
    ) -> Arc<Self> {
        let shared = Arc::new(Self {
            store,
            policy: config.outage_policy,
            decision_timeout: config.decision_timeout.get(),
            bucket_script: Script::new(BUCKET_SCRIPT),
            quota_script: Script::new(QUOTA_SCRIPT),
            healthy: AtomicBool::new(false),
            instances: AtomicU32::new(config.expected_instances.get()),
            modes,
            metrics,
            gate,
            startup_wait: config.startup_wait.get(),
        });
        shared.show_mode(Mode::Outage);
        let address = shared.store.address();
        shared.gate.explain(match shared.policy {
            OutagePolicy::Closed => format!(
                "no answer from Redis at {address} yet: the outage policy is closed, so no request is admitted until it answers"
            ),
            policy => format!(
                "no answer from Redis at {address} yet; ready without it after {} (rate_limit.startup_wait), the outage policy {} deciding",
                humantime::format_duration(shared.startup_wait),
                policy.name(),
            ),
        });
        tracing::info!(
            redis = address,
            policy = shared.policy.name(),
            startup_wait = ?shared.startup_wait,
            "rate limiting: waiting for Redis before this instance is ready"
        );
        tokio::spawn(heartbeat(bff, shared.clone(), shutdown.clone()));
        shared
    }

    /// Decides a request of `cost` against the bucket `key` of `shape`:
    /// in Redis when it is healthy, else by the outage policy. `None`
    /// admits without a decision (the `open` policy).
    pub(super) async fn decide(
        &self,
        key: &str,
        shape: &Shape,
        cost: u32,
        local: &LocalBuckets,
    ) -> Result<Option<Decision>, RateLimitError> {
        if self.healthy.load(Ordering::Acquire) {
            match self.decide_in_redis(key, shape, cost).await {
                Ok(decision) => return Ok(Some(decision)),
                Err(reason) => self.switch(Mode::Outage, &reason),
            }
        }
        match self.policy {
            OutagePolicy::Local => {
                let share = f64::from(self.instances.load(Ordering::Acquire).max(1));
                let local_shape = Shape {
                    capacity: (shape.capacity / share).max(1.0),
                    refill_per_second: shape.refill_per_second / share,
                };
                Ok(Some(local.decide(key, &local_shape, cost)))
            }
            OutagePolicy::Open => Ok(None),
            OutagePolicy::Closed => Err(RateLimitError::Unavailable),
        }
    }

    /// Counts one request of `bucket` against its day of `local`'s clock:
    /// in Redis when it is healthy, else by the outage policy (`local`:
    /// this instance's count times the live instances, its estimate of the
    /// fleet's). `None` admits without counting (the `open` policy).
    pub(super) async fn count_today(
        &self,
        bucket: &str,
        local: &DailyCounters,
    ) -> Result<Option<u64>, RateLimitError> {
        if self.healthy.load(Ordering::Acquire) {
            let (day, left) = local.clock().utc_day();
            let lives = left + KEPT_AFTER_THE_DAY;
            let mut invocation = self.quota_script.key(day_key(bucket, day));
            invocation.arg(lives.as_secs().max(1));
            let counted = async {
                let mut connection = self.store.connection().ok_or("not connected")?;
                tokio::time::timeout(
                    self.decision_timeout,
                    invocation.invoke_async::<u64>(&mut connection),
                )
                .await
                .map_err(|_| format!("no answer within {:?}", self.decision_timeout))?
                .map_err(|error| error.to_string())
            };
            match counted.await {
                Ok(used) => return Ok(Some(used)),
                Err(reason) => self.switch(Mode::Outage, &reason),
            }
        }
        match self.policy {
            OutagePolicy::Local => Ok(Some(
                local.count(bucket) * u64::from(self.instances.load(Ordering::Acquire).max(1)),
            )),
            OutagePolicy::Open => Ok(None),
            OutagePolicy::Closed => Err(RateLimitError::Unavailable),
        }
    }

    async fn decide_in_redis(
        &self,
        key: &str,
        shape: &Shape,
        cost: u32,
    ) -> Result<Decision, String> {
        let mut connection = self.store.connection().ok_or("not connected")?;
        let idle_ttl = (shape.time_to_fill() + Duration::from_secs(1)).as_millis() as u64;
        let mut invocation = self.bucket_script.key(key);
        invocation
            .arg(shape.capacity)
            .arg(shape.refill_per_second)
            .arg(cost)
            .arg(idle_ttl);
        let answer = tokio::time::timeout(
            self.decision_timeout,
            invocation.invoke_async::<(i64, String)>(&mut connection),
        )
        .await
        .map_err(|_| format!("no answer within {:?}", self.decision_timeout))?
        .map_err(|error| error.to_string())?;
        let (allowed, tokens) = answer;
        let tokens: f64 = tokens
            .parse()
            .map_err(|_| format!("the bucket script answered {tokens:?}"))?;
        Ok(Decision::after(shape, cost, allowed == 1, tokens))
    }

    /// Loads the bucket script (a fresh or restarted Redis has none), so
    /// the first decision is one round trip too; a failure only costs that
    /// decision the reload its `NOSCRIPT` answer triggers.
    async fn load_script(&self) {
        let Some(mut connection) = self.store.connection() else {
            return;
        };
        let invocation = self.bucket_script.prepare_invoke();
        let loaded = tokio::time::timeout(
            self.decision_timeout,
            invocation.load_async(&mut connection),
        );
        if !matches!(loaded.await, Ok(Ok(_))) {
            tracing::debug!("could not load the bucket script ahead of the first decision");
        }
    }

    /// Enters `mode`, logging and showing it once per switch.
    fn switch(&self, mode: Mode, reason: &str) {
        let healthy = mode == Mode::Redis;
        if self.healthy.swap(healthy, Ordering::AcqRel) == healthy {
            return;
        }
        self.show_mode(mode);
        match mode {
            Mode::Redis => tracing::info!(
                redis = self.store.address(),
                "rate limiting: deciding in Redis"
            ),
            Mode::Outage => tracing::warn!(
                redis = self.store.address(),
                reason,
                policy = self.policy.name(),
                "rate limiting: Redis unavailable, the outage policy decides"
            ),
        }
    }

    fn show_mode(&self, mode: Mode) {
        let in_force = match mode {
            Mode::Redis => "redis",
            Mode::Outage => self.policy.name(),
        };
        for name in ["redis", "local", "open", "closed"] {
            self.modes
                .get_or_create(&ModeLabels { mode: name })
                .set(i64::from(name == in_force));
        }
        // Once open, the gate closes again only under the closed policy.
        if mode == Mode::Redis {
            self.gate.set(true);
        } else if self.policy == OutagePolicy::Closed {
            self.gate.explain(format!(
                "Redis at {} does not answer and the outage policy is closed",
                self.store.address()
            ));
            self.gate.set(false);
        }
    }

    /// Past `startup_wait` without an answer from Redis: ready under the
    /// outage policy, unless it is `closed`. Logged once.
    fn ready_without_redis(&self) {
        if self.policy == OutagePolicy::Closed || self.gate.is_open() {
            return;
        }
        tracing::warn!(
            redis = self.store.address(),
            policy = self.policy.name(),
            instances = self.instances.load(Ordering::Acquire),
            "rate limiting: no answer from Redis within startup_wait; ready, the outage policy decides"
        );
        self.gate.set(true);
    }
}

/// Registers this instance every second, counts the live ones, and moves the
/// limiter between Redis and its outage policy; leaves the set on shutdown.
/// Until Redis first answers it tries every [`STARTUP_RETRY`], and once
/// `startup_wait` has passed it makes the instance ready without Redis.
async fn heartbeat(bff: &'static str, shared: Arc<SharedBuckets>, shutdown: Shutdown) {
    let script = Script::new(HEARTBEAT_SCRIPT);
    let instances_key = format!("rl:{{{bff}}}:instances");
    let instance = format!("{:016x}", fastrand::u64(..));
    let ttl = INSTANCE_TTL.as_millis() as u64;
    let startup_deadline = tokio::time::Instant::now() + shared.startup_wait;
    let mut heard_from_redis = false;
    loop {
        if !heard_from_redis {
            // The first beat goes as soon as the connection is open.
            let connected = tokio::time::timeout_at(startup_deadline, shared.store.connected());
            tokio::select! {
                _ = connected => {}
                () = shutdown.triggered() => break,
            }
        }
        let beat = async {
            let mut connection = shared.store.connection().ok_or("not connected")?;
            let mut invocation = script.key(&instances_key);
            invocation.arg(&instance).arg(ttl);
            let count = tokio::time::timeout(
                shared.decision_timeout,
                invocation.invoke_async::<u32>(&mut connection),
            )
            .await
            .map_err(|_| "the heartbeat was not answered in time")?
            .map_err(|_| "the heartbeat failed")?;
            Ok::<u32, &str>(count)
        };
        match beat.await {
            Ok(count) => {
                shared.instances.store(count.max(1), Ordering::Release);
                shared.metrics.live_instances.set(i64::from(count));
                shared.metrics.heartbeat("answered");
                if !shared.healthy.load(Ordering::Acquire) {
                    shared.load_script().await;
                }
                shared.switch(Mode::Redis, "");
                heard_from_redis = true;
            }
            Err(reason) => {
                shared.metrics.heartbeat("failed");
                shared.switch(Mode::Outage, reason);
            }
        }
        let starting = !heard_from_redis && tokio::time::Instant::now() < startup_deadline;
        if !heard_from_redis && !starting {
            shared.ready_without_redis();
        }
        let next = if starting {
            STARTUP_RETRY
        } else {
            HEARTBEAT_INTERVAL
        };
        tokio::select! {
            () = tokio::time::sleep(next) => {}
            () = shutdown.triggered() => break,
        }
    }
    if let Some(mut connection) = shared.store.connection() {
        let mut leave = redis::cmd("ZREM");
        leave.arg(&instances_key).arg(&instance);
        let left = tokio::time::timeout(shared.decision_timeout, leave.exec_async(&mut connection));
        if !matches!(left.await, Ok(Ok(()))) {
            tracing::debug!("could not leave the set of live instances; it expires by itself");
        }
    }
}
