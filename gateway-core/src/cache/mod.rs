//! The response cache: answers of downstream `GET`s kept in process, and
//! optionally in Redis for every instance, as the services' `Cache-Control`
//! allows.
//!
//! A BFF's [`ResponseCache`] is built once at start and shared by its
//! downstream clients; a client whose service has
//! `[downstream.<name>.cache] enabled` (the default) consults it before
//! every `GET` (see `downstream`'s client). What is stored, for whom and
//! for how long is the service's to say ([`policy`](ServiceCacheConfig)):
//!
//! - **tiers**: moka's in-process cache, bounded by bytes (`[cache]
//!   max_bytes`), in front of Redis when the process has one and `[cache]
//!   shared` is on (`[redis] url`, the process's one Redis
//!   connection). A miss here is looked up there before the service is
//!   called, and what is stored here is written there in the background.
//! - **who sees an entry**: an answer the service marks `public` (or
//!   `s-maxage`) is shared by every caller; any other is kept per tenant
//!   and subject, and the shared key holds only a marker saying so, so no
//!   tenant or user is ever served another's answer.
//! - **single flight**: concurrent misses of one key make one call; the
//!   others wait for it (moka's per-key compute lock) and are served what
//!   it stored. A waiter whose own call would have been made for another
//!   caller (the answer turned out to be per caller) calls again for its
//!   own. An answer that must not be kept leaves a marker for
//!   10 s, under which calls go straight to the service
//!   without waiting for each other.
//! - **stale answers**: within `stale-while-revalidate` a stale entry is
//!   served at once and refreshed in the background, once; within
//!   `stale-if-error` it is served when the call fails or the circuit is
//!   open. `Server-Timing` marks both (`desc="stale"`), and hits (`desc="hit"`).
//! - **invalidation**: answers carry the service's `Cache-Tag`s.
//!   `DELETE /cache/tags/{tag}` on the admin listener drops the tag's
//!   entries from this process, from Redis, and (through Redis pub/sub)
//!   from every other instance's in-process tier.

mod policy;
mod shared;

pub(crate) use policy::{Age, Storage};
pub use policy::{CACHE_TAG, ServiceCacheConfig};

use std::{
    fmt::Write,
    future::Future,
    num::NonZeroU64,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use axum::{
    Json, Router,
    extract::{Path, State},
    routing::delete,
};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, Uri};
use moka::{Expiry, future::Cache, ops::compute::Op};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use self::{policy::Lifetime, shared::SharedTier};
use crate::{
    error::ProblemDetails, identity::VerifiedIdentity, lifecycle::Shutdown,
    observability::Telemetry, stores::SharedStores,
};

/// The response cache's settings (`[cache]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Most bytes of answers kept in process, keys included (default 64 MiB).
    pub max_bytes: NonZeroU64,
    /// Whether instances share their answers through Redis, when the
    /// process has one (`[redis] url`); default `true`.
    pub shared: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_bytes: NonZeroU64::new(64 * 1024 * 1024).expect("non-zero"),
            shared: true,
        }
    }
}

/// A BFF's response cache; cheap to clone.
#[derive(Debug, Clone)]
pub struct ResponseCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    local: Cache<String, Cached>,
    shared: Option<SharedTier>,
    metrics: CacheMetrics,
}

/// What one key holds.
#[derive(Debug, Clone)]
pub(crate) enum Cached {
    /// A stored answer.
    Answer(Arc<Entry>),
    /// The answers of this path are kept per tenant and subject, until then.
    PerCaller { until: SystemTime },
    /// The service said its last answer must not be kept: calls go
    /// straight to it, without waiting for each other, until then
    /// ([`UNCACHEABLE_FOR`]). Never shared: each instance learns it.
    Uncacheable { until: SystemTime },
}

/// How long an answer that must not be kept sends the calls of its key
/// straight to the service, before the next answer is looked at again.
const UNCACHEABLE_FOR: Duration = Duration::from_secs(10);

/// What a lookup found.
#[derive(Debug)]
pub(crate) enum Found {
    /// A stored answer.
    Answer(Arc<Entry>),
    /// Nothing: fill the key.
    Nothing,
    /// A key whose answers are not kept: call the service, without filling it.
    Uncacheable,
}

