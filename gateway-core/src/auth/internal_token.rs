//! Signed identity for services: a short-lived JWT in which the gateway
//! states the caller it verified.
//!
//! Services believe the `X-Auth-*` headers because of where a call comes
//! from. With `[auth.internal_token] enabled`, every downstream call also
//! carries `X-Auth-Token`, an ES256 JWT signed by the gateway, so that a
//! service can verify the previous hop instead of trusting the network:
//!
//! - claims: `iss` (`issuer`), `aud` (`audience`), `sub`, `tid`, `scope`,
//!   `azp` (the client, when known), `auth_method` (`jwt`, `api_key` or
//!   `opaque`: how the caller authenticated), `request_id`, `iat` and `exp`
//!   (`iat` + `ttl`);
//! - minting is an ECDSA signature (tens of microseconds), so a token is
//!   minted once per caller (subject, tenant, scopes, client and method,
//!   whatever credential carried them) and reused for the first five sixths
//!   of its `ttl`; each token therefore reaches a service with at least a
//!   sixth of its life left, and at steady state a downstream call costs a
//!   cache lookup. `request_id` is the id of the request that minted it
//!   (which request made the gateway vouch for this caller); each call's own
//!   id travels in `X-Request-Id` as before;
//! - the cache holds at most `max_cached_callers` tokens, least recently
//!   used out first;
//! - the public keys are served on the admin listener at
//!   `/.well-known/jwks.json`: the signing key and any `published_key_files`
//!   (for rotation: docs/configuration.md);
//! - it never reaches a client: `X-Auth-Token` is an identity header, which
//!   the server strips from every inbound request, and pass-through routes
//!   drop identity headers from the answers they relay.
//!
//! [`GatewayTokenVerifier`] is the service side: the JWKS kept fresh (never
//! fetched per request), the token parsed and checked as strictly as a
//! client's, with `auth_method` read from the token.

use std::{path::PathBuf, sync::Arc, time::Duration};

use axum::{Router, response::IntoResponse, routing::get};
use bytes::Bytes;
use http::{HeaderValue, header};
use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};
use shared_schema::{AuthMethod, Identity};

use super::{
    AuthError,
    cache::TokenCache,
    es256::{Es256Key, Es256KeyError},
    jwks::{Jwks, JwksConfig},
    token::Signer,
    verifier::{JwtVerifier, unix_now},
};
use crate::{
    config::{ConfigError, HumanDuration, Validate},
    identity::VerifiedIdentity,
    lifecycle::{Readiness, Shutdown},
    observability::Telemetry,
    tls::ClientTls,
};

/// Where the admin listener serves the gateway's public keys.
pub const GATEWAY_JWKS_PATH: &str = "/.well-known/jwks.json";

/// Shortest `ttl` accepted: a token must outlive the calls it is sent with.
const MIN_TTL: Duration = Duration::from_secs(6);
/// Longest `ttl` accepted: the token is a short-lived statement.
const MAX_TTL: Duration = Duration::from_secs(3600);

/// The internal token (`[auth.internal_token]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InternalTokenConfig {
    /// Whether downstream calls carry `X-Auth-Token` (default `false`).
    #[serde(default)]
    pub enabled: bool,
    /// The signing key, a PEM PKCS#8 P-256 key. Every instance of a fleet
    /// needs the same one; without it a key is generated at start (one
    /// process only) and a warning logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Keys published in the JWKS beside the signing key, not signed with:
    /// the next key before a rotation, the previous one after it.
    #[serde(default)]
    pub published_key_files: Vec<PathBuf>,
    /// Lifetime of a token (default `60s`, 6s to 1h).
    #[serde(default = "InternalTokenConfig::default_ttl")]
    pub ttl: HumanDuration,
    /// The `aud` services check (default `internal`).
    #[serde(default = "InternalTokenConfig::default_audience")]
    pub audience: String,
    /// The `iss` services check (default `bff-gateway`).
    #[serde(default = "InternalTokenConfig::default_issuer")]
    pub issuer: String,
    /// Most callers whose token is kept (default 100000).
    #[serde(default = "InternalTokenConfig::default_max_cached_callers")]
    pub max_cached_callers: u64,
}

impl Default for InternalTokenConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            key_file: None,
            published_key_files: Vec::new(),
            ttl: Self::default_ttl(),
            audience: Self::default_audience(),
            issuer: Self::default_issuer(),
            max_cached_callers: Self::default_max_cached_callers(),
        }
    }
}

impl InternalTokenConfig {
    const fn default_ttl() -> HumanDuration {
        HumanDuration::from_secs(60)
    }
    fn default_audience() -> String {
        "internal".to_owned()
    }
    fn default_issuer() -> String {
        "bff-gateway".to_owned()
    }
    const fn default_max_cached_callers() -> u64 {
        100_000
    }

    /// How long one token is reused: five sixths of its life.
    fn reuse_window(&self) -> Duration {
        self.ttl.get() * 5 / 6
    }
}

