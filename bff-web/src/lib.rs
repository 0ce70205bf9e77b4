//! `bff-web`: the web app's backend-for-frontend.
//!
//! It serves rich, nested JSON pages under `/api/...`, each assembled from
//! several downstream services in parallel. Everything cross-cutting (limits,
//! tracing, errors, metrics, drain) comes from `gateway-core`; this crate
//! owns only the page shapes.
//!
//! | route                          | sources                                   |
//! |--------------------------------|-------------------------------------------|
//! | `GET /api/product-page/{id}`   | products, inventory, pricing, reviews     |

mod product_page;

use axum::{Router, routing::get};
use gateway_core::{
    bff::{BffConfig, Downstreams, StartError},
    downstream::{DownstreamClient, DownstreamConfig},
    observability::Telemetry,
    server::{Gateway, Running, Shutdown},
};
use serde::{Deserialize, Serialize};

pub use product_page::{
    Availability, PriceView, ProductPage, ProductSummary, ReviewDigest, ReviewView,
};

/// The binary's name.
pub const NAME: &str = "bff-web";

/// The services `bff-web` calls (`[downstream.*]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebDownstreams {
    /// Product catalog (default `http://127.0.0.1:7001`).
    pub products: DownstreamConfig,
    /// Stock levels (default `http://127.0.0.1:7002`).
    pub inventory: DownstreamConfig,
    /// Prices (default `http://127.0.0.1:7003`).
    pub pricing: DownstreamConfig,
    /// Reviews (default `http://127.0.0.1:7004`).
    pub reviews: DownstreamConfig,
}

impl Default for WebDownstreams {
    fn default() -> Self {
        Self {
            products: DownstreamConfig::local(7001),
            inventory: DownstreamConfig::local(7002),
            pricing: DownstreamConfig::local(7003),
            reviews: DownstreamConfig::local(7004),
        }
    }
}

impl Downstreams for WebDownstreams {
    const NAME: &'static str = NAME;
    const PUBLIC_PORT: u16 = 8080;
    const ADMIN_PORT: u16 = 9080;
}

/// The configuration of `bff-web`.
pub type WebConfig = BffConfig<WebDownstreams>;

/// What the handlers share: one client per downstream service.
#[derive(Debug, Clone)]
pub struct AppState {
    products: DownstreamClient,
    inventory: DownstreamClient,
    pricing: DownstreamClient,
    reviews: DownstreamClient,
}

impl AppState {
    /// Builds the downstream clients.
    pub fn new(downstream: &WebDownstreams, telemetry: &Telemetry) -> Result<Self, StartError> {
        Ok(Self {
            products: DownstreamClient::new("products", &downstream.products, telemetry)?,
            inventory: DownstreamClient::new("inventory", &downstream.inventory, telemetry)?,
            pricing: DownstreamClient::new("pricing", &downstream.pricing, telemetry)?,
            reviews: DownstreamClient::new("reviews", &downstream.reviews, telemetry)?,
        })
    }
}

/// The routes of `bff-web`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route(
            "/api/product-page/{id}",
            get(product_page::get_product_page),
        )
        .with_state(state)
}

/// Starts `bff-web` with `config`; it serves until `shutdown` triggers.
pub async fn start(config: WebConfig, shutdown: Shutdown) -> Result<Running, StartError> {
    let telemetry = Telemetry::new(NAME);
    let state = AppState::new(&config.downstream, &telemetry)?;
    let gateway = Gateway::new(NAME, config.server, telemetry);
    Ok(gateway.serve(app(state), shutdown).await?)
}
