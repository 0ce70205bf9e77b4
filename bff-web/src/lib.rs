//! `bff-web`: the web app's backend-for-frontend.
//!
//! It serves rich, nested JSON pages under `/api/...`, each assembled from
//! several downstream services in parallel. Everything cross-cutting (limits,
//! tracing, errors, metrics, drain) comes from `gateway-core`; this crate
//! owns only the page shapes.
//!
//! Callers authenticate with a bearer token (audience `bff-web`) in
//! `Authorization` or in the `bff_session` cookie the web app's login sets.
//! When the web app is served from another origin, `[web] allowed_origins`
//! lets browsers call from there (CORS, with credentials); by default only
//! same-origin pages can.
//!
//! | route                          | scope           | sources                               |
//! |--------------------------------|-----------------|---------------------------------------|
//! | `GET /api/product-page/{id}`   | `products:read` | products, inventory, pricing, reviews |

mod product_page;

use std::time::Duration;

use axum::{
    Router,
    http::{HeaderValue, Method, header},
    routing::get,
};
use gateway_core::{
    auth::RequireScope,
    bff::{Bff, BffConfig, BffParts},
    config::{ConfigError, Origin, Validate},
    downstream::{Downstreams, ServiceSpec},
};
use serde::{Deserialize, Serialize};
use shared_schema::catalog::{INVENTORY, PRICING, PRODUCTS, REVIEWS};
use tower_http::cors::CorsLayer;

pub use product_page::{
    Availability, PriceView, ProductPage, ProductSummary, ReviewDigest, ReviewView,
};

/// `bff-web` as a [`Bff`]: its name, ports, services and routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Web;

impl Bff for Web {
    const NAME: &'static str = "bff-web";
    const ABOUT: &'static str =
        "Backend-for-frontend of the web app: rich, nested JSON pages under /api";
    const PUBLIC_PORT: u16 = 8080;
    const ADMIN_PORT: u16 = 9080;
    const SERVICES: &'static [ServiceSpec] = &[PRODUCTS, INVENTORY, PRICING, REVIEWS];
    /// The web app's login sets this HttpOnly cookie; it may carry the token.
    const SESSION_COOKIE: Option<&'static str> = Some("bff_session");
    const SECTION: &'static str = "web";
    type Config = WebSettings;

    fn routes(settings: &WebSettings, parts: &BffParts) -> Router {
        app(parts.downstreams().clone(), settings)
    }

    /// CORS for the web app's origins: outside authentication, because a
    /// browser's preflight carries no credential.
    fn layers(routes: Router, settings: &WebSettings, _parts: &BffParts) -> Router {
        match cors(settings) {
            Some(cors) => routes.layer(cors),
            None => routes,
        }
    }
}

/// How long a browser may reuse a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The CORS layer for `[web] allowed_origins`; none when the list is empty.
fn cors(settings: &WebSettings) -> Option<CorsLayer> {
    if settings.allowed_origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = settings
        .allowed_origins
        .iter()
        .map(|origin| origin.header_value().clone())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([header::HeaderName::from_static("x-request-id")])
            .allow_credentials(true)
            .max_age(PREFLIGHT_MAX_AGE),
    )
}

/// The configuration of `bff-web`.
pub type WebConfig = BffConfig<Web>;

/// Most reviews a product page may be configured to show.
const MAX_PAGE_REVIEWS: u32 = 50;

/// `bff-web`'s own section, `[web]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSettings {
    /// Reviews shown on a product page, newest first (default 5, at most 50).
    pub product_page_reviews: u32,
    /// Origins a browser may call from, exactly as it sends them
    /// (`https://shop.example.com`); empty (the default): same-origin only.
    pub allowed_origins: Vec<Origin>,
}

impl Default for WebSettings {
    fn default() -> Self {
        Self {
            product_page_reviews: 5,
            allowed_origins: Vec::new(),
        }
    }
}

impl Validate for WebSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_PAGE_REVIEWS).contains(&self.product_page_reviews) {
            return Err(ConfigError::rule(
                "product_page_reviews",
                format!("must be 1 to {MAX_PAGE_REVIEWS}"),
            ));
        }
        Ok(())
    }
}

/// The routes of `bff-web` over its downstream clients.
pub fn app(downstreams: Downstreams, settings: &WebSettings) -> Router {
    Router::new()
        .route(
            "/api/product-page/{id}",
            get(product_page::get_product_page).route_layer(RequireScope::new("products:read")),
        )
        .with_state(product_page::PageSources {
            services: downstreams,
            reviews: settings.product_page_reviews,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_origins_no_cors() {
        assert!(cors(&WebSettings::default()).is_none());
        assert!(
            cors(&WebSettings {
                allowed_origins: vec![Origin::parse("https://shop.example.com").expect("origin")],
                ..WebSettings::default()
            })
            .is_some()
        );
    }
}
