//! `demo-services`: the downstream services and dev token issuer the BFFs
//! call in local runs, tests and benchmarks.
//!
//! One process serves every downstream service of the platform on its own
//! port (the table of `docs/architecture.md`), so the BFFs see real,
//! separate services over real HTTP:
//!
//! | service   | default port | endpoints                                                   |
//! |-----------|--------------|-------------------------------------------------------------|
//! | auth      | 7000 | `GET /.well-known/jwks.json`, `POST /token` (a JWT, or with `"format": "opaque"` a random token), `POST /introspect` (RFC 7662) and `POST /revoke` (RFC 7009) for the BFFs' clients (HTTP Basic), `/admin/...` |
//! | products  | 7001 | `GET /products/{id}`, `GET /products?ids=1,2`, `GET /products?cursor=&limit=`, `GET /products?category=&sort=&cursor=&limit=`, `GET /products/{id}/related?limit=`, `GET /categories/{slug}/facets` |
//! | inventory | 7002 | `GET /inventory/{id}`, `GET /inventory?ids=`                          |
//! | pricing   | 7003 | `GET /prices/{id}`, `GET /prices?ids=`                                |
//! | reviews   | 7004 | `GET /reviews?product={id}&limit=&cursor=` (with a rating histogram) |
//! | users     | 7005 | `GET /users/{id}`                                                     |
//! | orders    | 7006 | `GET /orders?user=&limit=&cursor=` (newest first; without `user` the tenant's), `GET /orders/{id}`, `POST /orders` |
//! | recommendations | 7007 | `GET /recommendations?user=&limit=`                             |
//! | webhooks  | 7008 | `POST /subscriptions`, `GET /subscriptions`, `DELETE /subscriptions/{id}`; signed deliveries of `order.created` ([`webhooks`]) |
//!
//! Answers say how a gateway may cache them, as real services do: a product
//! is `public, max-age=60, stale-while-revalidate=30, stale-if-error=600`
//! and tagged `product:{id}` (`Cache-Tag`); a category listing, its facets
//! and a product's related products `public, max-age=60,
//! stale-while-revalidate=30`, tagged `products`; a user `private,
//! max-age=30`, recommendations `private, max-age=60`, an order
//! `no-store`; the rest say nothing, so they are never cached.
//!
//! The data is generated deterministically from a seed ([`data`]); the
//! issuer signs with RS256 and ES256 keys it publishes as a JWKS
//! ([`issuer`]); any service can be made slow, failing or down ([`faults`]);
//! with `[services] require_gateway_token` every service verifies the
//! gateway's internal token and takes the caller from it ([`gateway_token`]).
//! The admin API lives on the auth port and is never subject to faults:
//!
//! - `GET /admin/faults`, `PUT /admin/faults/{service}` (a [`FaultConfig`]
//!   as JSON), `DELETE /admin/faults/{service}`;
//! - `POST /admin/keys/rotate`;
//! - `GET /admin/requests/{service}`: the last request the service received,
//!   headers included (to check what a gateway forwarded);
//! - `GET /admin/stats`: how often the JWKS was fetched and tokens were
//!   introspected, and how many requests each service received.

pub mod data;
pub mod faults;
pub mod gateway_token;
pub mod issuer;
mod services;
pub mod webhooks;

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use gateway_core::{
    cli::ServiceConfig,
    config::{ConfigError, Validate},
    lifecycle::Shutdown,
    observability::ObservabilityConfig,
    server::{ConnectionLimits, Transport, serve_connections},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared_schema::{
    PROBLEM_JSON, Problem, ServiceSpec,
    accounts::{ORDERS, USERS},
    catalog::{INVENTORY, PRICING, PRODUCTS, REVIEWS},
    webhooks::WEBHOOKS,
};
use tokio::{net::TcpListener, task::JoinHandle};

pub use data::{Catalog, DataConfig};
pub use faults::{FaultConfig, FaultHandle, RecordedRequest, RequestLog};
use gateway_token::GatewayCheck;
pub use gateway_token::ServicesConfig;
pub use issuer::{Issuer, IssuerConfig, TokenRequest, TokenResponse};
use webhooks::Webhooks;
pub use webhooks::WebhooksConfig;

/// How long in-flight requests get to finish on shutdown.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// The services this process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceName {
    /// The token issuer and the admin API.
    Auth,
    /// The product catalog.
    Products,
    /// Stock levels.
    Inventory,
    /// Prices.
    Pricing,
    /// Customer reviews.
    Reviews,
    /// User accounts.
    Users,
    /// Orders.
    Orders,
    /// Product recommendations.
    Recommendations,
    /// Webhook subscriptions and deliveries.
    Webhooks,
}

