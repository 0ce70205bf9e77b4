//! Authentication and coarse authorisation: who is calling, and may they call this route.
//!
//! Every protected request carries exactly one credential:
//!
//! - a JWT (`Authorization: Bearer`, or the session cookie where configured)
//!   signed with HS256 (the configured secret) or RS256/ES256 (keys from the
//!   issuer's JWKS, see [`JwksConfig`]); or
//! - an API key (`X-Api-Key`), configured by its SHA-256 ([`ApiKeyConfig`]);
//!   or
//! - an opaque bearer token, introspected at the issuer (RFC 7662) and
//!   cached ([`IntrospectionConfig`], `introspection.rs`).
//!
//! Each source is optional and explicit: HS256 is on when `[auth.hs256]` is
//! set, the JWKS unless `[auth.jwks] enabled = false`, API keys when any is
//! configured, the cookie when `session_cookie` names one. A BFF with no
//! source at all does not start, and readiness waits only for what is
//! configured (the JWKS's first load).
//!
//! A cookie is sent by the browser on its own, so a request authenticated by
//! the cookie alone with an unsafe method (anything but GET, HEAD, OPTIONS
//! and TRACE) must come from the page's own origin (`Sec-Fetch-Site:
//! same-origin`) or from one of `session_cookie_origins`; otherwise it is a
//! cross-site request forgery and refused with 403 `AUTH_CROSS_SITE_COOKIE`.
//!
//! [`Authenticator::layer`] verifies it on every route but the BFF's public
//! ones and puts the [`VerifiedIdentity`] in the request (handlers read it
//! through [`crate::RequestContext`], downstream calls forward it as
//! `X-Auth-Subject`, `X-Auth-Tenant`, `X-Auth-Scopes`) and in the response
//! (for the access log). Inbound `X-Auth-*` headers never get this far: the
//! server's hygiene layer removes them from every request. [`RequireScope`]
//! guards a route with a scope (403 without it). Failures are
//! problem+json with an RFC 6750 `WWW-Authenticate` challenge; the metric
//! `auth_verifications_total` counts outcomes by method and reason.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::post};
//! use gateway_core::auth::RequireScope;
//!
//! let routes: Router = Router::new().route(
//!     "/v1/orders",
//!     post(|| async { "created" }).route_layer(RequireScope::new("orders:write")),
//! );
//! ```

mod api_key;
mod cache;
mod credentials;
mod error;
mod es256;
mod internal_token;
mod introspection;
mod jwks;
mod keys;
mod token;
mod verifier;

pub use api_key::ApiKeyConfig;
pub(crate) use credentials::API_KEY as API_KEY_HEADER;
use credentials::Credential;
pub use error::AuthError;
pub use es256::{Es256Key, Es256KeyError, jwk_thumbprint, pem};
pub use internal_token::{
    GATEWAY_JWKS_PATH, GatewayTokenPolicy, GatewayTokenVerifier, InternalTokenConfig,
    InternalTokenError, InternalTokens,
};
pub use introspection::IntrospectionConfig;
use introspection::Introspector;
pub use jwks::JwksConfig;
use verifier::CacheOutcome;

use std::{
    num::NonZeroUsize,
    path::PathBuf,
    sync::Arc,
    task::{Context, Poll},
};

use arc_swap::ArcSwap;
use axum::{
    extract::{MatchedPath, Request},
    response::{IntoResponse, Response},
};
use futures_util::future::{BoxFuture, Either, Ready, ready};
use http::{HeaderMap, HeaderValue, Method, header};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};
use serde::{Deserialize, Serialize};
use tower::{Layer, Service};

use crate::{
    Error,
    config::{ConfigError, HumanDuration, Origin, Secret, Validate},
    identity::VerifiedIdentity,
    lifecycle::{Readiness, Shutdown},
    observability::Telemetry,
    stores::SharedStores,
    tls::ClientTls,
};
use api_key::ApiKeys;
use cache::TokenCache;
use keys::VerificationKey;
use verifier::{JwtVerifier, SharedSecret};

/// Shortest HS256 secret accepted, in bytes (RFC 7518 §3.2: at least the hash size).
const MIN_HS256_SECRET_BYTES: usize = 32;