impl Cached {
    /// How long it is still of use.
    fn remaining(&self) -> Duration {
        match self {
            Self::Answer(entry) => entry.remaining(),
            Self::PerCaller { until } | Self::Uncacheable { until } => {
                until.duration_since(SystemTime::now()).unwrap_or_default()
            }
        }
    }

    fn has_tag(&self, tag: &str) -> bool {
        matches!(self, Self::Answer(entry) if entry.tags.iter().any(|own| &**own == tag))
    }
}

/// A stored answer: the service's JSON body and what it said about it.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) body: Bytes,
    /// Wall-clock time, since entries travel between instances through Redis.
    stored_at: SystemTime,
    lifetime: Lifetime,
    tags: Box<[Box<str>]>,
    /// When this process made it or read it from Redis: orders it against
    /// waiting callers on this process's monotonic clock.
    arrived: Instant,
    /// Whether a background refresh of it is under way.
    refreshing: AtomicBool,
    /// When a call to replace it last failed: nanoseconds after `arrived`,
    /// plus one (0: never).
    failed_after: AtomicU64,
}

impl Entry {
    fn new(body: Bytes, lifetime: Lifetime, tags: Box<[Box<str>]>) -> Self {
        Self::stored_at(SystemTime::now(), body, lifetime, tags)
    }

    fn stored_at(
        stored_at: SystemTime,
        body: Bytes,
        lifetime: Lifetime,
        tags: Box<[Box<str>]>,
    ) -> Self {
        Self {
            body,
            stored_at,
            lifetime,
            tags,
            arrived: Instant::now(),
            refreshing: AtomicBool::new(false),
            failed_after: AtomicU64::new(0),
        }
    }

    fn elapsed(&self) -> Duration {
        SystemTime::now()
            .duration_since(self.stored_at)
            .unwrap_or_default()
    }

    /// What it may be used for now.
    pub(crate) fn age(&self) -> Age {
        self.lifetime.at(self.elapsed())
    }

    /// Whether it may be served instead of a failed call.
    pub(crate) fn serves_errors(&self) -> bool {
        self.elapsed()
            < self
                .lifetime
                .fresh
                .saturating_add(self.lifetime.stale_if_error)
    }

    /// Whether it arrived after `since`: the answer a call made while a
    /// caller waited got.
    fn arrived_since(&self, since: Instant) -> bool {
        self.arrived >= since
    }

    fn remaining(&self) -> Duration {
        self.lifetime.total().saturating_sub(self.elapsed())
    }

    /// True for the one caller that should refresh it in the background.
    pub(crate) fn start_refresh(&self) -> bool {
        !self.refreshing.swap(true, Ordering::AcqRel)
    }

    /// Whether a call to replace it failed at or after `since`.
    fn failed_since(&self, since: Instant) -> bool {
        match self.failed_after.load(Ordering::Acquire) {
            0 => false,
            after => self.arrived + Duration::from_nanos(after - 1) >= since,
        }
    }

    fn failed_now(&self) {
        let after = u64::try_from(self.arrived.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.failed_after.store(after + 1, Ordering::Release);
    }

    /// Lets a later caller try the refresh again.
    pub(crate) fn refresh_failed(&self) {
        self.refreshing.store(false, Ordering::Release);
    }
}

/// Where an answer is kept: its request URI, and, when it is kept per
/// caller, everything the service is told about the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CacheKey {
    text: String,
    per_caller: bool,
}

impl CacheKey {
    /// The key every caller of `uri` shares: the URI, written without the
    /// formatting machinery (this runs for every cached call).
    pub(crate) fn shared(uri: &Uri) -> Self {
        let scheme = uri.scheme_str().unwrap_or_default();
        let authority = uri.authority().map_or("", |authority| authority.as_str());
        let path = uri.path_and_query().map_or("/", |path| path.as_str());
        let mut text = String::with_capacity(scheme.len() + 3 + authority.len() + path.len());
        text.push_str(scheme);
        text.push_str("://");
        text.push_str(authority);
        text.push_str(path);
        Self {
            text,
            per_caller: false,
        }
    }