impl ServiceName {
    /// Every service, in port order.
    pub const ALL: [Self; 9] = [
        Self::Auth,
        Self::Products,
        Self::Inventory,
        Self::Pricing,
        Self::Reviews,
        Self::Users,
        Self::Orders,
        Self::Recommendations,
        Self::Webhooks,
    ];

    /// The service as the BFFs know it: its name and default port.
    pub const fn spec(self) -> ServiceSpec {
        match self {
            Self::Auth => AUTH,
            Self::Products => PRODUCTS,
            Self::Inventory => INVENTORY,
            Self::Pricing => PRICING,
            Self::Reviews => REVIEWS,
            Self::Users => USERS,
            Self::Orders => ORDERS,
            Self::Recommendations => RECOMMENDATIONS,
            Self::Webhooks => WEBHOOKS,
        }
    }

    /// The name used in config, URLs and logs.
    pub const fn as_str(self) -> &'static str {
        self.spec().name
    }

    /// The service called `name`, if this process serves one.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|service| service.as_str() == name)
    }
}

/// The token issuer and admin API: not a downstream of any BFF (they reach
/// its JWKS through `[auth.jwks]`), so it is declared here.
const AUTH: ServiceSpec = ServiceSpec::new("auth", 7000);
/// Product recommendations: only bff-web calls them, and declares them in
/// its own crate; this is the service's side.
const RECOMMENDATIONS: ServiceSpec = ServiceSpec::new("recommendations", 7007);

/// Ports of the services (`[ports]`); 0 picks a free port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ports {
    /// Default 7000.
    pub auth: u16,
    /// Default 7001.
    pub products: u16,
    /// Default 7002.
    pub inventory: u16,
    /// Default 7003.
    pub pricing: u16,
    /// Default 7004.
    pub reviews: u16,
    /// Default 7005.
    pub users: u16,
    /// Default 7006.
    pub orders: u16,
    /// Default 7007.
    pub recommendations: u16,
    /// Default 7008.
    pub webhooks: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Self {
            auth: AUTH.local_port,
            products: PRODUCTS.local_port,
            inventory: INVENTORY.local_port,
            pricing: PRICING.local_port,
            reviews: REVIEWS.local_port,
            users: USERS.local_port,
            orders: ORDERS.local_port,
            recommendations: RECOMMENDATIONS.local_port,
            webhooks: WEBHOOKS.local_port,
        }
    }
}

impl Ports {
    /// Every service on a free port, for tests.
    pub fn ephemeral() -> Self {
        Self {
            auth: 0,
            products: 0,
            inventory: 0,
            pricing: 0,
            reviews: 0,
            users: 0,
            orders: 0,
            recommendations: 0,
            webhooks: 0,
        }
    }

    fn of(&self, service: ServiceName) -> u16 {
        match service {
            ServiceName::Auth => self.auth,
            ServiceName::Products => self.products,
            ServiceName::Inventory => self.inventory,
            ServiceName::Pricing => self.pricing,
            ServiceName::Reviews => self.reviews,
            ServiceName::Users => self.users,
            ServiceName::Orders => self.orders,
            ServiceName::Recommendations => self.recommendations,
            ServiceName::Webhooks => self.webhooks,
        }
    }
}

/// The whole configuration of `demo-services`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    /// Address every service binds (default `127.0.0.1`; `0.0.0.0` in containers).
    pub host: IpAddr,
    /// Port of each service.
    pub ports: Ports,
    /// Generated data.
    pub data: DataConfig,
    /// Token issuer.
    pub issuer: IssuerConfig,
    /// Faults injected from the start, by service.
    pub faults: BTreeMap<ServiceName, FaultConfig>,
    /// Webhook deliveries.
    pub webhooks: WebhooksConfig,
    /// What the services ask of their callers.
    pub services: ServicesConfig,
    /// Logging.
    pub observability: ObservabilityConfig,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: Ports::default(),
            data: DataConfig::default(),
            issuer: IssuerConfig::default(),
            faults: BTreeMap::new(),
            webhooks: WebhooksConfig::default(),
            services: ServicesConfig::default(),
            observability: ObservabilityConfig::default(),
        }
    }
}