impl Validate for InternalTokenConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        if !(MIN_TTL..=MAX_TTL).contains(&self.ttl.get()) {
            return Err(ConfigError::rule(
                "auth.internal_token.ttl",
                "must be from 6s to 1h",
            ));
        }
        for (value, key) in [
            (&self.audience, "auth.internal_token.audience"),
            (&self.issuer, "auth.internal_token.issuer"),
        ] {
            if value.is_empty() {
                return Err(ConfigError::rule(key, "must not be empty"));
            }
        }
        if self.max_cached_callers == 0 {
            return Err(ConfigError::rule(
                "auth.internal_token.max_cached_callers",
                "must be at least 1",
            ));
        }
        self.published_keys().map(drop)?;
        if let Some(path) = &self.key_file {
            Es256Key::load(path).map_err(|error| key_error("key_file", &error))?;
        }
        Ok(())
    }
}

impl InternalTokenConfig {
    fn published_keys(&self) -> Result<Vec<Es256Key>, ConfigError> {
        self.published_key_files
            .iter()
            .map(|path| {
                Es256Key::load(path).map_err(|error| key_error("published_key_files", &error))
            })
            .collect()
    }
}

fn key_error(key: &str, error: &Es256KeyError) -> ConfigError {
    ConfigError::rule(&format!("auth.internal_token.{key}"), error.to_string())
}

/// The claims of an internal token.
#[derive(Debug, Serialize)]
struct InternalClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    tid: &'a str,
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    azp: Option<&'a str>,
    auth_method: AuthMethod,
    request_id: &'a str,
    iat: u64,
    exp: u64,
}

/// Mints internal tokens and keeps one per caller; see the module docs.
pub struct InternalTokens {
    key: Es256Key,
    issuer: String,
    audience: String,
    ttl_secs: u64,
    /// The JWKS document the admin listener serves.
    jwks: Bytes,
    minted: moka::sync::Cache<Identity, HeaderValue>,
    mints: Counter,
}

impl std::fmt::Debug for InternalTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalTokens")
            .field("kid", &self.key.kid())
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl InternalTokens {
    /// The minter `config` describes (enabled or not: the caller decides),
    /// its mints counted in `auth_internal_tokens_minted_total`.
    pub fn new(
        config: &InternalTokenConfig,
        telemetry: &Telemetry,
    ) -> Result<Self, InternalTokenError> {
        let key = match &config.key_file {
            Some(path) => Es256Key::load(path)?,
            None => {
                let key = Es256Key::generate()?;
                tracing::warn!(
                    kid = key.kid(),
                    "auth.internal_token.key_file is not set: signing internal tokens with a key generated at start, which only this process knows; give every instance of a fleet the same key_file"
                );
                key
            }
        };
        let published = config
            .published_key_files
            .iter()
            .map(|path| Es256Key::load(path))
            .collect::<Result<Vec<_>, _>>()?;
        let mut keys = vec![key.jwk().clone()];
        keys.extend(
            published
                .iter()
                .filter(|other| other.kid() != key.kid())
                .map(|other| other.jwk().clone()),
        );
        let jwks = Bytes::from(serde_json::json!({ "keys": keys }).to_string());
        let mints = Counter::default();
        telemetry.register(
            "auth_internal_tokens_minted",
            "Internal tokens signed for services (once per caller per reuse window)",
            mints.clone(),
        );
        Ok(Self {
            key,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            ttl_secs: config.ttl.get().as_secs(),
            jwks,
            minted: moka::sync::Cache::builder()
                .max_capacity(config.max_cached_callers)
                .time_to_live(config.reuse_window())
                .build(),
            mints,
        })
    }

    /// The `X-Auth-Token` of a call made for `caller` during the request
    /// `request_id`: the caller's current token, minted now if it has none.
    pub fn header_for(&self, caller: &VerifiedIdentity, request_id: &HeaderValue) -> HeaderValue {
        // Concurrent first calls of one caller wait for one mint.
        self.minted
            .get_with_by_ref(caller.identity(), || self.mint(caller, request_id))
    }

    fn mint(&self, caller: &VerifiedIdentity, request_id: &HeaderValue) -> HeaderValue {
        let now = unix_now();
        let claims = InternalClaims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: &caller.subject,
            tid: &caller.tenant,
            scope: caller.scopes.join(" "),
            azp: caller.client.as_deref(),
            auth_method: caller.auth_method,
            request_id: request_id.to_str().unwrap_or_default(),
            iat: now,
            exp: now + self.ttl_secs,
        };
        // Serialising these claims cannot fail, nor can signing with a key
        // ring accepted at start (short of the random source failing).
        let token = self
            .key
            .sign(&claims)
            .expect("a checked P-256 key signs any claims");
        self.mints.inc();
        HeaderValue::try_from(token).expect("a compact JWT is base64url and dots")
    }

    /// The admin route serving the public keys at [`GATEWAY_JWKS_PATH`].
    pub fn admin_routes(self: &Arc<Self>) -> Router {
        let jwks = self.jwks.clone();
        Router::new().route(
            GATEWAY_JWKS_PATH,
            get(move || async move {
                (
                    [
                        (header::CONTENT_TYPE, "application/jwk-set+json"),
                        (header::CACHE_CONTROL, "max-age=300"),
                    ],
                    jwks,
                )
                    .into_response()
            }),
        )
    }
}

