//! `bff-web`: the web app's backend-for-frontend.
//!
//! It serves rich, nested JSON pages under `/api/...`, each assembled from
//! several downstream services in parallel. Everything cross-cutting (limits,
//! tracing, errors, metrics, drain) comes from `gateway-core`; this crate
//! owns only the page shapes.
//!
//! Callers authenticate with a bearer token (audience `bff-web`) in
//! `Authorization` or in the `bff_session` cookie the web app's login sets.
//!
//! | route                          | scope           | sources                               |
//! |--------------------------------|-----------------|---------------------------------------|
//! | `GET /api/product-page/{id}`   | `products:read` | products, inventory, pricing, reviews |

mod product_page;

use axum::{Router, routing::get};
use gateway_core::{
    auth::RequireScope,
    bff::{Bff, BffConfig, BffParts, Downstreams},
    downstream::ServiceName,
};

pub use product_page::{
    Availability, PriceView, ProductPage, ProductSummary, ReviewDigest, ReviewView,
};

/// `bff-web` as a [`Bff`]: its name, ports and services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Web;

impl Bff for Web {
    const NAME: &'static str = "bff-web";
    const ABOUT: &'static str =
        "Backend-for-frontend of the web app: rich, nested JSON pages under /api";
    const PUBLIC_PORT: u16 = 8080;
    const ADMIN_PORT: u16 = 9080;
    const SERVICES: &'static [ServiceName] = &[
        ServiceName::Products,
        ServiceName::Inventory,
        ServiceName::Pricing,
        ServiceName::Reviews,
    ];
    /// The web app's login sets this HttpOnly cookie; it may carry the token.
    const SESSION_COOKIE: Option<&'static str> = Some("bff_session");
}

/// The configuration of `bff-web`.
pub type WebConfig = BffConfig<Web>;

/// The routes of `bff-web` over its downstream clients.
pub fn app(downstreams: Downstreams) -> Router {
    Router::new()
        .route(
            "/api/product-page/{id}",
            get(product_page::get_product_page).route_layer(RequireScope::new("products:read")),
        )
        .with_state(downstreams)
}

/// The routes of `bff-web`, built at start by [`gateway_core::bff::start`].
pub fn routes(parts: &BffParts) -> Router {
    app(parts.downstreams())
}