impl Validate for DemoConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.observability.validate()?;
        self.webhooks.validate()?;
        self.services.validate()?;
        for (service, faults) in &self.faults {
            faults.validate().map_err(|reason| {
                ConfigError::rule(&format!("faults.{}.error_rate", service.as_str()), reason)
            })?;
        }
        Ok(())
    }
}

impl ServiceConfig for DemoConfig {
    fn observability(&self) -> &ObservabilityConfig {
        &self.observability
    }
}

/// An error a demo service answers with, as problem+json.
#[derive(Debug)]
pub(crate) struct Rejection {
    status: StatusCode,
    code: &'static str,
    detail: String,
}

impl Rejection {
    pub(crate) fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let problem = Problem::new(self.status.as_u16(), self.code, title, Some(self.detail));
        (
            self.status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
            Json(problem),
        )
            .into_response()
    }
}

/// `demo-services` could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The signing keys could not be generated or loaded.
    #[error(transparent)]
    Keys(#[from] issuer::KeyError),
    /// A port could not be bound.
    #[error("cannot listen on {addr} for {service}: {source}")]
    Bind {
        /// The service.
        service: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

#[derive(Clone)]
struct AuthState {
    issuer: Arc<Issuer>,
    catalog: Arc<Catalog>,
    faults: Arc<BTreeMap<ServiceName, FaultHandle>>,
    request_logs: Arc<BTreeMap<ServiceName, RequestLog>>,
}

/// The running services.
#[derive(Debug)]
pub struct DemoServices {
    addrs: BTreeMap<ServiceName, SocketAddr>,
    issuer: Arc<Issuer>,
    catalog: Arc<Catalog>,
    faults: Arc<BTreeMap<ServiceName, FaultHandle>>,
    request_logs: Arc<BTreeMap<ServiceName, RequestLog>>,
    tasks: Vec<JoinHandle<()>>,
}

impl DemoServices {
    /// Binds every service and serves until `shutdown` triggers.
    pub async fn start(config: DemoConfig, shutdown: Shutdown) -> Result<Self, StartError> {
        let issuer_config = config.issuer.clone();
        let issuer = tokio::task::spawn_blocking(move || Issuer::new(issuer_config))
            .await
            .expect("key generation does not panic")?;
        let issuer = Arc::new(issuer);
        let catalog = Arc::new(Catalog::new(config.data.clone()));
        let hooks = Arc::new(Webhooks::new(config.webhooks.clone()));
        let faults: Arc<BTreeMap<ServiceName, FaultHandle>> = Arc::new(
            ServiceName::ALL
                .into_iter()
                .map(|service| {
                    (
                        service,
                        FaultHandle::new(config.faults.get(&service).cloned().unwrap_or_default()),
                    )
                })
                .collect(),
        );
        let request_logs: Arc<BTreeMap<ServiceName, RequestLog>> = Arc::new(
            ServiceName::ALL
                .into_iter()
                .map(|service| (service, RequestLog::default()))
                .collect(),
        );
        let auth_state = AuthState {
            issuer: issuer.clone(),
            catalog: catalog.clone(),
            faults: faults.clone(),
            request_logs: request_logs.clone(),
        };
        let gateway = GatewayCheck::start(&config.services, &shutdown);
        let mut addrs = BTreeMap::new();
        let mut tasks = Vec::new();
        for service in ServiceName::ALL {
            let router = match service {
                ServiceName::Auth => auth(auth_state.clone()),
                ServiceName::Products => services::products(catalog.clone()),
                ServiceName::Inventory => services::inventory(catalog.clone()),
                ServiceName::Pricing => services::pricing(catalog.clone()),
                ServiceName::Reviews => services::reviews(catalog.clone()),
                ServiceName::Users => services::users(catalog.clone()),
                ServiceName::Orders => services::orders(catalog.clone(), hooks.clone()),
                ServiceName::Recommendations => services::recommendations(catalog.clone()),
                ServiceName::Webhooks => webhooks::router(hooks.clone()),
            };
            // The auth port is the issuer's: only the services check the gateway.
            let router = match service {
                ServiceName::Auth => router,
                _ => gateway.guard(router),
            };
            let addr = SocketAddr::new(config.host, config.ports.of(service));
            let bind_error = |source| StartError::Bind {
                service: service.as_str(),
                addr,
                source,
            };
            let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
            let bound = listener.local_addr().map_err(bind_error)?;
            addrs.insert(service, bound);
            tracing::info!(service = service.as_str(), addr = %bound, "demo service listening");
            let app = faults::Faulty::new(
                router,
                faults[&service].clone(),
                request_logs[&service].clone(),
            );
            tasks.push(tokio::spawn(serve_connections(
                listener,
                Transport::Http1,
                app,
                ConnectionLimits::default(),
                shutdown.clone(),
                DRAIN_GRACE,
            )));
        }
        Ok(Self {
            addrs,
            issuer,
            catalog,
            faults,
            request_logs,
            tasks,
        })
    }

    /// Where `service` listens.
    pub fn addr(&self, service: ServiceName) -> SocketAddr {
        self.addrs[&service]
    }

    /// The base URL of `service`, for example `http://127.0.0.1:7001`.
    pub fn url(&self, service: ServiceName) -> String {
        format!("http://{}", self.addr(service))
    }

    /// The URL of the JWKS.
    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.url(ServiceName::Auth))
    }

    /// The token issuer.
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// Issues a token, as `POST /token` would.
    pub fn token(&self, request: &TokenRequest) -> Result<TokenResponse, issuer::TokenError> {
        self.issuer.issue(request, &self.catalog)
    }

    /// The data set.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The live fault settings of `service`.
    pub fn faults(&self, service: ServiceName) -> &FaultHandle {
        &self.faults[&service]
    }

    /// The last request `service` received (admin requests excepted).
    pub fn last_request(&self, service: ServiceName) -> Option<RecordedRequest> {
        self.request_logs[&service].last()
    }

    /// What `service` received: counts and the most requests in flight at once.
    pub fn requests(&self, service: ServiceName) -> &RequestLog {
        &self.request_logs[&service]
    }

    /// Completes once every service has drained after shutdown.
    pub async fn wait(self) {
        for task in self.tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "demo service task failed");
            }
        }
    }
}

