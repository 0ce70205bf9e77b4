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
    bff::{Bff, BffConfig, BffParts},
    config::{ConfigError, Validate},
    downstream::{Downstreams, ServiceSpec},
};
use serde::{Deserialize, Serialize};
use shared_schema::catalog::{INVENTORY, PRICING, PRODUCTS};

pub use schema::{MobileSchema, build_schema};

/// `bff-mobile` as a [`Bff`]: its name, ports, services and routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mobile;

impl Bff for Mobile {
    const NAME: &'static str = "bff-mobile";
    const ABOUT: &'static str =
        "Backend-for-frontend of the mobile apps: trimmed GraphQL at /graphql";
    const PUBLIC_PORT: u16 = 8081;
    const ADMIN_PORT: u16 = 9081;
    const SERVICES: &'static [ServiceSpec] = &[PRODUCTS, INVENTORY, PRICING];
    const SECTION: &'static str = "mobile";
    type Config = MobileSettings;

    fn routes(settings: &MobileSettings, parts: &BffParts) -> Router {
        app(parts.downstreams().clone(), settings)
    }
}

/// The configuration of `bff-mobile`.
pub type MobileConfig = BffConfig<Mobile>;

/// `bff-mobile`'s own section, `[mobile]`: how much a query may ask for.
///
/// The schema is shallow, so deep or wide queries are abuse; both limits
/// are checked before anything is resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MobileSettings {
    /// Deepest query accepted (default 8).
    pub max_query_depth: usize,
    /// Most expensive query accepted, one point per field (default 200).
    pub max_query_complexity: usize,
    /// Parsed queries kept, in bytes of query text (default 64 KiB; 0: none).
    pub parsed_query_cache_bytes: u64,
}

impl Default for MobileSettings {
    fn default() -> Self {
        Self {
            max_query_depth: 8,
            max_query_complexity: 200,
            parsed_query_cache_bytes: 64 * 1024,
        }
    }
}

impl Validate for MobileSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        // `{ product(id: 1) { name } }` is depth 2 and costs 2.
        if self.max_query_depth < 2 {
            return Err(ConfigError::rule("max_query_depth", "must be at least 2"));
        }
        if self.max_query_complexity < 2 {
            return Err(ConfigError::rule(
                "max_query_complexity",
                "must be at least 2",
            ));
        }
        Ok(())
    }
}

/// The routes of `bff-mobile` over its downstream clients.
pub fn app(downstreams: Downstreams, settings: &MobileSettings) -> Router {
    Router::new()
        .route(
            "/graphql",
            get(graphql::get)
                .post(graphql::post)
                .route_layer(RequireScope::new("products:read")),
        )
        .with_state(graphql::Graphql {
            schema: build_schema(downstreams, settings),
            parsed: graphql::ParsedQueries::new(settings.parsed_query_cache_bytes),
        })
}
