//! Opaque bearer tokens, verified by RFC 7662 introspection at the issuer
//! (`[auth.introspection]`).
//!
//! A bearer token that is not a JWT goes to the issuer's introspection
//! endpoint, authenticated with this BFF's client credentials (HTTP Basic).
//! An active answer's claims pass the checks a JWT's do (issuer, audience,
//! tenant, scopes, expiry); an inactive one is a 401 `AUTH_TOKEN_INACTIVE`.
//!
//! Introspecting on every request would make the issuer the platform's
//! ceiling, so answers are cached, bounded (`max_cache_entries`): an active
//! token for `cache_ttl`, never past its `exp`; an inactive one for
//! `negative_cache_ttl`. A revoked token is therefore refused within
//! `cache_ttl`. Concurrent requests with one uncached token make one call
//! (moka's per-key initialisation). Entries are keyed by an HMAC of the
//! token, keyed by the client secret, so no token is kept in clear. With
//! Redis (the process's shared stores) an instance that misses looks in
//! Redis before asking the issuer, and keeps the issuer's answer there for
//! the others, under the same HMAC and for as long: one introspection per
//! token and `cache_ttl` for the fleet. Each instance checks the claims
//! itself. A slow or absent Redis costs a call to the issuer, never an error.
//!
//! When the issuer does not answer within `timeout`, or answers an error,
//! opaque-token requests get 503 `AUTH_INTROSPECTION_UNAVAILABLE` with
//! `Retry-After`; JWT and API-key callers are not affected, and readiness
//! does not wait for introspection.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use moka::{Expiry, future::Cache};
use ring::hmac;
use serde::{Deserialize, Serialize};

use super::{
    error::AuthError,
    token::{self, ClaimPolicy},
};
use crate::{
    config::{ConfigError, HumanDuration, Secret, ServiceUrl, Validate},
    identity::VerifiedIdentity,
    stores::{RedisStore, SharedStores},
    tls::{ClientTls, WebConnector},
};

/// Largest introspection answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// What an opaque-token request is told to wait when the issuer cannot answer.
const RETRY_AFTER_SECS: u64 = 1;
/// Longest wait for Redis: past it the issuer is asked.
const SHARED_TIMEOUT: Duration = Duration::from_millis(100);
/// Prefix of the shared answers' keys.
const SHARED_PREFIX: &str = "introspection:";

/// Introspection of opaque tokens (`[auth.introspection]`); off by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntrospectionConfig {
    /// Whether a bearer token that is not a JWT is introspected (default
    /// `false`: it is refused as malformed).
    pub enabled: bool,
    /// The issuer's RFC 7662 endpoint (default the dev issuer's,
    /// `http://127.0.0.1:7000/introspect`).
    pub url: ServiceUrl,
    /// This BFF's client id at the issuer (default, empty: its audience,
    /// which is its name).
    pub client_id: String,
    /// Its client secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    /// A file holding its client secret (trailing newline ignored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    /// How long an introspection may take (default `1s`).
    pub timeout: HumanDuration,
    /// How long an active answer is kept, never past the token's `exp`
    /// (default `30s`): how long a revoked token may still be accepted.
    pub cache_ttl: HumanDuration,
    /// How long an inactive answer is kept (default `5s`).
    pub negative_cache_ttl: HumanDuration,
    /// Most answers kept (default 100,000).
    pub max_cache_entries: u64,
}

impl Default for IntrospectionConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            url: ServiceUrl::parse("http://127.0.0.1:7000/introspect").expect("a valid URL"),
            client_id: String::new(),
            client_secret: None,
            client_secret_file: None,
            timeout: HumanDuration::from_secs(1),
            cache_ttl: HumanDuration::from_secs(30),
            negative_cache_ttl: HumanDuration::from_secs(5),
            max_cache_entries: 100_000,
        }
    }
}

impl IntrospectionConfig {
    /// The client secret, from the setting or its file.
    fn secret(&self) -> Result<String, ConfigError> {
        Secret::from_setting_or_file(
            self.client_secret.as_ref(),
            self.client_secret_file.as_deref(),
            "auth.introspection.client_secret",
        )
        .map(|secret| secret.expose().to_owned())
    }
}

impl Validate for IntrospectionConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        if self.client_id.contains(':') {
            return Err(ConfigError::rule(
                "auth.introspection.client_id",
                "must not contain ':'",
            ));
        }
        if self.max_cache_entries == 0 {
            return Err(ConfigError::rule(
                "auth.introspection.max_cache_entries",
                "must be at least 1",
            ));
        }
        self.secret().map(drop)
    }
}

