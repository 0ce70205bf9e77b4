//! `[rate_limit]`: plans, who gets which, and where the buckets live.

use std::{
    collections::BTreeMap,
    num::{NonZeroU32, NonZeroU64},
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{
    config::{ConfigError, Delay, HumanDuration, Validate},
    stores::RedisUrl,
};

/// Default plan name.
const DEFAULT_PLAN: &str = "standard";
/// Default burst of the default plan.
const DEFAULT_CAPACITY: u32 = 100;
/// Default refill of the default plan, tokens per second.
const DEFAULT_REFILL_PER_SECOND: f64 = 50.0;
/// Default longest wait for a shared decision (`50ms`).
const DEFAULT_DECISION_TIMEOUT: HumanDuration = HumanDuration::from_millis(50);
/// Default most buckets kept in process (100,000: about 35 MB when full).
const DEFAULT_MAX_LOCAL_BUCKETS: u64 = 100_000;
/// Default longest wait for Redis before an instance is ready without it (`5s`).
const DEFAULT_STARTUP_WAIT: Delay = Delay::from_secs(5);
/// Default instances assumed to share a plan until Redis has counted them (1).
const DEFAULT_EXPECTED_INSTANCES: NonZeroU32 = NonZeroU32::MIN;

/// What happens to decisions while Redis is unreachable or too slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutagePolicy {
    /// Decide in process, each instance enforcing its share of the plan
    /// (the default).
    #[default]
    Local,
    /// Allow every request.
    Open,
    /// Refuse every request with 503.
    Closed,
}

impl OutagePolicy {
    /// Its name in configuration, also the `rate_limit_backend` mode it
    /// shows while in force.
    pub fn name(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

/// One plan (`[rate_limit.plans.<name>]`): a token bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    /// Most tokens the bucket holds: the burst a caller may send at once.
    pub capacity: u32,
    /// Tokens added per second, up to `capacity`: the sustained rate.
    pub refill_per_second: f64,
    /// Requests a caller may make in a UTC day, on top of the rate;
    /// none (the default): no daily quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_quota: Option<NonZeroU64>,
}

/// Rate limiting (`[rate_limit]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// `false` turns limiting off (default `true`).
    pub enabled: bool,
    /// Deprecated name of `[redis] url`, read for one more release.
    #[serde(skip_serializing_if = "RedisUrl::is_empty")]
    pub redis_url: RedisUrl,
    /// The plan of callers no other rule names (default `standard`).
    pub default_plan: String,
    /// A shared decision slower than this follows `outage_policy` (default `50ms`).
    pub decision_timeout: HumanDuration,
    /// `local` (default), `open` or `closed`: see [`OutagePolicy`].
    pub outage_policy: OutagePolicy,
    /// How long a starting instance waits for its first answer from Redis
    /// before it is ready without it, deciding by the outage policy
    /// (default `5s`; `0s`: ready at once). Under `closed` it is not ready
    /// until Redis answers, however long that takes.
    pub startup_wait: Delay,
    /// How many instances share a plan until Redis has counted them (default
    /// 1): under the `local` policy an instance that has not heard from
    /// Redis enforces this share of each plan.
    pub expected_instances: NonZeroU32,
    /// Deprecated name of `[server] trusted_proxies`, read for one more release.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<IpNet>,
    /// The plans, by name (default: `standard`, 100 burst, 50 per second).
    pub plans: BTreeMap<String, PlanConfig>,
    /// Tenant id to plan name; an API key's own `plan` comes first.
    pub tenants: BTreeMap<String, String>,
    /// Most buckets kept in process (default 100,000, about 35 MB when
    /// full); past it the least used are evicted, as are buckets idle long
    /// enough to be full again.
    pub max_local_buckets: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            redis_url: RedisUrl::default(),
            default_plan: DEFAULT_PLAN.to_owned(),
            decision_timeout: DEFAULT_DECISION_TIMEOUT,
            outage_policy: OutagePolicy::default(),
            startup_wait: DEFAULT_STARTUP_WAIT,
            expected_instances: DEFAULT_EXPECTED_INSTANCES,
            trusted_proxies: Vec::new(),
            plans: BTreeMap::from([(
                DEFAULT_PLAN.to_owned(),
                PlanConfig {
                    capacity: DEFAULT_CAPACITY,
                    refill_per_second: DEFAULT_REFILL_PER_SECOND,
                    daily_quota: None,
                },
            )]),
            tenants: BTreeMap::new(),
            max_local_buckets: DEFAULT_MAX_LOCAL_BUCKETS,
        }
    }
}

impl Validate for RateLimitConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (name, plan) in &self.plans {
            if plan.capacity == 0 {
                return Err(ConfigError::rule(
                    &format!("rate_limit.plans.{name}.capacity"),
                    "must be at least 1",
                ));
            }
            if !(plan.refill_per_second.is_finite() && plan.refill_per_second > 0.0) {
                return Err(ConfigError::rule(
                    &format!("rate_limit.plans.{name}.refill_per_second"),
                    "must be a positive number",
                ));
            }
        }
        if !self.plans.contains_key(&self.default_plan) {
            return Err(ConfigError::rule(
                "rate_limit.default_plan",
                format!(
                    "no plan named {:?} in [rate_limit.plans]",
                    self.default_plan
                ),
            ));
        }
        if let Some((tenant, plan)) = self
            .tenants
            .iter()
            .find(|(_, plan)| !self.plans.contains_key(*plan))
        {
            return Err(ConfigError::rule(
                &format!("rate_limit.tenants.{tenant}"),
                format!("no plan named {plan:?} in [rate_limit.plans]"),
            ));
        }
        if self.max_local_buckets == 0 {
            return Err(ConfigError::rule(
                "rate_limit.max_local_buckets",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}
