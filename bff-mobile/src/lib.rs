//! `bff-mobile`: the mobile apps' backend-for-frontend, a trimmed GraphQL API.
//!
//! Phones pay for every byte and every round trip, so each screen is one
//! query asking for exactly the fields it shows (`query { product(id: 42) {
//! name price { formatted } stock } }`), and the BFF calls only the services
//! those fields need: a query without `price` never touches the pricing
//! service. The schema is the app's screens (`schema`): the product, a
//! category's listing, the signed-in user's profile and orders, and
//! checkout. GraphQL is served over HTTP at `/graphql` (`POST` with a JSON
//! body, or `GET` with the query in the URL); errors carry a stable
//! `extensions.code`. Callers send a bearer token for the audience
//! `bff-mobile` with the scope `products:read` (and `profile:read`,
//! `orders:read`, `orders:write` for what is the user's own).
//!
//! The endpoint faces the internet: every query is checked against hard
//! limits (size, tokens, depth, aliases, root fields, directives) before it
//! runs, answers carry at most `max_errors` errors, and introspection and
//! field suggestions are off unless `[mobile]` turns them on. Apps may send
//! a query's hash instead of its text (persisted queries, `persisted`).

mod account;
mod checkout;
mod graphiql;
mod graphql;
mod limits;
mod loaders;
mod money;
mod pages;
mod persisted;
mod product;
mod schema;

use axum::{Router, routing::get};
use gateway_core::{
    auth::RequireScope,
    bff::{Bff, BffConfig, BffParts},
    config::{ConfigError, HumanDuration, Secret, Validate},
    cursor::CursorSigner,
    downstream::ServiceSpec,
};
use serde::{Deserialize, Serialize};
use shared_schema::{
    accounts::{ORDERS, USERS},
    catalog::{INVENTORY, PRICING, PRODUCTS, REVIEWS},
};

pub use persisted::PersistedQueryMode;
pub use schema::{MobileSchema, sdl};

/// `bff-mobile` as a [`Bff`]: its name, ports, services and routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mobile;

impl Bff for Mobile {
    const NAME: &'static str = "bff-mobile";
    const ABOUT: &'static str =
        "Backend-for-frontend of the mobile apps: trimmed GraphQL at /graphql";
    const PUBLIC_PORT: u16 = 8081;
    const ADMIN_PORT: u16 = 9081;
    const SERVICES: &'static [ServiceSpec] =
        &[PRODUCTS, INVENTORY, PRICING, REVIEWS, USERS, ORDERS];
    const PUBLIC_ROUTES: &'static [&'static str] = &[graphiql::PAGE, graphiql::FILES];
    const SECTION: &'static str = "mobile";
    type Config = MobileSettings;

    fn routes(settings: &MobileSettings, parts: &BffParts) -> Router {
        app(parts, settings)
    }
}

/// The configuration of `bff-mobile`.
pub type MobileConfig = BffConfig<Mobile>;

/// `bff-mobile`'s own section, `[mobile]`: how much a query may ask for,
/// and what the endpoint tells about itself.
///
/// The app's queries are small and shallow, so large, deep or wide ones
/// are abuse; every limit is checked before anything is resolved
/// (`limits`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MobileSettings {
    /// Deepest query accepted (default 8).
    pub max_query_depth: usize,
    /// Most expensive query accepted, one point per field, a list's
    /// fields once per item it asks for (`first`; default 1,000).
    pub max_query_complexity: usize,
    /// Points of complexity one rate-limit token pays for: a query takes
    /// its complexity divided by this, rounded up, from the caller's bucket
    /// (default 10: a product screen takes 1 to 3 tokens, a 20-item listing 29).
    pub complexity_per_token: usize,
    /// Longest query text accepted, in bytes (default 16 KiB).
    pub max_query_bytes: usize,
    /// Most lexical tokens in a query (default 2,000).
    pub max_query_tokens: usize,
    /// Most aliases in a query (default 15).
    pub max_aliases: usize,
    /// Most fields an operation selects at its root (default 10).
    pub max_root_fields: usize,
    /// Most directives in a query (default 10).
    pub max_directives: usize,
    /// Most errors in one answer; the rest are dropped (default 20).
    pub max_errors: usize,
    /// Most operations in one batch (a JSON array of requests; default 5).
    pub max_batch_operations: usize,
    /// Whether the schema answers introspection (`__schema`, `__type`);
    /// off by default, for an endpoint that faces the internet.
    pub introspection: bool,
    /// Whether a misspelt field gets "did you mean" suggestions, which
    /// tell the schema; off by default.
    pub suggestions: bool,
    /// Whether GraphiQL is served at `/graphiql`; off by default.
    pub graphiql: bool,
    /// Parsed queries kept, in bytes of query text (default 64 KiB; 0: none).
    pub parsed_query_cache_bytes: u64,
    /// Persisted queries: `off`, `automatic` (the default) or `safelist`.
    pub persisted_queries: PersistedQueryMode,
    /// The operations that run in `safelist` mode: a JSON object of
    /// SHA-256 (hex) to document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safelist_file: Option<std::path::PathBuf>,
    /// How long Redis keeps a registered persisted query (default `24h`).
    pub persisted_query_ttl: HumanDuration,
    /// Bytes of persisted queries kept in process without Redis (default 4 MiB).
    pub persisted_query_cache_bytes: u64,
    /// The key list cursors are signed with, the same on every instance;
    /// unset (the default): each process makes its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor_secret: Option<Secret>,
}

