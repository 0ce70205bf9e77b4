//! `bff-mobile`: the mobile apps' backend-for-frontend, a trimmed GraphQL API.
//!
//! Phones pay for every byte and every round trip, so the app asks for
//! exactly the fields a screen shows (`query { product(id: 42) { name price
//! stock } }`) and the BFF calls only the services those fields need: a
//! query without `price` never touches the pricing service. GraphQL is served
//! over HTTP at `/graphql` (`POST` with a JSON body, or `GET` with the query
//! in the URL); errors carry a stable `extensions.code`.

mod graphql;
mod schema;

use axum::{Router, routing::get};
use gateway_core::{
    bff::{BffConfig, Downstreams, StartError},
    downstream::{DownstreamClient, DownstreamConfig},
    observability::Telemetry,
    server::{Gateway, Running, Shutdown},
};
use serde::{Deserialize, Serialize};

pub use schema::{MobileSchema, build_schema};

/// The binary's name.
pub const NAME: &str = "bff-mobile";

/// The services `bff-mobile` calls (`[downstream.*]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MobileDownstreams {
    /// Product catalog (default `http://127.0.0.1:7001`).
    pub products: DownstreamConfig,
    /// Stock levels (default `http://127.0.0.1:7002`).
    pub inventory: DownstreamConfig,
    /// Prices (default `http://127.0.0.1:7003`).
    pub pricing: DownstreamConfig,
}

impl Default for MobileDownstreams {
    fn default() -> Self {
        Self {
            products: DownstreamConfig::local(7001),
            inventory: DownstreamConfig::local(7002),
            pricing: DownstreamConfig::local(7003),
        }
    }
}

impl Downstreams for MobileDownstreams {
    const NAME: &'static str = NAME;
    const PUBLIC_PORT: u16 = 8081;
    const ADMIN_PORT: u16 = 9081;
}

/// The configuration of `bff-mobile`.
pub type MobileConfig = BffConfig<MobileDownstreams>;

/// What the resolvers share: one client per downstream service.
#[derive(Debug, Clone)]
pub struct AppState {
    products: DownstreamClient,
    inventory: DownstreamClient,
    pricing: DownstreamClient,
}

impl AppState {
    /// Builds the downstream clients.
    pub fn new(downstream: &MobileDownstreams, telemetry: &Telemetry) -> Result<Self, StartError> {
        Ok(Self {
            products: DownstreamClient::new("products", &downstream.products, telemetry)?,
            inventory: DownstreamClient::new("inventory", &downstream.inventory, telemetry)?,
            pricing: DownstreamClient::new("pricing", &downstream.pricing, telemetry)?,
        })
    }
}

/// The routes of `bff-mobile`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/graphql", get(graphql::get).post(graphql::post))
        .with_state(build_schema(state))
}

/// Starts `bff-mobile` with `config`; it serves until `shutdown` triggers.
pub async fn start(config: MobileConfig, shutdown: Shutdown) -> Result<Running, StartError> {
    let telemetry = Telemetry::new(NAME);
    let state = AppState::new(&config.downstream, &telemetry)?;
    let gateway = Gateway::new(NAME, config.server, telemetry);
    Ok(gateway.serve(app(state), shutdown).await?)
}
