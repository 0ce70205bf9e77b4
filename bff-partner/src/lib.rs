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
    bff::{Bff, BffConfig, BffParts},
    downstream::{DownstreamClient, ServiceName},
};

pub use products::{PartnerPrice, PartnerProduct, PartnerStock};

/// The OpenAPI 3.1 document of the `/v1` API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// `bff-partner` as a [`Bff`]: its name, ports and services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partner;

impl Bff for Partner {
    const NAME: &'static str = "bff-partner";
    const ABOUT: &'static str =
        "Backend-for-frontend of partner systems: stable, versioned REST under /v1";
    const PUBLIC_PORT: u16 = 8082;
    const ADMIN_PORT: u16 = 9082;
    const SERVICES: &'static [ServiceName] = &[
        ServiceName::Products,
        ServiceName::Inventory,
        ServiceName::Pricing,
    ];
}

/// The configuration of `bff-partner`.
pub type PartnerConfig = BffConfig<Partner>;

/// What the handlers share: one client per downstream service.
#[derive(Debug, Clone)]
pub struct AppState {
    products: DownstreamClient,
    inventory: DownstreamClient,
    pricing: DownstreamClient,
}

impl AppState {
    /// Takes the clients the handlers need.
    pub fn new(parts: &BffParts) -> Self {
        Self {
            products: parts.client(ServiceName::Products),
            inventory: parts.client(ServiceName::Inventory),
            pricing: parts.client(ServiceName::Pricing),
        }
    }
}

/// The routes of `bff-partner` over `state`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/products/{id}", get(products::get_product))
        .with_state(state)
}

/// The routes of `bff-partner`, built at start by [`gateway_core::bff::start`].
pub fn routes(parts: &BffParts) -> Router {
    app(AppState::new(parts))
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
