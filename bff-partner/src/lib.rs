//! `bff-partner`: the stable, versioned REST API for partner systems.
//!
//! Everything lives under `/v1`, in `snake_case`, and is described by the
//! OpenAPI document served at `/v1/openapi.json`. A partner integration is
//! written once and must keep working, so unlike the web pages a partner
//! resource is never partial: if a part cannot be fetched the call fails
//! with a problem+json error the partner can retry.
//!
//! Partners authenticate with an API key (`X-Api-Key`) or with an OAuth
//! client-credentials token from the issuer (audience `bff-partner`).
//!
//! | route                   | scope           | sources                      |
//! |-------------------------|-----------------|------------------------------|
//! | `GET /v1/products/{id}` | `products:read` | products, pricing, inventory |
//! | `GET /v1/openapi.json`  | public          | the API description          |

mod products;

use axum::{
    Router,
    http::{HeaderValue, header},
    response::IntoResponse,
    routing::get,
};
use gateway_core::{
    auth::RequireScope,
    bff::{Bff, BffConfig, BffParts, Downstreams},
    downstream::ServiceName,
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
    /// The API description is public, so partners can integrate before they have a key.
    const PUBLIC_ROUTES: &'static [&'static str] = &["/v1/openapi.json"];
}

/// The configuration of `bff-partner`.
pub type PartnerConfig = BffConfig<Partner>;

/// The routes of `bff-partner` over its downstream clients.
pub fn app(downstreams: Downstreams) -> Router {
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route(
            "/v1/products/{id}",
            get(products::get_product).route_layer(RequireScope::new("products:read")),
        )
        .with_state(downstreams)
}

/// The routes of `bff-partner`, built at start by [`gateway_core::bff::start`].
pub fn routes(parts: &BffParts) -> Router {
    app(parts.downstreams())
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