/// The HS256 secret (`[auth.hs256]`): from the configuration (or the
/// `BFF_AUTH__HS256__SECRET` variable) or from a file, never both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hs256Config {
    /// The secret itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// A file holding the secret (trailing newline ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// The `kid` HS256 tokens carry; when absent, HS256 tokens carry no `kid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

impl Hs256Config {
    fn load(&self) -> Result<Vec<u8>, ConfigError> {
        let secret = Secret::from_setting_or_file(
            self.secret.as_ref(),
            self.secret_file.as_deref(),
            "auth.hs256.secret",
        )?
        .expose()
        .as_bytes()
        .to_vec();
        if secret.len() < MIN_HS256_SECRET_BYTES {
            return Err(ConfigError::rule(
                "auth.hs256.secret",
                format!("must be at least {MIN_HS256_SECRET_BYTES} bytes"),
            ));
        }
        Ok(secret)
    }
}

/// Authentication settings (`[auth]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The one accepted `iss` (default `https://auth.demo.bff`, the dev issuer).
    pub issuer: String,
    /// This BFF's audience, which `aud` must contain (default: the BFF's name).
    pub audience: String,
    /// Clock skew tolerated on `exp`, `nbf` and `iat` (default `30s`).
    #[serde(default = "AuthConfig::default_leeway")]
    pub leeway: HumanDuration,
    /// Longest token accepted, in bytes (default 8192).
    #[serde(default = "AuthConfig::default_max_token_bytes")]
    pub max_token_bytes: NonZeroUsize,
    /// Cookie that may carry the token (bff-web: `bff_session`); `""` turns it off.
    #[serde(default)]
    pub session_cookie: String,
    /// Origins (besides the page's own) whose pages may send unsafe requests
    /// authenticated by the session cookie.
    #[serde(default)]
    pub session_cookie_origins: Vec<Origin>,
    /// HS256 with a shared secret; off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hs256: Option<Hs256Config>,
    /// RS256/ES256 with the issuer's JWKS; on unless `enabled = false`.
    #[serde(default)]
    pub jwks: JwksConfig,
    /// Verified tokens remembered (default 10000; 0 turns the cache off).
    #[serde(default = "AuthConfig::default_token_cache_capacity")]
    pub token_cache_capacity: usize,
    /// API keys (`[[auth.api_keys]]`); `X-Api-Key` is refused when empty.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    /// Opaque bearer tokens, introspected at the issuer; off by default.
    #[serde(default)]
    pub introspection: IntrospectionConfig,
    /// The signed identity downstream calls carry; off by default.
    #[serde(default)]
    pub internal_token: InternalTokenConfig,
}

impl AuthConfig {
    const fn default_leeway() -> HumanDuration {
        HumanDuration::from_secs(30)
    }
    const fn default_max_token_bytes() -> NonZeroUsize {
        NonZeroUsize::new(8192).expect("non-zero")
    }
    const fn default_token_cache_capacity() -> usize {
        10_000
    }

    /// Defaults for `audience`: the dev issuer and its JWKS on `127.0.0.1:7000`, no cookie.
    pub fn for_audience(audience: &str) -> Self {
        Self {
            issuer: "https://auth.demo.bff".to_owned(),
            audience: audience.to_owned(),
            leeway: Self::default_leeway(),
            max_token_bytes: Self::default_max_token_bytes(),
            session_cookie: String::new(),
            session_cookie_origins: Vec::new(),
            hs256: None,
            jwks: JwksConfig::default(),
            token_cache_capacity: Self::default_token_cache_capacity(),
            api_keys: Vec::new(),
            introspection: IntrospectionConfig::default(),
            internal_token: InternalTokenConfig::default(),
        }
    }
}