/// The auth port: JWKS, token endpoint and admin API. Admin routes are
/// exempt from faults so a test can always undo what it injected.
fn auth(state: AuthState) -> Router {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/token", post(token))
        .route("/introspect", post(introspect))
        .route("/revoke", post(revoke))
        .route("/admin/faults", get(list_faults))
        .route(
            "/admin/faults/{service}",
            put(set_faults).delete(clear_faults),
        )
        .route("/admin/keys/rotate", post(rotate))
        .route("/admin/stats", get(stats))
        .route("/admin/requests/{service}", get(last_request))
        .with_state(state)
}

async fn jwks(State(state): State<AuthState>) -> Response {
    let cache_control = format!("public, max-age={}", state.issuer.jwks_max_age().as_secs());
    (
        [(
            header::CACHE_CONTROL,
            HeaderValue::try_from(cache_control).expect("ascii header"),
        )],
        Json(state.issuer.jwks()),
    )
        .into_response()
}

async fn token(
    State(state): State<AuthState>,
    body: axum::body::Bytes,
) -> Result<Json<TokenResponse>, Rejection> {
    let request: TokenRequest = serde_json::from_slice(&body).map_err(|error| {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            "INVALID_TOKEN_REQUEST",
            error.to_string(),
        )
    })?;
    match state.issuer.issue(&request, &state.catalog) {
        Ok(token) => Ok(Json(token)),
        Err(issuer::TokenError::Signing(error)) => {
            tracing::error!(%error, "signing failed");
            Err(Rejection::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "SIGNING_FAILED",
                "the token could not be signed",
            ))
        }
        Err(error) => Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "TOKEN_REFUSED",
            error.to_string(),
        )),
    }
}

async fn list_faults(State(state): State<AuthState>) -> Json<BTreeMap<ServiceName, FaultConfig>> {
    Json(
        state
            .faults
            .iter()
            .map(|(service, handle)| (*service, handle.get()))
            .collect(),
    )
}

