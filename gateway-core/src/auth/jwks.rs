//! The issuer's keys, fetched once and kept fresh, never fetched per request.
//!
//! - At start the JWKS is fetched with retries and exponential backoff; the
//!   readiness gate `jwks` stays closed (`/readyz` 503) until it succeeds,
//!   and opens for good then.
//! - It is refreshed on a schedule: the response's `Cache-Control: max-age`
//!   when present, else `refresh_interval`, never more often than
//!   `min_refetch_interval` and never so rarely that the keys could go stale.
//! - A token with an unknown `kid` triggers a refetch, at most once per
//!   `min_refetch_interval`, and concurrent misses share that one fetch
//!   (single flight): a flood of random `kid`s cannot hammer the issuer.
//! - When a refresh fails, the last good keys stay in use, up to `max_stale`
//!   after they were fetched; the failure is logged and counted, and the age
//!   of the key set is a metric. Past `max_stale` only the tokens that need
//!   these keys are refused (503 `AUTH_KEYS_UNAVAILABLE` with `Retry-After`);
//!   the process stays ready, since API keys and HS256 tokens still work and
//!   an identity-provider outage must not empty the whole fleet. Entering and
//!   leaving that state is logged once each and shown by `auth_jwks_stale`.
//! - Every fetch, whatever started it (start, schedule, failure backoff, an
//!   unknown `kid`), is at least `min_refetch_interval` after the previous one.
//! - Keys that disappear from the JWKS, or whose material changes under the
//!   same `kid`, stop verifying at the next refresh; the `removal_epoch`
//!   tells the token cache to forget what they verified.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Uri, header};
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder},
    metrics::{MetricType, TypedMetric, counter::Counter, family::Family, gauge::Gauge},
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{AuthError, keys::VerificationKey};
use crate::{
    config::{HumanDuration, ServiceUrl},
    error::causes,
    lifecycle::{ReadinessGate, Shutdown},
    observability::Telemetry,
    tls::{ClientTls, is_tls_error},
};

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// First retry delay after a failed fetch; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Where the issuer's keys come from (`[auth.jwks]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksConfig {
    /// Whether RS256/ES256 tokens are accepted at all (default `true`); with
    /// `false` nothing is fetched and readiness does not wait for the JWKS.
    #[serde(default = "JwksConfig::default_enabled")]
    pub enabled: bool,
    /// The JWKS URL (default `http://127.0.0.1:7000/.well-known/jwks.json`, the dev issuer).
    #[serde(default = "JwksConfig::default_url")]
    pub url: ServiceUrl,
    /// Refresh period when the JWKS sends no `max-age` (default `5m`).
    #[serde(default = "JwksConfig::default_refresh_interval")]
    pub refresh_interval: HumanDuration,
    /// Fetches never happen more often than this, whatever the trigger (default `30s`).
    #[serde(default = "JwksConfig::default_min_refetch_interval")]
    pub min_refetch_interval: HumanDuration,
    /// How long the last good keys are used when refreshes fail (default `1h`).
    #[serde(default = "JwksConfig::default_max_stale")]
    pub max_stale: HumanDuration,
    /// Timeout of one fetch (default `2s`).
    #[serde(default = "JwksConfig::default_fetch_timeout")]
    pub fetch_timeout: HumanDuration,
}

impl Default for JwksConfig {
    fn default() -> Self {
        Self::at(Self::default_url())
    }
}

impl JwksConfig {
    const fn default_enabled() -> bool {
        true
    }
    fn default_url() -> ServiceUrl {
        ServiceUrl::parse("http://127.0.0.1:7000/.well-known/jwks.json").expect("a valid URL")
    }
    const fn default_refresh_interval() -> HumanDuration {
        HumanDuration::from_secs(300)
    }
    const fn default_min_refetch_interval() -> HumanDuration {
        HumanDuration::from_secs(30)
    }
    const fn default_max_stale() -> HumanDuration {
        HumanDuration::from_secs(3600)
    }
    const fn default_fetch_timeout() -> HumanDuration {
        HumanDuration::from_secs(2)
    }