impl Validate for AuthConfig {
    /// Checks the settings, reading the HS256 secret file if there is one.
    fn validate(&self) -> Result<(), ConfigError> {
        if self.issuer.is_empty() {
            return Err(ConfigError::rule("auth.issuer", "must not be empty"));
        }
        if self.audience.is_empty() {
            return Err(ConfigError::rule("auth.audience", "must not be empty"));
        }
        let usable_api_keys = self.api_keys.iter().any(|key| !key.revoked);
        if self.hs256.is_none()
            && !self.jwks.enabled
            && !usable_api_keys
            && !self.introspection.enabled
        {
            return Err(ConfigError::rule(
                "auth",
                "no credential source: set [auth.hs256], enable [auth.jwks] or [auth.introspection], or add an unrevoked [[auth.api_keys]]",
            ));
        }
        self.introspection.validate()?;
        self.internal_token.validate()?;
        if let Some(hs256) = &self.hs256 {
            hs256.load()?;
        }
        let token_char = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if !self.session_cookie.bytes().all(token_char) {
            return Err(ConfigError::rule(
                "auth.session_cookie",
                "must be a valid cookie name, or \"\" for no cookie",
            ));
        }
        if self.session_cookie.is_empty() && !self.session_cookie_origins.is_empty() {
            return Err(ConfigError::rule(
                "auth.session_cookie_origins",
                "trusts origins with a session cookie, but session_cookie is off",
            ));
        }
        ApiKeys::new(&self.api_keys).map(drop)
    }
}

/// The authenticator could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AuthStartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VerificationLabels {
    method: &'static str,
    outcome: &'static str,
    reason: &'static str,
}

