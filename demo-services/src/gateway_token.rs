//! The services verify the gateway: `[services] require_gateway_token`.
//!
//! With it on, every call to a service (the auth port excepted) must carry
//! the gateway's internal token (`X-Auth-Token`, see gateway-core's
//! `auth::internal_token`), verified with the keys of `gateway_jwks_url`.
//! A call without one, or with one that does not verify, is a 401 problem
//! (503 while the gateway's keys cannot be had). A verified call's caller is
//! the one the token states: whatever `X-Auth-*` headers came with it are
//! replaced by the token's, so a header added on the way changes nothing.

use std::sync::Arc;

use axum::{
    Router,
    extract::{Request, State},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use gateway_core::{
    auth::{AuthError, GatewayTokenPolicy, GatewayTokenVerifier, JwksConfig},
    config::{ConfigError, HumanDuration, ServiceUrl, Validate},
    identity::{AUTH_TOKEN, IDENTITY_HEADER_PREFIX},
    lifecycle::Shutdown,
    observability::Telemetry,
    server::remove_headers_where,
    tls::ClientTls,
};
use http::header;
use serde::{Deserialize, Serialize};

use crate::Rejection;

/// How often the gateway's keys are refetched when nothing else asks: a
/// key published for a rotation is seen within this.
const GATEWAY_JWKS_REFRESH: HumanDuration = HumanDuration::from_secs(60);
/// The least time between two fetches, whatever started them (a token with
/// an unknown `kid`, say): a service that started before the gateway
/// retries this often until it answers.
const GATEWAY_JWKS_MIN_REFETCH: HumanDuration = HumanDuration::from_secs(1);
/// Clock skew tolerated on `exp` and `iat`.
const LEEWAY: HumanDuration = HumanDuration::from_secs(5);

/// What the services ask of their callers (`[services]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServicesConfig {
    /// Refuse calls without a valid gateway token (default `false`).
    pub require_gateway_token: bool,
    /// The gateway's JWKS: a BFF admin listener's `/.well-known/jwks.json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_jwks_url: Option<ServiceUrl>,
    /// The `iss` the gateway signs with (default `bff-gateway`).
    pub gateway_issuer: String,
    /// The `aud` the gateway signs for (default `internal`).
    pub gateway_audience: String,
}

impl Default for ServicesConfig {
    fn default() -> Self {
        Self {
            require_gateway_token: false,
            gateway_jwks_url: None,
            gateway_issuer: "bff-gateway".to_owned(),
            gateway_audience: "internal".to_owned(),
        }
    }
}

impl Validate for ServicesConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.require_gateway_token && self.gateway_jwks_url.is_none() {
            return Err(ConfigError::rule(
                "services.gateway_jwks_url",
                "is required with require_gateway_token = true",
            ));
        }
        Ok(())
    }
}

/// The check every service router goes through; `None` when not required.
#[derive(Clone)]
pub(crate) struct GatewayCheck(Option<Arc<GatewayTokenVerifier>>);

impl GatewayCheck {
    /// Starts keeping the gateway's keys when `config` requires its token.
    pub(crate) fn start(config: &ServicesConfig, shutdown: &Shutdown) -> Self {
        let Some(url) = config
            .gateway_jwks_url
            .clone()
            .filter(|_| config.require_gateway_token)
        else {
            return Self(None);
        };
        let tls = ClientTls::load(None).expect("the public roots load without a CA file");
        let jwks = JwksConfig {
            refresh_interval: GATEWAY_JWKS_REFRESH,
            min_refetch_interval: GATEWAY_JWKS_MIN_REFETCH,
            ..JwksConfig::at(url)
        };
        let verifier = GatewayTokenVerifier::start(
            GatewayTokenPolicy {
                jwks,
                issuer: config.gateway_issuer.clone(),
                audience: config.gateway_audience.clone(),
                leeway: LEEWAY,
            },
            &tls,
            &Telemetry::new("demo-services"),
            shutdown,
        );
        Self(Some(Arc::new(verifier)))
    }

    /// `router` behind the check, when one is required.
    pub(crate) fn guard(&self, router: Router) -> Router {
        match &self.0 {
            Some(verifier) => router.layer(middleware::from_fn_with_state(
                verifier.clone(),
                require_gateway_token,
            )),
            None => router,
        }
    }
}

async fn require_gateway_token(
    State(verifier): State<Arc<GatewayTokenVerifier>>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(AUTH_TOKEN)
        .map(|value| value.to_str().map(str::to_owned));
    let verified = match token {
        None => Err(AuthError::MissingCredentials),
        Some(Err(_)) => Err(AuthError::Malformed("the token is not visible ASCII")),
        Some(Ok(token)) => verifier.verify(&token).await,
    };
    let caller = match verified {
        Ok(caller) => caller,
        Err(error) => return refusal(error),
    };
    let headers = request.headers_mut();
    remove_headers_where(headers, |name| {
        name.as_str().starts_with(IDENTITY_HEADER_PREFIX)
    });
    for (name, value) in caller.forwarded_headers() {
        headers.insert(name, value.clone());
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// The problem answering a call the gateway did not vouch for: the
/// gateway's own code and detail, its `WWW-Authenticate` challenge and,
/// while the keys cannot be had, `Retry-After`.
fn refusal(error: AuthError) -> Response {
    let error = gateway_core::Error::from(error);
    let mut refusal =
        Rejection::new(error.status(), error.code(), error.client_detail()).into_response();
    let rendered = error.into_response();
    for name in [header::WWW_AUTHENTICATE, header::RETRY_AFTER] {
        if let Some(value) = rendered.headers().get(&name) {
            refusal.headers_mut().insert(name, value.clone());
        }
    }
    refusal
}