impl Default for MobileSettings {
    fn default() -> Self {
        Self {
            max_query_depth: 8,
            max_query_complexity: 1_000,
            complexity_per_token: 10,
            max_query_bytes: 16 * 1024,
            max_query_tokens: 2_000,
            max_aliases: 15,
            max_root_fields: 10,
            max_directives: 10,
            max_errors: 20,
            max_batch_operations: 5,
            introspection: false,
            suggestions: false,
            graphiql: false,
            parsed_query_cache_bytes: 64 * 1024,
            persisted_queries: PersistedQueryMode::Automatic,
            safelist_file: None,
            persisted_query_ttl: HumanDuration::from_secs(24 * 3600),
            persisted_query_cache_bytes: 4 * 1024 * 1024,
            cursor_secret: None,
        }
    }
}

impl Validate for MobileSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        // `{ product(id: 1) { name } }` is depth 2, costs 2 and has 11 tokens.
        for (key, value, least) in [
            ("max_query_depth", self.max_query_depth, 2),
            ("max_query_complexity", self.max_query_complexity, 2),
            ("max_query_bytes", self.max_query_bytes, 32),
            ("max_query_tokens", self.max_query_tokens, 11),
            ("max_root_fields", self.max_root_fields, 1),
            ("max_errors", self.max_errors, 1),
            ("max_batch_operations", self.max_batch_operations, 1),
            ("complexity_per_token", self.complexity_per_token, 1),
        ] {
            if value < least {
                return Err(ConfigError::rule(key, format!("must be at least {least}")));
            }
        }
        match (self.persisted_queries, &self.safelist_file) {
            (PersistedQueryMode::Safelist, Some(file)) => {
                persisted::load_safelist("safelist_file", file)?;
            }
            (PersistedQueryMode::Safelist, None) => {
                return Err(ConfigError::rule(
                    "safelist_file",
                    "is required when persisted_queries is safelist",
                ));
            }
            _ => {}
        }
        CursorSigner::check_secret("cursor_secret", self.cursor_secret.as_ref())
    }
}

/// The routes of `bff-mobile` over its parts.
pub fn app(parts: &BffParts, settings: &MobileSettings) -> Router {
    let graphiql = if settings.graphiql {
        graphiql::routes()
    } else {
        Router::new()
    };
    let graphql = Router::new()
        .route(
            "/graphql",
            get(graphql::get)
                .post(graphql::post)
                .route_layer(RequireScope::new("products:read")),
        )
        .with_state(graphql::Graphql {
            schema: schema::build_schema(
                settings,
                schema::Services {
                    downstreams: parts.downstreams().clone(),
                    cursors: CursorSigner::new(
                        settings.cursor_secret.as_ref().map(Secret::expose),
                        "[mobile] cursor_secret",
                    ),
                    idempotency: parts.idempotency().clone(),
                },
            ),
            services: parts.downstreams().clone(),
            persisted: persisted::PersistedQueries::new(settings, parts.stores()),
            parsed: graphql::ParsedQueries::new(settings.parsed_query_cache_bytes),
            limits: limits::QueryLimits::new(settings),
            complexity_per_token: settings.complexity_per_token,
        });
    graphql.merge(graphiql)
}