    /// The key of `caller`'s own answer of the same URI: every identity
    /// header the call carries (tenant, subject, scopes...), each value
    /// length-prefixed so no values can spell another caller's. Two
    /// callers the service cannot tell apart share it; any other two do not.
    fn for_caller(&self, caller: &VerifiedIdentity) -> Self {
        let mut text = self.text.clone();
        for (name, value) in caller.forwarded_headers() {
            let _ = write!(text, "#{name}={}:", value.len());
            text.push_str(&String::from_utf8_lossy(value.as_bytes()));
        }
        Self {
            text,
            per_caller: true,
        }
    }
}

/// What filling a key came to.
pub(crate) enum Filled<E> {
    /// Another call stored a fresh answer while this one waited.
    Stored(Arc<Entry>),
    /// This call fetched the answer (stored or not).
    Fetched(Bytes),
    /// The stale entry may be served instead of a failure: this call's
    /// (the error), or that of a call which failed while this one waited
    /// for it (no error: it was not called again).
    Stale(Arc<Entry>, Option<E>),
    /// The answers of the path turned out to be kept per caller: fill the
    /// caller's own key instead.
    PerCaller,
    /// The answers of the key are not kept: call the service, without
    /// waiting for other calls.
    Uncacheable,
}

/// Expires an entry when it is of no more use.
struct UsefulLife;

impl Expiry<String, Cached> for UsefulLife {
    fn expire_after_create(
        &self,
        _: &String,
        value: &Cached,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.remaining())
    }

    fn expire_after_update(
        &self,
        _: &String,
        value: &Cached,
        _: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.remaining())
    }
}

impl ResponseCache {
    /// The cache of one process: in process within `config.max_bytes`,
    /// and in the Redis of `stores` when there is one and `config.shared`.
    pub fn new(
        config: &CacheConfig,
        stores: &SharedStores,
        telemetry: &Telemetry,
        shutdown: &Shutdown,
    ) -> Self {
        let local = Cache::builder()
            .max_capacity(config.max_bytes.get())
            .weigher(|key: &String, value: &Cached| {
                let body = match value {
                    Cached::Answer(entry) => {
                        entry.body.len() + entry.tags.iter().map(|tag| tag.len()).sum::<usize>()
                    }
                    Cached::PerCaller { .. } | Cached::Uncacheable { .. } => 0,
                };
                u32::try_from(key.len() + body + 64).unwrap_or(u32::MAX)
            })
            .expire_after(UsefulLife)
            .support_invalidation_closures()
            .build();
        let metrics = CacheMetrics::register(telemetry);
        let shared = match (config.shared, stores.redis()) {
            (true, Some(redis)) => Some(SharedTier::new(redis.clone())),
            _ => None,
        };
        let cache = Self {
            inner: Arc::new(Inner {
                local,
                shared,
                metrics,
            }),
        };
        if let Some(shared) = &cache.inner.shared {
            let (local, all) = (cache.clone(), cache.clone());
            shared.listen(
                move |tag| local.invalidate_local(tag, "peer"),
                move || all.inner.local.invalidate_all(),
                shutdown.clone(),
            );
        }
        cache
    }

    /// What `key` holds, following a per-caller marker to `caller`'s own
    /// key; with the key the answer is, or would be, under.
    pub(crate) async fn lookup(
        &self,
        key: CacheKey,
        caller: &VerifiedIdentity,
    ) -> (CacheKey, Found) {
        let mut key = key;
        loop {
            match self.get(&key).await {
                Some(Cached::Answer(entry)) => return (key, Found::Answer(entry)),
                Some(Cached::Uncacheable { .. }) => return (key, Found::Uncacheable),
                Some(Cached::PerCaller { .. }) if !key.per_caller => key = key.for_caller(caller),
                _ => return (key, Found::Nothing),
            }
        }
    }

    /// What `key` holds here, or else in Redis (then kept here too).
    async fn get(&self, key: &CacheKey) -> Option<Cached> {
        if let Some(found) = self.inner.local.get(&key.text).await {
            return Some(found);
        }
        let found = self.inner.shared.as_ref()?.get(&key.text).await?;
        self.inner
            .local
            .insert(key.text.clone(), found.clone())
            .await;
        Some(found)
    }

