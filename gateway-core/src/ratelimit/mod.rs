//! Rate limiting: token buckets per caller, with plans from configuration.
//!
//! Every request draws tokens from its caller's bucket (see `key.rs` for
//! whose bucket that is: the verified tenant and subject, else the client
//! address behind trusted proxies). A caller's plan is its API key's `plan`,
//! else its tenant's (`[rate_limit.tenants]`), else `default_plan`; a plan
//! is a bucket shape (`capacity` burst, `refill_per_second`). A request costs
//! one token unless its route costs more ([`crate::bff::Bff::ROUTE_COSTS`]),
//! and a handler may charge more once it knows the real cost (a GraphQL
//! query's complexity) through the [`RateLimitCharge`] in the request.
//!
//! [`RateLimitLayer`] runs after authentication. An admitted request's
//! answer carries `RateLimit-Limit`, `RateLimit-Remaining`,
//! `RateLimit-Reset` and `RateLimit-Policy`; a refused one is a 429
//! problem+json (`RATE_LIMITED`) with `Retry-After` and the same headers.
//! A plan may also have a `daily_quota`: requests per UTC day, counted
//! once the bucket admits one, past which a request is a 429
//! `QUOTA_EXCEEDED` until midnight; its caller's answers carry the
//! `Quota-*` headers (`quota.rs`).
//! The metrics `rate_limit_decisions_total{plan,outcome}`,
//! `rate_limit_decision_duration_seconds`, `rate_limit_backend{mode}` and,
//! with Redis, `rate_limit_live_instances` and
//! `rate_limit_redis_heartbeats_total{outcome}` show what it does.
//!
//! With no `[redis] url` the buckets live in this process (`local.rs`): the
//! one-machine default. With one they live in Redis, shared by every
//! instance, and an outage policy decides while Redis cannot (`shared.rs`).
//!
//! # Example
//!
//! ```
//! use gateway_core::{
//!     clock::Clock,
//!     lifecycle::{Readiness, Shutdown},
//!     observability::Telemetry,
//!     ratelimit::{RateLimitConfig, RateLimiter},
//!     stores::SharedStores,
//! };
//!
//! let telemetry = Telemetry::new("bff-example");
//! let limiter = RateLimiter::start(
//!     "bff-example",
//!     &RateLimitConfig::default(),
//!     &[],
//!     &telemetry,
//!     &Readiness::default(),
//!     &Shutdown::new(),
//!     &SharedStores::default(),
//!     &Clock::system(),
//! )
//! .expect("the defaults are valid");
//! let layer = limiter.layer(&[("/api/search", 5)]);
//! # let _ = layer;
//! ```

mod bucket;
mod config;
mod error;
mod key;
mod local;
mod quota;
mod shared;

pub use bucket::Decision;
pub use config::{OutagePolicy, PlanConfig, RateLimitConfig};
pub use error::RateLimitError;
pub use quota::QuotaUse;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use axum::{
    extract::{ConnectInfo, MatchedPath, Request},
    response::{IntoResponse, Response},
};
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderValue};
use ipnet::IpNet;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
};
use tower::{Layer, Service};

use crate::{
    Error,
    clock::Clock,
    config::{ConfigError, Validate},
    identity::VerifiedIdentity,
    lifecycle::{Readiness, Shutdown},
    observability::{Telemetry, latency_histogram},
    stores::SharedStores,
};
use bucket::Shape;
use local::LocalBuckets;
use quota::DailyCounters;
use shared::{RedisMetrics, SharedBuckets};

/// What a request costs when its route names no other cost.
const DEFAULT_COST: u32 = 1;