    /// The JWKS at `url` with default timings.
    pub fn at(url: ServiceUrl) -> Self {
        Self {
            enabled: true,
            url,
            refresh_interval: Self::default_refresh_interval(),
            min_refetch_interval: Self::default_min_refetch_interval(),
            max_stale: Self::default_max_stale(),
            fetch_timeout: Self::default_fetch_timeout(),
        }
    }
}

/// One successful fetch.
#[derive(Debug)]
struct KeySet {
    keys: HashMap<String, Arc<VerificationKey>>,
    /// When it was fetched; `None` until the first fetch succeeds.
    fetched_at: Option<Instant>,
}

/// What started a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FetchLabels {
    trigger: &'static str,
    outcome: &'static str,
}

/// Age of the key set in seconds, computed when scraped (`NaN` before the first fetch).
#[derive(Clone)]
struct KeySetAge(Arc<RwLock<Arc<KeySet>>>);

impl fmt::Debug for KeySetAge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeySetAge")
    }
}

impl TypedMetric for KeySetAge {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for KeySetAge {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), fmt::Error> {
        let set = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let age = set
            .fetched_at
            .map_or(f64::NAN, |at| at.elapsed().as_secs_f64());
        encoder.encode_gauge(&age)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

#[derive(Debug, Clone, Default)]
struct JwksMetrics {
    fetches: Family<FetchLabels, Counter>,
    refresh_failures: Counter,
    keys: Gauge,
    stale: Gauge,
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The chain of causes is in the text: "client error (Connect)" alone
    /// would not say that the certificate was not trusted.
    #[error("request failed: {}", causes(.0.as_ref()))]
    Transport(Box<dyn std::error::Error + Send + Sync>),
    #[error("answered {0}")]
    Status(http::StatusCode),
    #[error("larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("not a JWKS: {0}")]
    Invalid(#[from] serde_json::Error),
    #[error("no usable signing key")]
    NoUsableKey,
}

/// The cached JWKS; see the module docs.
pub(crate) struct Jwks {
    config: JwksConfig,
    /// `config.url`, parsed once.
    uri: Uri,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    current: Arc<RwLock<Arc<KeySet>>>,
    /// Bumped by every successful fetch.
    generation: AtomicU64,
    /// Bumped by every fetch that withdrew a key or changed its material.
    removal_epoch: AtomicU64,
    /// Whether the keys were loaded once and are now older than `max_stale`.
    stale: AtomicBool,
    /// When the last fetch started; its lock makes fetches single-flight.
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
    gate: ReadinessGate,
    metrics: JwksMetrics,
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.config.url)
            .finish_non_exhaustive()
    }
}

/// The result of looking a `kid` up in the current keys.
enum Lookup {
    Found(Arc<VerificationKey>),
    Unknown,
    Unavailable,
}

impl Jwks {
    /// Starts keeping the JWKS of `config`: the first fetch and the refresh
    /// schedule run in a background task until `shutdown` triggers.
    pub(crate) fn start(
        config: JwksConfig,
        tls: &ClientTls,
        telemetry: &Telemetry,
        gate: ReadinessGate,
        shutdown: &Shutdown,
    ) -> Arc<Self> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.fetch_timeout.get()));
        // Redirects are not followed: the configured URL is the one trusted.
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(1)
            .build(tls.connector(connector));
        let current = Arc::new(RwLock::new(Arc::new(KeySet {
            keys: HashMap::new(),
            fetched_at: None,
        })));
        let metrics = JwksMetrics::default();
        telemetry.register(
            "auth_jwks_fetches",
            "JWKS fetches by trigger and outcome",
            metrics.fetches.clone(),
        );
        telemetry.register(
            "auth_jwks_refresh_failures",
            "JWKS fetches that failed (the last good keys stay in use)",
            metrics.refresh_failures.clone(),
        );
        telemetry.register(
            "auth_jwks_keys",
            "Usable keys in the current JWKS",
            metrics.keys.clone(),
        );
        telemetry.register(
            "auth_jwks_stale",
            "1 while the keys are older than max_stale and JWKS-signed tokens are refused",
            metrics.stale.clone(),
        );
        telemetry.register(
            "auth_jwks_age_seconds",
            "Seconds since the keys in use were fetched",
            KeySetAge(current.clone()),
        );
        let uri = Uri::try_from(config.url.as_str()).expect("a checked URL is a valid URI");
        let jwks = Arc::new(Self {
            config,
            uri,
            client,
            current,
            generation: AtomicU64::new(0),
            removal_epoch: AtomicU64::new(0),
            stale: AtomicBool::new(false),
            last_attempt: tokio::sync::Mutex::new(None),
            gate,
            metrics,
        });
        tokio::spawn(jwks.clone().keep_fresh(shutdown.clone()));
        jwks
    }

    /// Bumped whenever a key left the JWKS; cached verifications from an
    /// older epoch are not trusted.
    pub(crate) fn removal_epoch(&self) -> u64 {
        self.removal_epoch.load(Ordering::Acquire)
    }

    fn snapshot(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether keys are loaded and younger than `max_stale`.
    fn is_fresh(set: &KeySet, max_stale: Duration) -> bool {
        set.fetched_at.is_some_and(|at| at.elapsed() <= max_stale)
    }

    fn lookup(&self, kid: &str) -> Lookup {
        let set = self.snapshot();
        let fresh = Self::is_fresh(&set, self.config.max_stale.get());
        self.note_staleness(&set, fresh);
        if !fresh {
            return Lookup::Unavailable;
        }
        set.keys
            .get(kid)
            .cloned()
            .map_or(Lookup::Unknown, Lookup::Found)
    }

    /// Logs and shows (once per change) whether loaded keys went stale.
    fn note_staleness(&self, set: &KeySet, fresh: bool) {
        let stale = set.fetched_at.is_some() && !fresh;
        // A load first: the swap's write happens only on a change.
        if self.stale.load(Ordering::Acquire) == stale
            || self.stale.swap(stale, Ordering::AcqRel) == stale
        {
            return;
        }
        self.metrics.stale.set(i64::from(stale));
        if stale {
            // Verifications cached under these keys are not trusted either.
            self.removal_epoch.fetch_add(1, Ordering::AcqRel);
            tracing::error!(
                url = %self.config.url,
                max_stale = %self.config.max_stale,
                "the JWKS could not be refreshed for longer than max_stale: tokens signed with its keys are refused (503 AUTH_KEYS_UNAVAILABLE) until it answers; API keys and HS256 tokens still work"
            );
        } else {
            tracing::info!(url = %self.config.url, "the JWKS is fresh again: its tokens are accepted");
        }
    }

    /// The key `kid` if it is loaded and fresh once any fetch under way
    /// (the first one, at start) has finished; never starts a fetch. Fails
    /// as [`Self::key`] does, so the two paths answer alike.
    pub(crate) async fn loaded_key(&self, kid: &str) -> Result<Arc<VerificationKey>, AuthError> {
        drop(self.last_attempt.lock().await);
        match self.lookup(kid) {
            Lookup::Found(key) => Ok(key),
            Lookup::Unknown => Err(AuthError::UnknownKey),
            Lookup::Unavailable => Err(self.unavailable()),
        }
    }

    /// The answer to a token that needs keys that are not there (yet).
    fn unavailable(&self) -> AuthError {
        AuthError::KeysUnavailable {
            retry_after_secs: self.config.min_refetch_interval.get().as_secs().max(1),
        }
    }

    /// The key `kid`, refetching the JWKS (rate-limited, single-flight) when
    /// it is unknown.
    pub(crate) async fn key(&self, kid: &str) -> Result<Arc<VerificationKey>, AuthError> {
        if let Lookup::Found(key) = self.lookup(kid) {
            return Ok(key);
        }
        let generation = self.generation.load(Ordering::Acquire);
        {
            let mut last_attempt = self.last_attempt.lock().await;
            // Someone else's fetch completed while we waited: use its result.
            let refreshed_meanwhile = self.generation.load(Ordering::Acquire) != generation;
            let due = last_attempt
                .is_none_or(|at| at.elapsed() >= self.config.min_refetch_interval.get());
            if !refreshed_meanwhile && due {
                *last_attempt = Some(Instant::now());
                // A failure is logged and counted inside; the lookup below decides.
                let _ = self.refresh("unknown_kid").await;
            }
        }
        match self.lookup(kid) {
            Lookup::Found(key) => Ok(key),
            Lookup::Unknown => Err(AuthError::UnknownKey),
            Lookup::Unavailable => Err(self.unavailable()),
        }
    }

    /// The background task: first fetch with backoff, then the schedule.
    async fn keep_fresh(self: Arc<Self>, shutdown: Shutdown) {
        let mut backoff = FIRST_BACKOFF;
        let mut loaded = false;
        loop {
            // Whatever fetched last (an unknown `kid`, say), wait out the interval.
            let since_last = self.last_attempt.lock().await.map(|at| at.elapsed());
            if let Some(wait) = since_last
                .and_then(|elapsed| self.config.min_refetch_interval.get().checked_sub(elapsed))
                .filter(|wait| !wait.is_zero())
            {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown.triggered() => return,
                }
            }
            let outcome = {
                let mut last_attempt = self.last_attempt.lock().await;
                *last_attempt = Some(Instant::now());
                self.refresh(if loaded { "schedule" } else { "startup" })
                    .await
            };
            let delay = match outcome {
                Ok(max_age) => {
                    loaded = true;
                    backoff = FIRST_BACKOFF;
                    refresh_delay(&self.config, max_age)
                }
                Err(()) => {
                    let delay = backoff.max(self.config.min_refetch_interval.get());
                    backoff = (backoff * 2)
                        .min(MAX_BACKOFF)
                        .min(self.config.refresh_interval.get());
                    delay
                }
            };
            let set = self.snapshot();
            self.note_staleness(&set, Self::is_fresh(&set, self.config.max_stale.get()));
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.triggered() => return,
            }
        }
    }

    /// Fetches and installs the JWKS; `Ok` carries its `max-age`.
    async fn refresh(&self, trigger: &'static str) -> Result<Option<Duration>, ()> {
        match self.fetch().await {
            Ok((keys, max_age)) => {
                self.metrics
                    .fetches
                    .get_or_create(&FetchLabels {
                        trigger,
                        outcome: "ok",
                    })
                    .inc();
                self.install(keys);
                Ok(max_age)
            }
            Err(error) => {
                self.metrics
                    .fetches
                    .get_or_create(&FetchLabels {
                        trigger,
                        outcome: error.outcome(),
                    })
                    .inc();
                self.metrics.refresh_failures.inc();
                match self.snapshot().fetched_at {
                    Some(fetched_at) => tracing::warn!(
                        %error,
                        url = %self.config.url,
                        trigger,
                        keys_age = ?fetched_at.elapsed(),
                        "JWKS fetch failed; keeping the last good keys"
                    ),
                    None => tracing::error!(
                        %error,
                        url = %self.config.url,
                        trigger,
                        "JWKS fetch failed and no keys were ever loaded: not ready, JWKS-signed tokens refused"
                    ),
                }
                Err(())
            }
        }
    }

    fn install(&self, keys: HashMap<String, Arc<VerificationKey>>) {
        let count = keys.len();
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let withdrew = current
            .keys
            .iter()
            .any(|(kid, old)| keys.get(kid).is_none_or(|new| !new.same_material(old)));
        *current = Arc::new(KeySet {
            keys,
            fetched_at: Some(Instant::now()),
        });
        drop(current);
        if withdrew {
            self.removal_epoch.fetch_add(1, Ordering::AcqRel);
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.metrics.keys.set(count as i64);
        self.gate.set(true);
        self.note_staleness(&self.snapshot(), true);
    }

    async fn fetch(
        &self,
    ) -> Result<(HashMap<String, Arc<VerificationKey>>, Option<Duration>), FetchError> {
        let timeout = self.config.fetch_timeout.get();
        tokio::time::timeout(timeout, self.fetch_within_timeout())
            .await
            .unwrap_or(Err(FetchError::Timeout(timeout)))
    }

    async fn fetch_within_timeout(
        &self,
    ) -> Result<(HashMap<String, Arc<VerificationKey>>, Option<Duration>), FetchError> {
        let request = http::Request::get(self.uri.clone())
            .header(header::ACCEPT, "application/json")
            .body(Empty::new())
            .expect("a GET of a parsed URI is a valid request");
        let response = self
            .client
            .request(request)
            .await
            .map_err(|error| FetchError::Transport(error.into()))?;
        if response.status() != http::StatusCode::OK {
            return Err(FetchError::Status(response.status()));
        }
        let max_age = response
            .headers()
            .get(header::CACHE_CONTROL)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_max_age);
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|error| {
                if error.is::<LengthLimitError>() {
                    FetchError::TooLarge
                } else {
                    FetchError::Transport(error)
                }
            })?
            .to_bytes();
        let keys = super::keys::parse_jwks(&body)?;
        if keys.is_empty() {
            return Err(FetchError::NoUsableKey);
        }
        Ok((keys, max_age))
    }
}

