//! `bff-partner`: the stable, versioned REST API for partner systems.
//!
//! Everything lives under `/v1`, in `snake_case`, and is described by the
//! OpenAPI document served at `/v1/openapi.json`. A partner integration is
//! written once and must keep working, so unlike the web pages a partner
//! resource is never partial: if a part cannot be fetched the call fails
//! with a problem+json error the partner can retry.
//!
//! | route                   | sources                         |
//! |-------------------------|---------------------------------|
//! | `GET /v1/products/{id}` | products, pricing, inventory    |
//! | `GET /v1/openapi.json`  | the API description             |

mod products;

use axum::{
    Router,
    http::{HeaderValue, header},
    response::IntoResponse,
    routing::get,
};
use gateway_core::{
    bff::{BffConfig, Downstreams, StartError},
    downstream::{DownstreamClient, DownstreamConfig},
    observability::Telemetry,
    server::{Gateway, Running, Shutdown},
};
use serde::{Deserialize, Serialize};

pub use products::{PartnerPrice, PartnerProduct, PartnerStock};

/// The binary's name.
pub const NAME: &str = "bff-partner";

/// The OpenAPI 3.1 document of the `/v1` API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The services `bff-partner` calls (`[downstream.*]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PartnerDownstreams {
    /// Product catalog (default `http://127.0.0.1:7001`).
    pub products: DownstreamConfig,
    /// Stock levels (default `http://127.0.0.1:7002`).
    pub inventory: DownstreamConfig,
    /// Prices (default `http://127.0.0.1:7003`).
    pub pricing: DownstreamConfig,
}

impl Default for PartnerDownstreams {
    fn default() -> Self {
        Self {
            products: DownstreamConfig::local(7001),
            inventory: DownstreamConfig::local(7002),
            pricing: DownstreamConfig::local(7003),
        }
    }
}

impl Downstreams for PartnerDownstreams {
    const NAME: &'static str = NAME;
    const PUBLIC_PORT: u16 = 8082;
    const ADMIN_PORT: u16 = 9082;
}

/// The configuration of `bff-partner`.
pub type PartnerConfig = BffConfig<PartnerDownstreams>;

/// What the handlers share: one client per downstream service.
#[derive(Debug, Clone)]
pub struct AppState {
    products: DownstreamClient,
    inventory: DownstreamClient,
    pricing: DownstreamClient,
}

impl AppState {
    /// Builds the downstream clients.
    pub fn new(downstream: &PartnerDownstreams, telemetry: &Telemetry) -> Result<Self, StartError> {
        Ok(Self {
            products: DownstreamClient::new("products", &downstream.products, telemetry)?,
            inventory: DownstreamClient::new("inventory", &downstream.inventory, telemetry)?,
            pricing: DownstreamClient::new("pricing", &downstream.pricing, telemetry)?,
        })
    }
}

/// The routes of `bff-partner`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/products/{id}", get(products::get_product))
        .with_state(state)
}

async fn openapi() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
}

/// Starts `bff-partner` with `config`; it serves until `shutdown` triggers.
pub async fn start(config: PartnerConfig, shutdown: Shutdown) -> Result<Running, StartError> {
    let telemetry = Telemetry::new(NAME);
    let state = AppState::new(&config.downstream, &telemetry)?;
    let gateway = Gateway::new(NAME, config.server, telemetry);
    Ok(gateway.serve(app(state), shutdown).await?)
}