/// The internal-token signer could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("auth.internal_token: {0}")]
pub struct InternalTokenError(#[from] Es256KeyError);

/// How a service verifies internal tokens.
#[derive(Debug, Clone)]
pub struct GatewayTokenPolicy {
    /// The gateway's JWKS (its admin listener's [`GATEWAY_JWKS_PATH`]).
    pub jwks: JwksConfig,
    /// The `iss` the gateway signs with.
    pub issuer: String,
    /// The `aud` the gateway signs for.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `iat`.
    pub leeway: HumanDuration,
}

/// Verifies the gateway's internal tokens, for a service; see the module docs.
#[derive(Debug)]
pub struct GatewayTokenVerifier {
    jwt: JwtVerifier,
}

impl GatewayTokenVerifier {
    /// Starts keeping the gateway's keys fresh (until `shutdown`), and
    /// verifies with them.
    pub fn start(
        policy: GatewayTokenPolicy,
        tls: &ClientTls,
        telemetry: &Telemetry,
        shutdown: &Shutdown,
    ) -> Self {
        let jwks = Jwks::start(
            policy.jwks,
            tls,
            telemetry,
            Readiness::default().gate("gateway_jwks"),
            shutdown,
        );
        Self {
            jwt: JwtVerifier {
                issuer: policy.issuer,
                audience: policy.audience,
                leeway: policy.leeway.get().as_secs(),
                signer: Signer::Gateway,
                max_token_bytes: 8192,
                hs256: None,
                jwks: Some(jwks),
                cache: Some(TokenCache::new(10_000)),
            },
        }
    }

    /// The caller `token` states, if the gateway signed it for this audience.
    pub async fn verify(&self, token: &str) -> Result<Arc<VerifiedIdentity>, AuthError> {
        self.jwt.verify(token).await.0
    }
}

#[cfg(test)]
mod tests {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use serde_json::Value;

    use super::*;

    fn caller(method: AuthMethod, client: Option<&str>) -> VerifiedIdentity {
        VerifiedIdentity::new(Identity {
            subject: "partner-7".to_owned(),
            tenant: "acme".to_owned(),
            scopes: vec!["orders:read".to_owned(), "orders:write".to_owned()],
            client: client.map(str::to_owned),
            auth_method: method,
        })
        .expect("a valid identity")
    }

    fn claims(token: &HeaderValue) -> Value {
        let payload = token
            .to_str()
            .expect("ascii")
            .split('.')
            .nth(1)
            .expect("payload");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("json")
    }

    #[test]
    fn a_token_states_the_whole_caller_and_is_reused_for_that_caller_only() {
        let config = InternalTokenConfig {
            enabled: true,
            ..InternalTokenConfig::default()
        };
        let tokens = InternalTokens::new(&config, &Telemetry::new("bff-test")).expect("a signer");
        let request = HeaderValue::from_static("4bf92f3577b34da6a3ce929d0e0e4736");
        let partner = caller(AuthMethod::ApiKey, Some("acme-erp"));
        let first = tokens.header_for(&partner, &request);
        let stated = claims(&first);
        assert_eq!(stated["sub"], "partner-7");
        assert_eq!(stated["tid"], "acme");
        assert_eq!(stated["scope"], "orders:read orders:write");
        assert_eq!(stated["azp"], "acme-erp");
        assert_eq!(stated["auth_method"], "api_key");
        assert_eq!(stated["request_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(stated["aud"], "internal");
        assert_eq!(stated["iss"], "bff-gateway");
        assert_eq!(
            stated["exp"].as_u64(),
            stated["iat"].as_u64().map(|iat| iat + 60)
        );

        let later = HeaderValue::from_static("00000000000000000000000000000001");
        assert_eq!(tokens.header_for(&partner, &later), first, "reused");
        assert_eq!(tokens.mints.get(), 1);
        let opaque = tokens.header_for(&caller(AuthMethod::Opaque, Some("acme-erp")), &later);
        assert_ne!(
            opaque, first,
            "another kind of credential is another caller"
        );
        assert_eq!(claims(&opaque)["auth_method"], "opaque");
        let no_client = tokens.header_for(&caller(AuthMethod::ApiKey, None), &later);
        assert!(claims(&no_client).get("azp").is_none());
        assert_eq!(tokens.mints.get(), 3);
    }

    #[test]
    fn the_settings_are_checked_only_when_enabled() {
        let off = InternalTokenConfig {
            ttl: HumanDuration::from_secs(1),
            ..InternalTokenConfig::default()
        };
        assert!(off.validate().is_ok());
        let short = InternalTokenConfig {
            enabled: true,
            ..off
        };
        assert_eq!(
            short.validate().expect_err("too short").to_string(),
            "auth.internal_token.ttl: must be from 6s to 1h"
        );
        let unnamed = InternalTokenConfig {
            enabled: true,
            audience: String::new(),
            ..InternalTokenConfig::default()
        };
        assert!(unnamed.validate().is_err());
    }
}