/// A plan ready to decide with.
#[derive(Debug)]
struct Plan {
    /// Its name, the `plan` metrics label (see [`PlanTable::build`]).
    name: &'static str,
    shape: Shape,
    /// `RateLimit-Policy`: `{capacity};w={seconds to fill}`.
    policy: HeaderValue,
    /// `RateLimit-Limit`: the capacity, rendered once.
    limit: HeaderValue,
    /// Requests a caller may make in a UTC day, if the plan says.
    daily_quota: Option<u64>,
    admitted: Counter,
    limited: Counter,
    over_quota: Counter,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DecisionLabels {
    plan: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ModeLabels {
    mode: &'static str,
}

/// Decides whether callers may proceed; cheap to clone.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The BFF whose buckets these are (the first part of every key).
    bff: &'static str,
    /// The plans and who gets which, swapped whole by a reload.
    table: ArcSwap<PlanTable>,
    /// `rate_limit_decisions`, whose series a reload's new plans add to.
    decisions: Family<DecisionLabels, Counter>,
    /// How long an untouched bucket in process is kept: past it, it would
    /// be full again under the slowest plan started with, and at least
    /// [`MIN_IDLE`], so that a reload may bring slower plans.
    idle: Duration,
    trusted_proxies: Vec<IpNet>,
    /// The buckets in process: all of them without Redis, the outage
    /// fallback with it.
    local: LocalBuckets,
    /// The buckets in Redis, when the process has one.
    shared: Option<Arc<SharedBuckets>>,
    /// The daily quotas' counts in process: all of them without Redis,
    /// the outage fallback with it.
    days: DailyCounters,
    decision_latency: Histogram,
}

/// The least time an untouched bucket is kept in process (memory stays
/// bounded by `max_local_buckets`).
const MIN_IDLE: Duration = Duration::from_secs(600);

/// The plans by name, the tenants' plans and the default plan.
#[derive(Debug)]
struct PlanTable {
    plans: HashMap<String, Arc<Plan>>,
    /// Tenant id to its plan.
    tenants: HashMap<String, Arc<Plan>>,
    default_plan: Arc<Plan>,
}

impl PlanTable {
    /// The table of a valid `config`, its decisions counted in
    /// `decisions`; a plan already in `previous` keeps its name (the
    /// metrics label, leaked once: plans are few and live as long as the
    /// process).
    fn build(
        config: &RateLimitConfig,
        decisions: &Family<DecisionLabels, Counter>,
        previous: Option<&PlanTable>,
    ) -> Self {
        let plans: HashMap<String, Arc<Plan>> = config
            .plans
            .iter()
            .map(|(name, plan)| {
                let shape = Shape {
                    capacity: f64::from(plan.capacity),
                    refill_per_second: plan.refill_per_second,
                };
                let window = shape.time_to_fill().as_secs_f64().ceil().max(1.0);
                let name: &'static str = match previous.and_then(|table| table.plans.get(name)) {
                    Some(known) => known.name,
                    None => Box::leak(name.clone().into_boxed_str()),
                };
                // One statement per label set: a family lookup holds its lock to the end of the statement.
                let admitted = decisions
                    .get_or_create(&DecisionLabels {
                        plan: name,
                        outcome: "admitted",
                    })
                    .clone();
                let limited = decisions
                    .get_or_create(&DecisionLabels {
                        plan: name,
                        outcome: "limited",
                    })
                    .clone();
                let over_quota = decisions
                    .get_or_create(&DecisionLabels {
                        plan: name,
                        outcome: "quota_exceeded",
                    })
                    .clone();
                let plan = Plan {
                    name,
                    policy: HeaderValue::try_from(format!("{};w={window}", plan.capacity))
                        .expect("digits and ;w= are a valid header value"),
                    limit: HeaderValue::from(plan.capacity),
                    daily_quota: plan.daily_quota.map(std::num::NonZeroU64::get),
                    shape,
                    admitted,
                    limited,
                    over_quota,
                };
                (name.to_owned(), Arc::new(plan))
            })
            .collect();
        let tenants = config
            .tenants
            .iter()
            .map(|(tenant, plan)| (tenant.clone(), plans[plan].clone()))
            .collect();
        Self {
            default_plan: plans[&config.default_plan].clone(),
            plans,
            tenants,
        }
    }

    /// How long the slowest plan takes to fill an empty bucket.
    fn slowest_fill(&self) -> Duration {
        self.plans
            .values()
            .map(|plan| plan.shape.time_to_fill())
            .max()
            .unwrap_or_default()
    }
}