    /// Fills `key` with the answer `fetch` gets, unless a concurrent call
    /// stores one first (single flight); what `config` allows is stored.
    /// When the fetch fails with an error `stale_on` accepts and a stale
    /// entry may still serve errors, that entry is the answer; so it is at
    /// once, without a call, when a call for it failed after `waiting_since`
    /// (a waiter does not call a failing service again, in turn, for
    /// what it could serve).
    ///
    /// Waiters behind a call that failed without a stale entry call again
    /// in turn: the error cannot be shared, and the breaker ends the run.
    pub(crate) async fn fill<E, Fut>(
        &self,
        key: &CacheKey,
        caller: &VerifiedIdentity,
        config: &ServiceCacheConfig,
        fetch: impl FnOnce() -> Fut,
        stale_on: impl Fn(&E) -> bool,
        waiting_since: Instant,
    ) -> Result<Filled<E>, E>
    where
        Fut: Future<Output = Result<(HeaderMap, Bytes), E>>,
        E: Send + Sync + 'static,
    {
        let mut filled = None;
        let filling = &mut filled;
        self.inner
            .local
            .entry(key.text.clone())
            .and_try_compute_with(|current| async move {
                let stale = match current.map(moka::Entry::into_value) {
                    Some(Cached::PerCaller { .. }) if !key.per_caller => {
                        *filling = Some(Filled::PerCaller);
                        return Ok(Op::Nop);
                    }
                    Some(Cached::Uncacheable { .. }) => {
                        *filling = Some(Filled::Uncacheable);
                        return Ok(Op::Nop);
                    }
                    // Fresh, or just fetched by the call this one waited for
                    // (an answer kept only to stand in for failures is never fresh).
                    Some(Cached::Answer(entry))
                        if entry.age() == Age::Fresh || entry.arrived_since(waiting_since) =>
                    {
                        *filling = Some(Filled::Stored(entry));
                        return Ok(Op::Nop);
                    }
                    Some(Cached::Answer(entry))
                        if entry.serves_errors() && entry.failed_since(waiting_since) =>
                    {
                        *filling = Some(Filled::Stale(entry, None));
                        return Ok(Op::Nop);
                    }
                    Some(Cached::Answer(entry)) => Some(entry),
                    _ => None,
                };
                match fetch().await {
                    Ok((headers, body)) => {
                        let op = self.keep(key, caller, config, &headers, &body).await;
                        *filling = Some(Filled::Fetched(body));
                        Ok(op)
                    }
                    Err(error) => match stale {
                        Some(entry) if entry.serves_errors() && stale_on(&error) => {
                            entry.failed_now();
                            *filling = Some(Filled::Stale(entry, Some(error)));
                            Ok(Op::Nop)
                        }
                        _ => Err(error),
                    },
                }
            })
            .await?;
        Ok(filled.expect("every branch of the fill decides"))
    }