impl VerificationLabels {
    fn accepted(method: &'static str) -> Self {
        Self {
            method,
            outcome: "accepted",
            reason: "ok",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CacheLabels {
    result: &'static str,
}

/// The verification metrics. The counters every accepted request touches
/// are resolved once, so the hot path increments them without a label lookup.
#[derive(Debug, Clone)]
struct AuthMetrics {
    verifications: Family<VerificationLabels, Counter>,
    accepted_jwt: Counter,
    accepted_api_key: Counter,
    cache_hits: Counter,
    cache_misses: Counter,
}

impl AuthMetrics {
    fn register(telemetry: &Telemetry) -> Self {
        let verifications = Family::<VerificationLabels, Counter>::default();
        let cache = Family::<CacheLabels, Counter>::default();
        telemetry.register(
            "auth_verifications",
            "Credential checks by method (jwt, api_key), outcome and reason",
            verifications.clone(),
        );
        telemetry.register(
            "auth_token_cache",
            "Verified-token cache lookups by result",
            cache.clone(),
        );
        // One statement per label set: a family lookup holds a read lock
        // until the end of its statement, and creating the next label set
        // needs the write lock.
        let accepted_jwt = verifications
            .get_or_create(&VerificationLabels::accepted("jwt"))
            .clone();
        let accepted_api_key = verifications
            .get_or_create(&VerificationLabels::accepted("api_key"))
            .clone();
        let cache_hits = cache.get_or_create(&CacheLabels { result: "hit" }).clone();
        let cache_misses = cache.get_or_create(&CacheLabels { result: "miss" }).clone();
        Self {
            verifications,
            accepted_jwt,
            accepted_api_key,
            cache_hits,
            cache_misses,
        }
    }

    fn record(&self, method: &'static str, result: &Result<Arc<VerifiedIdentity>, AuthError>) {
        match result {
            Ok(_) if method == "api_key" => {
                self.accepted_api_key.inc();
            }
            Ok(_) if method == "opaque" => {
                self.verifications
                    .get_or_create(&VerificationLabels::accepted("opaque"))
                    .inc();
            }
            Ok(_) => {
                self.accepted_jwt.inc();
            }
            Err(error) => {
                let labels = VerificationLabels {
                    method,
                    outcome: "rejected",
                    reason: error.reason(),
                };
                self.verifications.get_or_create(&labels).inc();
            }
        }
    }
}

/// Verifies credentials; cheap to clone.
#[derive(Debug, Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    jwt: JwtVerifier,
    /// Opaque tokens' introspection, when `[auth.introspection]` is on.
    introspector: Option<Introspector>,
    /// Swapped whole by a configuration reload.
    api_keys: ArcSwap<ApiKeys>,
    session_cookie: Option<String>,
    session_cookie_origins: Vec<HeaderValue>,
    metrics: AuthMetrics,
}

impl Authenticator {
    /// Serves `api_keys` from now on (a configuration reload): requests
    /// under way finish with the keys they were checked against.
    pub fn replace_api_keys(&self, api_keys: &[ApiKeyConfig]) -> Result<(), ConfigError> {
        self.inner.api_keys.store(Arc::new(ApiKeys::new(api_keys)?));
        Ok(())
    }

    /// Builds the authenticator of `config`. With a JWKS this starts its
    /// background refresh (until `shutdown`) and registers the readiness gate
    /// `jwks`, open once keys are loaded. Introspection answers are shared
    /// through the Redis of `stores` when there is one.
    pub fn start(
        config: &AuthConfig,
        tls: &ClientTls,
        telemetry: &Telemetry,
        readiness: &Readiness,
        shutdown: &Shutdown,
        stores: &SharedStores,
    ) -> Result<Self, AuthStartError> {
        config.validate()?;
        let hs256 = match &config.hs256 {
            Some(hs256) => Some(SharedSecret {
                kid: hs256.kid.clone(),
                key: Arc::new(VerificationKey::hs256(&hs256.load()?)),
            }),
            None => None,
        };
        let jwks = if config.jwks.enabled {
            Some(jwks::Jwks::start(
                config.jwks.clone(),
                tls,
                telemetry,
                readiness.gate("jwks"),
                shutdown,
            ))
        } else {
            None
        };
        let metrics = AuthMetrics::register(telemetry);
        let introspector = match config.introspection.enabled {
            true => Some(Introspector::new(
                &config.introspection,
                &token::ClaimPolicy {
                    issuer: &config.issuer,
                    audience: &config.audience,
                    leeway: config.leeway.get().as_secs(),
                    signer: token::Signer::Issuer,
                },
                tls,
                stores,
            )?),
            false => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                introspector,
                jwt: JwtVerifier {
                    issuer: config.issuer.clone(),
                    audience: config.audience.clone(),
                    leeway: config.leeway.get().as_secs(),
                    signer: token::Signer::Issuer,
                    max_token_bytes: config.max_token_bytes.get(),
                    hs256,
                    jwks,
                    cache: (config.token_cache_capacity > 0)
                        .then(|| TokenCache::new(config.token_cache_capacity)),
                },
                api_keys: ArcSwap::from_pointee(ApiKeys::new(&config.api_keys)?),
                session_cookie: (!config.session_cookie.is_empty())
                    .then(|| config.session_cookie.clone()),
                session_cookie_origins: config
                    .session_cookie_origins
                    .iter()
                    .map(|origin| origin.header_value().clone())
                    .collect(),
                metrics,
            }),
        })
    }

    /// Verifies the one credential of a request with `method` and
    /// `headers`, counting the outcome.
    pub async fn authenticate(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<Arc<VerifiedIdentity>, AuthError> {
        let credential = credentials::extract(headers, self.inner.session_cookie.as_deref());
        let (method, result) = match credential {
            Ok(Credential::Bearer(token)) => match self.opaque(token) {
                Some(introspector) => ("opaque", introspector.verify(token).await),
                None => ("jwt", self.verify_token(token).await),
            },
            Ok(Credential::SessionCookie(token)) => match self.check_cookie_origin(method, headers)
            {
                Ok(()) => ("jwt", self.verify_token(token).await),
                Err(error) => ("jwt", Err(error)),
            },
            Ok(Credential::ApiKey(key)) if self.inner.api_keys.load().is_enabled() => {
                ("api_key", self.inner.api_keys.load().authenticate(key))
            }
            Ok(Credential::ApiKey(_)) => ("api_key", Err(AuthError::MethodNotAccepted("API keys"))),
            Err(error) => ("none", Err(error)),
        };
        self.inner.metrics.record(method, &result);
        result
    }

    /// The introspector, when it is on and `token` is not a JWT (three
    /// dot-separated parts).
    fn opaque(&self, token: &str) -> Option<&Introspector> {
        self.inner
            .introspector
            .as_ref()
            .filter(|_| token.bytes().filter(|byte| *byte == b'.').count() != 2)
    }

    /// Refuses a cookie-authenticated unsafe request from a foreign origin.
    fn check_cookie_origin(&self, method: &Method, headers: &HeaderMap) -> Result<(), AuthError> {
        if matches!(
            *method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        ) {
            return Ok(());
        }
        let same_origin = headers
            .get("sec-fetch-site")
            .is_some_and(|site| site == "same-origin");
        let trusted_origin = headers.get(header::ORIGIN).is_some_and(|origin| {
            self.inner
                .session_cookie_origins
                .iter()
                .any(|trusted| trusted == origin)
        });
        if same_origin || trusted_origin {
            Ok(())
        } else {
            Err(AuthError::CrossSiteCookie)
        }
    }

    /// Verifies one JWT.
    pub async fn verify_token(&self, token: &str) -> Result<Arc<VerifiedIdentity>, AuthError> {
        let (result, cache) = self.inner.jwt.verify(token).await;
        let counter = match cache {
            CacheOutcome::Hit => Some(&self.inner.metrics.cache_hits),
            CacheOutcome::Miss => Some(&self.inner.metrics.cache_misses),
            CacheOutcome::Disabled => None,
        };
        if let Some(counter) = counter {
            counter.inc();
        }
        result
    }

    /// The layer authenticating every route except those whose template is in `public_routes`.
    pub fn layer(&self, public_routes: &'static [&'static str]) -> AuthLayer {
        AuthLayer {
            authenticator: self.clone(),
            public_routes,
        }
    }
}