/// An introspection's outcome, as cached.
#[derive(Debug, Clone)]
enum Introspected {
    /// Active, with the verified caller, until `exp`.
    Active {
        identity: Arc<VerifiedIdentity>,
        expires_at: u64,
    },
    /// Inactive, or active with claims this BFF refuses (the reason).
    Refused(AuthError),
}

/// Each answer's lifetime: an active one `cache_ttl`, never past its `exp`.
struct Lifetimes {
    active: Duration,
    refused: Duration,
}

impl Lifetimes {
    /// How long `value` is kept.
    fn of(&self, value: &Introspected) -> Duration {
        match value {
            Introspected::Active { expires_at, .. } => {
                let left = expires_at.saturating_sub(unix_now());
                self.active.min(Duration::from_secs(left))
            }
            Introspected::Refused(_) => self.refused,
        }
    }
}

impl Expiry<[u8; 32], Introspected> for Lifetimes {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Introspected,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(self.of(value))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Verifies opaque tokens by introspection; see the module docs.
pub(crate) struct Introspector {
    uri: Uri,
    authorization: HeaderValue,
    client: Client<WebConnector, Full<Bytes>>,
    timeout: Duration,
    /// Keys the cache by the token's HMAC, never the token.
    hash_key: hmac::Key,
    cache: Cache<[u8; 32], Introspected>,
    issuer: String,
    audience: String,
    leeway: u64,
    /// How long answers are kept (in Redis too).
    lifetimes: Lifetimes,
    /// Where answers are shared with the other instances, when there is one.
    redis: Option<RedisStore>,
}

impl std::fmt::Debug for Introspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspector")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

impl Introspector {
    /// The introspector of `config`, checking claims as `policy` says,
    /// sharing answers through the Redis of `stores` when there is one.
    pub(crate) fn new(
        config: &IntrospectionConfig,
        policy: &ClaimPolicy<'_>,
        tls: &ClientTls,
        stores: &SharedStores,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let secret = config.secret()?;
        let client_id = match config.client_id.as_str() {
            "" => policy.audience,
            configured => configured,
        };
        let credentials = STANDARD.encode(format!("{client_id}:{secret}"));
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.timeout.get()));
        Ok(Self {
            uri: Uri::try_from(config.url.as_str()).expect("a checked URL is a valid URI"),
            authorization: HeaderValue::try_from(format!("Basic {credentials}")).map_err(|_| {
                ConfigError::rule("auth.introspection.client_secret", "is not header-safe")
            })?,
            client: Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .build(tls.connector(connector)),
            timeout: config.timeout.get(),
            hash_key: hmac::Key::new(
                hmac::HMAC_SHA256,
                format!("bff introspection cache\n{secret}").as_bytes(),
            ),
            cache: Cache::builder()
                .max_capacity(config.max_cache_entries)
                .expire_after(Lifetimes {
                    active: config.cache_ttl.get(),
                    refused: config.negative_cache_ttl.get(),
                })
                .build(),
            issuer: policy.issuer.to_owned(),
            audience: policy.audience.to_owned(),
            leeway: policy.leeway,
            lifetimes: Lifetimes {
                active: config.cache_ttl.get(),
                refused: config.negative_cache_ttl.get(),
            },
            redis: stores.redis().cloned(),
        })
    }

    /// The caller `token` stands for, from the cache or the issuer.
    pub(crate) async fn verify(&self, token: &str) -> Result<Arc<VerifiedIdentity>, AuthError> {
        let tag = hmac::sign(&self.hash_key, token.as_bytes());
        let mut key = [0; 32];
        key.copy_from_slice(tag.as_ref());
        let outcome = self
            .cache
            .try_get_with(key, self.answer(token, &key))
            .await
            .map_err(|error: Arc<AuthError>| (*error).clone())?;
        match outcome {
            Introspected::Active {
                identity,
                expires_at,
            } if unix_now() <= expires_at.saturating_add(self.leeway) => Ok(identity),
            Introspected::Active { .. } => Err(AuthError::Expired),
            Introspected::Refused(error) => Err(error),
        }
    }

    /// The answer for `token` (HMAC `key`): from Redis, else from the
    /// issuer (then kept in Redis for the other instances). An answer is an
    /// outcome (cached); a failure to get one is an error (not cached: the
    /// next request tries again).
    async fn answer(&self, token: &str, key: &[u8; 32]) -> Result<Introspected, AuthError> {
        let shared_key = format!(
            "{SHARED_PREFIX}{}",
            key.iter()
                .map(|byte| format!("{byte:02x}"))
                .collect::<String>()
        );
        if let Some(body) = self.shared(&shared_key).await {
            match self.evaluate(&body) {
                Ok(outcome) => return Ok(outcome),
                Err(_) => tracing::debug!("a shared introspection answer did not parse"),
            }
        }
        let body = self.introspect(token).await?;
        let outcome = self.evaluate(&body)?;
        self.share(shared_key, body, &outcome);
        Ok(outcome)
    }

    /// The answer another instance kept in Redis, if any (and Redis answers in time).
    async fn shared(&self, key: &str) -> Option<Bytes> {
        let mut connection = self.redis.as_ref()?.connection()?;
        let mut command = redis::cmd("GET");
        command.arg(key);
        let read = command.query_async::<Option<Vec<u8>>>(&mut connection);
        match tokio::time::timeout(SHARED_TIMEOUT, read).await {
            Ok(Ok(found)) => found.map(Bytes::from),
            Ok(Err(error)) => {
                tracing::debug!(%error, "shared introspection lookup failed");
                None
            }
            Err(_) => None,
        }
    }

    /// Keeps `body` in Redis under `key` for as long as `outcome` is kept
    /// here, in the background.
    fn share(&self, key: String, body: Bytes, outcome: &Introspected) {
        let Some(mut connection) = self.redis.as_ref().and_then(RedisStore::connection) else {
            return;
        };
        let lifetime = self.lifetimes.of(outcome).as_millis();
        if lifetime == 0 {
            return;
        }
        tokio::spawn(async move {
            let mut command = redis::cmd("SET");
            command
                .arg(key)
                .arg(body.as_ref())
                .arg("PX")
                .arg(lifetime as u64);
            let write = command.query_async::<()>(&mut connection);
            if !matches!(
                tokio::time::timeout(SHARED_TIMEOUT, write).await,
                Ok(Ok(()))
            ) {
                tracing::debug!("shared introspection write failed");
            }
        });
    }

    /// What an RFC 7662 answer means for this BFF: its claims checked.
    fn evaluate(&self, body: &[u8]) -> Result<Introspected, AuthError> {
        let policy = ClaimPolicy {
            issuer: &self.issuer,
            audience: &self.audience,
            leeway: self.leeway,
            signer: token::Signer::Issuer,
        };
        match token::introspected(&policy, body, unix_now()) {
            Ok(Some(claims)) => Ok(Introspected::Active {
                identity: Arc::new(claims.identity),
                expires_at: claims.validity.expires_at,
            }),
            Ok(None) => Ok(Introspected::Refused(AuthError::TokenInactive)),
            Err(AuthError::Malformed(reason)) => {
                tracing::warn!(url = %self.uri, reason, "token introspection failed: not an RFC 7662 answer");
                Err(AuthError::IntrospectionUnavailable {
                    retry_after_secs: RETRY_AFTER_SECS,
                })
            }
            Err(refused) => Ok(Introspected::Refused(refused)),
        }
    }

    /// One introspection call: the issuer's answer as it came.
    async fn introspect(&self, token: &str) -> Result<Bytes, AuthError> {
        let unavailable = |reason: String| {
            tracing::warn!(url = %self.uri, reason, "token introspection failed");
            AuthError::IntrospectionUnavailable {
                retry_after_secs: RETRY_AFTER_SECS,
            }
        };
        let form = Bytes::from(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("token", token)
                .append_pair("token_type_hint", "access_token")
                .finish(),
        );
        let answer = async {
            // A pooled connection the issuer closed while idle fails before
            // anything is sent; one more attempt takes a new connection.
            // (Introspection changes nothing, so asking twice is safe.)
            let mut attempts = 0;
            let response = loop {
                attempts += 1;
                let request = Request::builder()
                    .method(Method::POST)
                    .uri(self.uri.clone())
                    .header(header::AUTHORIZATION, self.authorization.clone())
                    .header(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/x-www-form-urlencoded"),
                    )
                    .header(header::ACCEPT, HeaderValue::from_static("application/json"))
                    .body(Full::new(form.clone()))
                    .map_err(|error| unavailable(error.to_string()))?;
                match self.client.request(request).await {
                    Ok(response) => break response,
                    Err(error) if attempts < 2 => {
                        tracing::debug!(%error, "token introspection: trying a new connection");
                    }
                    Err(error) => return Err(unavailable(error.to_string())),
                }
            };
            if response.status() != StatusCode::OK {
                return Err(unavailable(format!("answered {}", response.status())));
            }
            Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map(|body| body.to_bytes())
                .map_err(|error| unavailable(error.to_string()))
        };
        tokio::time::timeout(self.timeout, answer)
            .await
            .map_err(|_| unavailable(format!("no answer within {:?}", self.timeout)))?
    }
}