impl RateLimiter {
    /// The limiter of `bff` configured by `config`, recording into
    /// `telemetry`, counting daily quotas on the days of `clock`, believing
    /// `X-Forwarded-For` from `trusted_proxies` only. When `stores` has a
    /// Redis its buckets are there, checked by a heartbeat until `shutdown`, and it adds a
    /// `rate_limit_redis` gate to `readiness`: closed until Redis first
    /// answers (at most `startup_wait`), and under the `closed` outage
    /// policy whenever Redis does not.
    #[allow(clippy::too_many_arguments)] // each is a separate part of the process the limiter uses
    pub fn start(
        bff: &'static str,
        config: &RateLimitConfig,
        trusted_proxies: &[IpNet],
        telemetry: &Telemetry,
        readiness: &Readiness,
        shutdown: &Shutdown,
        stores: &SharedStores,
        clock: &Clock,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let decisions = Family::<DecisionLabels, Counter>::default();
        telemetry.register(
            "rate_limit_decisions",
            "Rate-limit decisions by plan and outcome (admitted, limited)",
            decisions.clone(),
        );
        let decision_latency = latency_histogram();
        telemetry.register(
            "rate_limit_decision_duration_seconds",
            "Time to decide whether a request may proceed",
            decision_latency.clone(),
        );
        let backend = Family::<ModeLabels, Gauge>::default();
        telemetry.register(
            "rate_limit_backend",
            "Where rate-limit decisions are made (1 for the mode in force): local, redis, open or closed",
            backend.clone(),
        );
        let shared = match stores.redis() {
            None => {
                backend.get_or_create(&ModeLabels { mode: "local" }).set(1);
                None
            }
            Some(store) => Some(SharedBuckets::start(
                bff,
                store.clone(),
                config,
                backend,
                RedisMetrics::register(telemetry),
                readiness.gate("rate_limit_redis"),
                shutdown,
            )),
        };

        let table = PlanTable::build(config, &decisions, None);
        let idle = (table.slowest_fill() + Duration::from_secs(1)).max(MIN_IDLE);
        Ok(Self {
            inner: Arc::new(Inner {
                bff,
                table: ArcSwap::from_pointee(table),
                decisions,
                idle,
                trusted_proxies: trusted_proxies.to_vec(),
                local: LocalBuckets::new(config.max_local_buckets, idle),
                shared,
                days: DailyCounters::new(config.max_local_buckets, clock.clone()),
                decision_latency,
            }),
        })
    }

    /// The plan of `identity`: its API key's, else its tenant's, else the default.
    fn plan_for(&self, identity: Option<&VerifiedIdentity>) -> Arc<Plan> {
        let table = self.inner.table.load();
        identity
            .and_then(|identity| {
                identity
                    .plan()
                    .and_then(|plan| table.plans.get(plan))
                    .or_else(|| table.tenants.get(&identity.tenant))
            })
            .unwrap_or(&table.default_plan)
            .clone()
    }

    /// Decides with the plans, tenants and default plan of `config` from
    /// now on (a configuration reload); requests already charged keep the
    /// plan they were charged on, and buckets keep their tokens. A plan
    /// slower to fill than the slowest one the limiter started with needs
    /// a restart: buckets in process are forgotten sooner than it refills.
    pub fn replace_plans(&self, config: &RateLimitConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let table = PlanTable::build(
            config,
            &self.inner.decisions,
            Some(&self.inner.table.load()),
        );
        if table.slowest_fill() + Duration::from_secs(1) > self.inner.idle {
            return Err(ConfigError::rule(
                "rate_limit.plans",
                format!(
                    "a plan now takes longer than {:?} to fill, longer than buckets are kept in process: that needs a restart",
                    self.inner.idle
                ),
            ));
        }
        self.inner.table.store(Arc::new(table));
        Ok(())
    }

    /// Whom a request is charged to: `identity` when verified, else the
    /// client address of a request from `peer` with `headers`.
    pub fn charge_for(
        &self,
        identity: Option<&VerifiedIdentity>,
        peer: Option<IpAddr>,
        headers: &HeaderMap,
    ) -> RateLimitCharge {
        let address = match identity {
            Some(_) => None,
            None => {
                peer.map(|peer| key::client_address(peer, headers, &self.inner.trusted_proxies))
            }
        };
        RateLimitCharge {
            limiter: self.clone(),
            key: key::bucket_key(self.inner.bff, identity, address).into(),
            plan: self.plan_for(identity),
        }
    }

    /// The layer charging every request of a route its cost: the one in
    /// `route_costs` for its template, else 1.
    pub fn layer(&self, route_costs: &'static [(&'static str, u32)]) -> RateLimitLayer {
        RateLimitLayer {
            limiter: self.clone(),
            route_costs,
        }
    }
}