fn service_named(name: &str) -> Result<ServiceName, Rejection> {
    ServiceName::named(name).ok_or_else(|| {
        Rejection::new(
            StatusCode::NOT_FOUND,
            "UNKNOWN_SERVICE",
            format!("no service named {name:?}"),
        )
    })
}

async fn set_faults(
    State(state): State<AuthState>,
    Path(service): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<FaultConfig>, Rejection> {
    let handle = &state.faults[&service_named(&service)?];
    let invalid =
        |reason: String| Rejection::new(StatusCode::BAD_REQUEST, "INVALID_FAULTS", reason);
    let config: FaultConfig =
        serde_json::from_slice(&body).map_err(|error| invalid(error.to_string()))?;
    config.validate().map_err(invalid)?;
    tracing::info!(service, faults = ?config, "faults set");
    handle.set(config.clone());
    Ok(Json(config))
}

async fn clear_faults(
    State(state): State<AuthState>,
    Path(service): Path<String>,
) -> Result<StatusCode, Rejection> {
    state.faults[&service_named(&service)?].set(FaultConfig::default());
    Ok(StatusCode::NO_CONTENT)
}

async fn rotate(State(state): State<AuthState>) -> Result<Json<serde_json::Value>, Rejection> {
    let issuer = state.issuer.clone();
    let failed = |reason: String| {
        Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, "ROTATION_FAILED", reason)
    };
    let (rsa, ec) = tokio::task::spawn_blocking(move || issuer.rotate())
        .await
        .map_err(|error| failed(error.to_string()))?
        .map_err(|error| failed(error.to_string()))?;
    Ok(Json(json!({ "rsa_kid": rsa, "ec_kid": ec })))
}

async fn last_request(
    State(state): State<AuthState>,
    Path(service): Path<String>,
) -> Result<Json<Option<RecordedRequest>>, Rejection> {
    Ok(Json(state.request_logs[&service_named(&service)?].last()))
}

async fn stats(State(state): State<AuthState>) -> Json<serde_json::Value> {
    let received: BTreeMap<&str, u64> = state
        .request_logs
        .iter()
        .map(|(service, log)| (service.as_str(), log.received()))
        .collect();
    Json(json!({
        "jwks_fetches": state.issuer.jwks_fetches(),
        "introspections": state.issuer.introspections(),
        "received": received,
    }))
}

/// The client of `Authorization: Basic` and the form's `token`, as RFC 7662
/// and RFC 7009 send them.
fn client_and_token(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, String, String), Rejection> {
    let unauthorized = || {
        Rejection::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_CLIENT",
            "the client credentials are refused",
        )
    };
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| {
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded.trim()).ok()
        })
        .and_then(|decoded| String::from_utf8(decoded).ok())
        .ok_or_else(unauthorized)?;
    let (client, secret) = basic.split_once(':').ok_or_else(unauthorized)?;
    let token = url::form_urlencoded::parse(body)
        .find(|(name, _)| name == "token")
        .map(|(_, token)| token.into_owned())
        .ok_or_else(|| {
            Rejection::new(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "the form has no token",
            )
        })?;
    Ok((client.to_owned(), secret.to_owned(), token))
}

/// `POST /introspect` (RFC 7662), for the BFFs' clients only.
async fn introspect(
    State(state): State<AuthState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, Rejection> {
    let (client, secret, token) = client_and_token(&headers, &body)?;
    state
        .issuer
        .introspect(&client, &secret, &token)
        .map(Json)
        .map_err(|error| {
            Rejection::new(
                StatusCode::UNAUTHORIZED,
                "INVALID_CLIENT",
                error.to_string(),
            )
        })
}

/// `POST /revoke` (RFC 7009): 200 whether the token existed or not.
async fn revoke(
    State(state): State<AuthState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<StatusCode, Rejection> {
    let (client, secret, token) = client_and_token(&headers, &body)?;
    state
        .issuer
        .revoke(&client, &secret, &token)
        .map(|()| StatusCode::OK)
        .map_err(|error| {
            Rejection::new(
                StatusCode::UNAUTHORIZED,
                "INVALID_CLIENT",
                error.to_string(),
            )
        })
}