impl FetchError {
    /// The `outcome` label of a failed fetch.
    fn outcome(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Transport(error) if is_tls_error(error.as_ref()) => "tls_error",
            Self::Transport(_) => "unreachable",
            Self::Status(_) => "bad_status",
            Self::TooLarge | Self::Invalid(_) | Self::NoUsableKey => "invalid",
        }
    }
}

/// When to refresh after a success: the JWKS's own `max-age` if it sent one,
/// bounded so the keys are never fetched more often than allowed nor left to
/// go stale.
fn refresh_delay(config: &JwksConfig, max_age: Option<Duration>) -> Duration {
    let floor = config.min_refetch_interval.get();
    let ceiling = (config.max_stale.get() / 2).max(floor);
    max_age
        .unwrap_or(config.refresh_interval.get())
        .clamp(floor, ceiling)
}

/// `max-age` of a `Cache-Control` value; `no-cache`/`no-store` count as none.
fn parse_max_age(cache_control: &str) -> Option<Duration> {
    let mut max_age = None;
    for directive in cache_control.split(',').map(str::trim) {
        if directive.eq_ignore_ascii_case("no-cache") || directive.eq_ignore_ascii_case("no-store")
        {
            return None;
        }
        if let Some(seconds) = directive
            .strip_prefix("max-age=")
            .and_then(|value| value.parse::<u64>().ok())
        {
            max_age = Some(Duration::from_secs(seconds));
        }
    }
    max_age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_follow_max_age_within_bounds() {
        let config = JwksConfig::at(ServiceUrl::parse("http://issuer.test/jwks").expect("url"));
        assert_eq!(
            refresh_delay(&config, None),
            Duration::from_secs(300),
            "the configured interval"
        );
        assert_eq!(
            refresh_delay(&config, Some(Duration::from_secs(120))),
            Duration::from_secs(120)
        );
        assert_eq!(
            refresh_delay(&config, Some(Duration::ZERO)),
            Duration::from_secs(30),
            "never faster than allowed"
        );
        assert_eq!(
            refresh_delay(&config, Some(Duration::from_secs(86_400))),
            Duration::from_secs(1800),
            "never stale"
        );
    }

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            parse_max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(parse_max_age("max-age=0"), Some(Duration::ZERO));
        assert_eq!(parse_max_age("no-cache, max-age=300"), None);
        assert_eq!(parse_max_age("public"), None);
        assert_eq!(parse_max_age("max-age=abc"), None);
    }
}
