//! `bff-mobile`: the mobile apps' backend-for-frontend, a trimmed GraphQL API.
//!
//! Phones pay for every byte and every round trip, so the app asks for
//! exactly the fields a screen shows (`query { product(id: 42) { name price
//! stock } }`) and the BFF calls only the services those fields need: a
//! query without `price` never touches the pricing service. GraphQL is served
//! over HTTP at `/graphql` (`POST` with a JSON body, or `GET` with the query
//! in the URL); errors carry a stable `extensions.code`. Callers send a
//! bearer token for the audience `bff-mobile` with the scope `products:read`.

mod graphql;
mod schema;

use axum::{Router, routing::get};
use gateway_core::{
    auth::RequireScope,
    bff::{Bff, BffConfig, BffParts, Downstreams},
    downstream::ServiceName,
};

pub use schema::{MobileSchema, build_schema};

/// `bff-mobile` as a [`Bff`]: its name, ports and services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mobile;

impl Bff for Mobile {
    const NAME: &'static str = "bff-mobile";
    const ABOUT: &'static str =
        "Backend-for-frontend of the mobile apps: trimmed GraphQL at /graphql";
    const PUBLIC_PORT: u16 = 8081;
    const ADMIN_PORT: u16 = 9081;
    const SERVICES: &'static [ServiceName] = &[
        ServiceName::Products,
        ServiceName::Inventory,
        ServiceName::Pricing,
    ];
}

/// The configuration of `bff-mobile`.
pub type MobileConfig = BffConfig<Mobile>;

/// The routes of `bff-mobile` over its downstream clients.
pub fn app(downstreams: Downstreams) -> Router {
    Router::new()
        .route(
            "/graphql",
            get(graphql::get)
                .post(graphql::post)
                .route_layer(RequireScope::new("products:read")),
        )
        .with_state(build_schema(downstreams))
}

/// The routes of `bff-mobile`, built at start by [`gateway_core::bff::start`].
pub fn routes(parts: &BffParts) -> Router {
    app(parts.downstreams())
}