    /// What becomes of `key` after the service answered `body` with
    /// `headers`: the answer, or a marker saying it is not kept.
    async fn keep(
        &self,
        key: &CacheKey,
        caller: &VerifiedIdentity,
        config: &ServiceCacheConfig,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Op<Cached> {
        let Storage::Keep {
            per_caller,
            lifetime,
        } = config.storage(headers)
        else {
            // Replacing any stale entry here and in Redis: the service no longer wants it kept.
            if let Some(shared) = &self.inner.shared {
                shared.remove(&key.text);
            }
            return Op::Put(Cached::Uncacheable {
                until: SystemTime::now() + UNCACHEABLE_FOR,
            });
        };
        let entry = Cached::Answer(Arc::new(Entry::new(
            body.clone(),
            lifetime,
            policy::tags(headers),
        )));
        if per_caller && !key.per_caller {
            let own = key.for_caller(caller);
            self.share(&own, &entry);
            self.inner.local.insert(own.text, entry).await;
            let marker = Cached::PerCaller {
                until: SystemTime::now() + lifetime.total(),
            };
            self.share(key, &marker);
            return Op::Put(marker);
        }
        self.share(key, &entry);
        Op::Put(entry)
    }

    /// Writes `cached` to Redis in the background, when there is a shared tier.
    fn share(&self, key: &CacheKey, cached: &Cached) {
        if let Some(shared) = &self.inner.shared {
            shared.put(&key.text, cached);
        }
    }

    /// Drops every entry tagged `tag` here, in Redis, and in every other
    /// instance's in-process tier.
    pub async fn invalidate(&self, tag: &str) -> Result<Invalidated, CacheError> {
        self.invalidate_local(tag, "admin");
        let Some(shared) = &self.inner.shared else {
            return Ok(Invalidated::default());
        };
        shared.invalidate(tag).await
    }

    fn invalidate_local(&self, tag: &str, origin: &'static str) {
        let tag: Box<str> = tag.into();
        self.inner
            .local
            .invalidate_entries_if(move |_, cached| cached.has_tag(&tag))
            .expect("the cache is built with invalidation closures");
        self.inner
            .metrics
            .invalidations
            .get_or_create(&OriginLabel { origin })
            .inc();
    }

    /// The counters of lookups of `service`'s answers, looked up once.
    pub(crate) fn lookups(&self, service: &'static str) -> Lookups {
        let counter = |result| {
            self.inner
                .metrics
                .lookups
                .get_or_create(&LookupLabels { service, result })
                .clone()
        };
        Lookups {
            hit: counter("hit"),
            stale: counter("stale"),
            miss: counter("miss"),
            pass: counter("pass"),
        }
    }

    /// The admin routes: `DELETE /cache/tags/{tag}`.
    pub fn admin_routes(&self) -> Router {
        Router::new()
            .route("/cache/tags/{tag}", delete(invalidate_tag))
            .with_state(self.clone())
    }
}

/// What an invalidation dropped beyond this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Invalidated {
    /// Entries removed from Redis.
    pub shared_entries: u64,
    /// Instances told to drop theirs (this one included), as Redis counted them.
    pub instances_notified: u64,
}

/// The shared tier could not be invalidated (the in-process tier was).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Redis is not connected or failed the call.
    #[error("the shared cache could not be invalidated: {0}")]
    Shared(String),
}

impl ProblemDetails for CacheError {
    fn status(&self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }

    fn code(&self) -> &'static str {
        "CACHE_SHARED_UNAVAILABLE"
    }

    fn client_detail(&self) -> String {
        "this instance's entries were dropped, but Redis could not be reached: the other instances keep theirs".to_owned()
    }
}

async fn invalidate_tag(
    State(cache): State<ResponseCache>,
    Path(tag): Path<String>,
) -> Result<Json<serde_json::Value>, crate::Error> {
    let invalidated = cache.invalidate(&tag).await?;
    tracing::info!(tag, ?invalidated, "cache tag invalidated");
    Ok(Json(json!({
        "tag": tag,
        "shared_entries": invalidated.shared_entries,
        "instances_notified": invalidated.instances_notified,
    })))
}

/// `cache_lookups_total` of one service, by result.
#[derive(Debug, Clone)]
pub(crate) struct Lookups {
    /// A fresh entry served.
    pub(crate) hit: Counter,
    /// A stale entry served (while refreshed, or instead of a failure).
    pub(crate) stale: Counter,
    /// A call made to fill an entry.
    pub(crate) miss: Counter,
    /// A call made for an answer known not to be kept.
    pub(crate) pass: Counter,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    service: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginLabel {
    origin: &'static str,
}

/// `cache_lookups_total{service,result}` and `cache_invalidations_total{origin}`.
#[derive(Debug, Clone, Default)]
struct CacheMetrics {
    lookups: Family<LookupLabels, Counter>,
    invalidations: Family<OriginLabel, Counter>,
}

impl CacheMetrics {
    fn register(telemetry: &Telemetry) -> Self {
        let metrics = Self::default();
        telemetry.register(
            "cache_lookups",
            "Downstream GETs looked up in the response cache, by service and result (hit, stale, miss, pass: an answer known not to be kept)",
            metrics.lookups.clone(),
        );
        telemetry.register(
            "cache_invalidations",
            "Tag invalidations applied to the in-process cache, by origin (admin: this instance's admin call; peer: another instance's, through Redis)",
            metrics.invalidations.clone(),
        );
        metrics
    }
}