/// Whom a request is charged to: its bucket and plan. The layer puts it in
/// the request's extensions, so a handler that learns the real cost of the
/// request can charge the rest (`Extension<RateLimitCharge>`).
#[derive(Debug, Clone)]
pub struct RateLimitCharge {
    limiter: RateLimiter,
    key: Arc<str>,
    plan: Arc<Plan>,
}

impl RateLimitCharge {
    /// Takes `cost` tokens from the bucket, or refuses with nothing taken.
    /// `None`: admitted without a decision, because Redis cannot decide and
    /// the outage policy is `open`.
    pub async fn charge(&self, cost: u32) -> Result<Option<Decision>, RateLimitError> {
        let inner = &self.limiter.inner;
        let started = Instant::now();
        let decided = match &inner.shared {
            Some(shared) => {
                shared
                    .decide(&self.key, &self.plan.shape, cost, &inner.local)
                    .await
            }
            None => Ok(Some(inner.local.decide(&self.key, &self.plan.shape, cost))),
        };
        inner
            .decision_latency
            .observe(started.elapsed().as_secs_f64());
        let decision = match decided? {
            Some(decision) => decision,
            None => {
                self.plan.admitted.inc();
                return Ok(None);
            }
        };
        if decision.allowed {
            self.plan.admitted.inc();
            Ok(Some(decision))
        } else {
            self.plan.limited.inc();
            Err(RateLimitError::Limited {
                plan: self.plan.name,
                decision,
                limit: self.plan.limit.clone(),
                policy: self.plan.policy.clone(),
            })
        }
    }
}

impl RateLimitCharge {
    /// Counts this request against the caller's daily quota, if its plan
    /// has one: the day so far, or a refusal once the quota is used up.
    /// `None`: no quota, or admitted uncounted (the `open` outage policy).
    pub async fn count_today(&self) -> Result<Option<QuotaUse>, RateLimitError> {
        let Some(limit) = self.plan.daily_quota else {
            return Ok(None);
        };
        let inner = &self.limiter.inner;
        let counted = match &inner.shared {
            Some(shared) => shared.count_today(&self.key, &inner.days).await?,
            None => Some(inner.days.count(&self.key)),
        };
        let Some(used) = counted else {
            return Ok(None);
        };
        let (_, reset) = inner.days.clock().utc_day();
        let used = QuotaUse { limit, used, reset };
        if used.allowed() {
            Ok(Some(used))
        } else {
            self.plan.over_quota.inc();
            Err(RateLimitError::QuotaExceeded {
                plan: self.plan.name,
                used,
            })
        }
    }
}

/// Charges every request before it reaches its handler; see the module docs.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limiter: RateLimiter,
    route_costs: &'static [(&'static str, u32)],
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`RateLimitLayer`].
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    layer: RateLimitLayer,
}

impl<S> Service<Request> for RateLimit<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let cost = request
            .extensions()
            .get::<MatchedPath>()
            .and_then(|route| {
                self.layer
                    .route_costs
                    .iter()
                    .find(|(template, _)| *template == route.as_str())
            })
            .map_or(DEFAULT_COST, |(_, cost)| *cost);
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip());
        let identity = request.extensions().get::<Arc<VerifiedIdentity>>();
        let charge =
            self.layer
                .limiter
                .charge_for(identity.map(Arc::as_ref), peer, request.headers());
        // The clone is ready only once polled; keep the polled one for this call.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        Box::pin(async move {
            let decision = match charge.charge(cost).await {
                Ok(decision) => decision,
                Err(refused) => return Ok(Error::from(refused).into_response()),
            };
            let plan = charge.plan.clone();
            let write_rate = |headers: &mut HeaderMap| {
                if let Some(decision) = &decision {
                    error::write_headers(headers, decision, &plan.limit, &plan.policy);
                }
            };
            let today = match charge.count_today().await {
                Ok(today) => today,
                Err(refused) => {
                    let mut response = Error::from(refused).into_response();
                    write_rate(response.headers_mut());
                    return Ok(response);
                }
            };
            request.extensions_mut().insert(charge);
            let mut response = inner.call(request).await?;
            write_rate(response.headers_mut());
            if let Some(today) = today {
                today.write_headers(response.headers_mut());
            }
            Ok(response)
        })
    }
}
