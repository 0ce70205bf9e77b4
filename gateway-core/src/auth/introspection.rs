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
//! token, keyed by the client secret, so no token is kept in clear.
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
    tls::{ClientTls, WebConnector},
};

/// Largest introspection answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// What an opaque-token request is told to wait when the issuer cannot answer.
const RETRY_AFTER_SECS: u64 = 1;

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
        match (&self.client_secret, &self.client_secret_file) {
            (Some(secret), None) => Ok(secret.expose().to_owned()),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|text| text.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|error| {
                    ConfigError::rule(
                        "auth.introspection.client_secret_file",
                        format!("cannot read {}: {error}", path.display()),
                    )
                }),
            _ => Err(ConfigError::rule(
                "auth.introspection",
                "set exactly one of client_secret and client_secret_file",
            )),
        }
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

impl Expiry<[u8; 32], Introspected> for Lifetimes {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Introspected,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(match value {
            Introspected::Active { expires_at, .. } => {
                let left = expires_at.saturating_sub(unix_now());
                self.active.min(Duration::from_secs(left))
            }
            Introspected::Refused(_) => self.refused,
        })
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
}

impl std::fmt::Debug for Introspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspector")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

impl Introspector {
    /// The introspector of `config`, checking claims as `policy` says.
    pub(crate) fn new(
        config: &IntrospectionConfig,
        policy: &ClaimPolicy<'_>,
        tls: &ClientTls,
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
        })
    }

    /// The caller `token` stands for, from the cache or the issuer.
    pub(crate) async fn verify(&self, token: &str) -> Result<Arc<VerifiedIdentity>, AuthError> {
        let tag = hmac::sign(&self.hash_key, token.as_bytes());
        let mut key = [0; 32];
        key.copy_from_slice(tag.as_ref());
        let outcome = self
            .cache
            .try_get_with(key, self.introspect(token))
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

    /// One introspection call. An answer is an outcome (cached); a failure
    /// to get one is an error (not cached: the next request tries again).
    async fn introspect(&self, token: &str) -> Result<Introspected, AuthError> {
        let unavailable = |reason: String| {
            tracing::warn!(url = %self.uri, reason, "token introspection failed");
            AuthError::IntrospectionUnavailable {
                retry_after_secs: RETRY_AFTER_SECS,
            }
        };
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(header::AUTHORIZATION, self.authorization.clone())
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .header(header::ACCEPT, HeaderValue::from_static("application/json"))
            .body(Full::new(Bytes::from(form)))
            .map_err(|error| unavailable(error.to_string()))?;
        let answer = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|error| unavailable(error.to_string()))?;
            if response.status() != StatusCode::OK {
                return Err(unavailable(format!("answered {}", response.status())));
            }
            Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map(|body| body.to_bytes())
                .map_err(|error| unavailable(error.to_string()))
        };
        let body = tokio::time::timeout(self.timeout, answer)
            .await
            .map_err(|_| unavailable(format!("no answer within {:?}", self.timeout)))??;
        let policy = ClaimPolicy {
            issuer: &self.issuer,
            audience: &self.audience,
            leeway: self.leeway,
        };
        match token::introspected(&policy, &body, unix_now()) {
            Ok(Some(claims)) => Ok(Introspected::Active {
                identity: Arc::new(claims.identity),
                expires_at: claims.validity.expires_at,
            }),
            Ok(None) => Ok(Introspected::Refused(AuthError::TokenInactive)),
            Err(AuthError::Malformed(reason)) => Err(unavailable(format!(
                "the answer is not an RFC 7662 answer: {reason}"
            ))),
            Err(refused) => Ok(Introspected::Refused(refused)),
        }
    }
}