/// Authenticates requests; see [`Authenticator::layer`].
#[derive(Debug, Clone)]
pub struct AuthLayer {
    authenticator: Authenticator,
    public_routes: &'static [&'static str],
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct Authenticate<S> {
    inner: S,
    layer: AuthLayer,
}

impl<S> Service<Request> for Authenticate<S>
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
        let public = request
            .extensions()
            .get::<MatchedPath>()
            .is_some_and(|route| self.layer.public_routes.contains(&route.as_str()));
        // The clone is ready only once polled; keep the polled one for this call.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        if public {
            return Box::pin(inner.call(request));
        }
        let authenticator = self.layer.authenticator.clone();
        Box::pin(async move {
            match authenticator
                .authenticate(request.method(), request.headers())
                .await
            {
                Ok(identity) => {
                    request.extensions_mut().insert(identity.clone());
                    let mut response = inner.call(request).await?;
                    response.extensions_mut().insert(identity);
                    Ok(response)
                }
                Err(error) => Ok(Error::from(error).into_response()),
            }
        })
    }
}

/// Whether `identity` was granted `scope`: the check of [`RequireScope`],
/// for a handler whose parts need scopes of their own (a GraphQL field).
pub fn require_scope(
    identity: Option<&VerifiedIdentity>,
    scope: &'static str,
) -> Result<(), AuthError> {
    match identity {
        Some(identity) if identity.has_scope(scope) => Ok(()),
        Some(_) => Err(AuthError::InsufficientScope(scope)),
        None => Err(AuthError::MissingCredentials),
    }
}

/// Lets a request through only if its identity has `scope` (else 403).
#[derive(Debug, Clone, Copy)]
pub struct RequireScope {
    scope: &'static str,
}

impl RequireScope {
    /// Requires `scope`, for example `orders:write`.
    pub const fn new(scope: &'static str) -> Self {
        Self { scope }
    }
}

impl<S> Layer<S> for RequireScope {
    type Service = ScopeGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ScopeGuard {
            inner,
            scope: self.scope,
        }
    }
}

/// The service of [`RequireScope`].
#[derive(Debug, Clone)]
pub struct ScopeGuard<S> {
    inner: S,
    scope: &'static str,
}

impl<S> Service<Request> for ScopeGuard<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let identity = request.extensions().get::<Arc<VerifiedIdentity>>();
        match require_scope(identity.map(AsRef::as_ref), self.scope) {
            Ok(()) => Either::Left(self.inner.call(request)),
            Err(error) => Either::Right(ready(Ok(Error::from(error).into_response()))),
        }
    }
}
