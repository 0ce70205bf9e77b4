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
//! | route                                  | scope                          | sources                                                    | Cache-Control |
//! |----------------------------------------|--------------------------------|------------------------------------------------------------|---------------|
//! | `GET /api/product-page/{id}`           | `products:read`                | products (and related), reviews, pricing and inventory batched | `private, max-age=30, stale-while-revalidate=60` |
//! | `GET /api/categories/{slug}/products`  | `products:read`                | products (listing, facets), pricing and inventory batched  | `private, max-age=30, stale-while-revalidate=60` |
//! | `GET /api/me/dashboard`                | `profile:read`, `orders:read`  | users, orders, recommendations, products and pricing batched | `private, no-cache` |
//! | `GET /api/orders/{id}`                 | `orders:read`                  | orders, products batched                                   | `private, no-cache` |
//! | `POST /api/orders`                     | `orders:write`                 | orders, products batched; `Idempotency-Key` required       | `no-store` |
//!
//! Every page carries a strong `ETag` (a request naming it in
//! `If-None-Match` gets a 304) and is compressed with br or gzip over
//! 1 KiB (gateway-core's `conditional` and the server stack). Lists of
//! products get their prices and stock from one batch call per service
//! ([`views`]); no handler computes a price or a total, the services do.

mod checkout;
mod dashboard;
mod listing;
mod orders;
mod product_page;
pub mod views;

use std::time::Duration;

use axum::{
    Router,
    http::{HeaderMap, HeaderName, HeaderValue, Method, header},
    routing::get,
};
use gateway_core::{
    auth::RequireScope,
    bff::{Bff, BffConfig, BffParts},
    conditional::ConditionalLayer,
    config::{ConfigError, HumanDuration, Origin, Secret, Validate},
    cursor::CursorSigner,
    downstream::ServiceSpec,
    idempotency::IDEMPOTENCY_KEY,
};
use serde::{Deserialize, Serialize};
use shared_schema::{
    accounts::{ORDERS, USERS},
    catalog::{INVENTORY, PRICING, PRODUCTS, REVIEWS},
};
use tower_http::cors::CorsLayer;

pub use dashboard::{Dashboard, Profile, RecommendationView};
pub use listing::{BrandFacet, Facets, ListingPage, PageInfo, PriceBandFacet};
pub use orders::{OrderLineView, OrderView};
pub use product_page::{ProductPage, ProductSummary, ReviewDigest, ReviewView};

/// Product recommendations for a user: only bff-web calls them, so they
/// are declared here, not in shared-schema (`[downstream.recommendations]`).
pub const RECOMMENDATIONS: ServiceSpec = ServiceSpec::new("recommendations", 7007);

/// How long a browser may reuse a product page or a listing, and serve it
/// stale while it checks again in the background.
const CATALOG_PAGE_CACHE: &str = "private, max-age=30, stale-while-revalidate=60";
/// A user's own pages are checked again on every use (a 304 when unchanged).
const USER_PAGE_CACHE: &str = "private, no-cache";

/// `bff-web` as a [`Bff`]: its name, ports, services and routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Web;

impl Bff for Web {
    const NAME: &'static str = "bff-web";
    const ABOUT: &'static str =
        "Backend-for-frontend of the web app: rich, nested JSON pages under /api";
    const PUBLIC_PORT: u16 = 8080;
    const ADMIN_PORT: u16 = 9080;
    const SERVICES: &'static [ServiceSpec] = &[
        PRODUCTS,
        INVENTORY,
        PRICING,
        REVIEWS,
        USERS,
        ORDERS,
        RECOMMENDATIONS,
    ];
    /// The web app's login sets this HttpOnly cookie; it may carry the token.
    const SESSION_COOKIE: Option<&'static str> = Some("bff_session");
    const SECTION: &'static str = "web";
    type Config = WebSettings;

    fn routes(settings: &WebSettings, parts: &BffParts) -> Router {
        app(parts, settings)
    }

    /// CORS for the web app's origins: outside authentication, because a
    /// browser's preflight carries no credential.
    fn layers(routes: Router, settings: &WebSettings, _parts: &BffParts) -> Router {
        match cors(settings) {
            Some(cors) => routes.layer(cors),
            None => routes,
        }
    }

    /// `Strict-Transport-Security` when `[web] hsts_max_age` is set.
    fn response_headers(settings: &WebSettings) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(max_age) = settings.hsts_max_age {
            headers.insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::try_from(format!(
                    "max-age={}; includeSubDomains",
                    max_age.get().as_secs()
                ))
                .expect("digits are a valid header value"),
            );
        }
        headers
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
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_NONE_MATCH,
                IDEMPOTENCY_KEY,
            ])
            .expose_headers([
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("bff-partial"),
                header::ETAG,
                header::LOCATION,
            ])
            .allow_credentials(true)
            .max_age(PREFLIGHT_MAX_AGE),
    )
}

/// The configuration of `bff-web`.
pub type WebConfig = BffConfig<Web>;

/// Most reviews a product page may be configured to show.
const MAX_PAGE_REVIEWS: u32 = 50;
/// Most related products a product page may be configured to show.
const MAX_RELATED_PRODUCTS: u32 = 24;
/// Most orders or recommendations the dashboard may be configured to show.
const MAX_DASHBOARD_ITEMS: u32 = 50;

/// `bff-web`'s own section, `[web]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSettings {
    /// Reviews shown on a product page, newest first (default 5, at most 50).
    pub product_page_reviews: u32,
    /// Products of the same category shown on a product page (default 8,
    /// 0 to 24).
    pub related_products: u32,
    /// Newest orders shown on the dashboard (default 5, 1 to 50).
    pub dashboard_orders: u32,
    /// Recommendations shown on the dashboard (default 6, 1 to 50).
    pub dashboard_recommendations: u32,
    /// Origins a browser may call from, exactly as it sends them
    /// (`https://shop.example.com`); empty (the default): same-origin only.
    pub allowed_origins: Vec<Origin>,
    /// `Strict-Transport-Security: max-age=…` on every answer; unset (the
    /// default): none, for a BFF not served over HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts_max_age: Option<HumanDuration>,
    /// The key listing cursors are signed with, the same on every instance;
    /// unset (the default): each process makes its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor_secret: Option<Secret>,
}

impl Default for WebSettings {
    fn default() -> Self {
        Self {
            product_page_reviews: 5,
            related_products: 8,
            dashboard_orders: 5,
            dashboard_recommendations: 6,
            allowed_origins: Vec::new(),
            hsts_max_age: None,
            cursor_secret: None,
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
        if self.related_products > MAX_RELATED_PRODUCTS {
            return Err(ConfigError::rule(
                "related_products",
                format!("must be 0 to {MAX_RELATED_PRODUCTS}"),
            ));
        }
        for (key, value) in [
            ("dashboard_orders", self.dashboard_orders),
            ("dashboard_recommendations", self.dashboard_recommendations),
        ] {
            if !(1..=MAX_DASHBOARD_ITEMS).contains(&value) {
                return Err(ConfigError::rule(
                    key,
                    format!("must be 1 to {MAX_DASHBOARD_ITEMS}"),
                ));
            }
        }
        CursorSigner::check_secret("cursor_secret", self.cursor_secret.as_ref())
    }
}

/// The routes of `bff-web` over its parts: each page with its scopes, its
/// `ETag` and `Cache-Control`, checkout with its idempotency.
pub fn app(parts: &BffParts, settings: &WebSettings) -> Router {
    let services = parts.downstreams().clone();
    let page = |cache_control| ConditionalLayer::new(cache_control);
    let product_page = Router::new()
        .route(
            "/api/product-page/{id}",
            get(product_page::get_product_page)
                .route_layer(page(CATALOG_PAGE_CACHE))
                .route_layer(RequireScope::new("products:read")),
        )
        .with_state(product_page::PageSources {
            services: services.clone(),
            reviews: settings.product_page_reviews,
            related: settings.related_products,
        });
    let listing = Router::new()
        .route(
            "/api/categories/{slug}/products",
            get(listing::get_listing)
                .route_layer(page(CATALOG_PAGE_CACHE))
                .route_layer(RequireScope::new("products:read")),
        )
        .with_state(listing::ListingSources {
            services: services.clone(),
            cursors: CursorSigner::new(
                settings.cursor_secret.as_ref().map(Secret::expose),
                "[web] cursor_secret",
            ),
        });
    let dashboard = Router::new()
        .route(
            "/api/me/dashboard",
            get(dashboard::get_dashboard)
                .route_layer(page(USER_PAGE_CACHE))
                .route_layer(RequireScope::new("orders:read"))
                .route_layer(RequireScope::new("profile:read")),
        )
        .with_state(dashboard::DashboardSources {
            services: services.clone(),
            orders: settings.dashboard_orders,
            recommendations: settings.dashboard_recommendations,
        });
    let orders = Router::new()
        .route(
            "/api/orders",
            axum::routing::post(checkout::post_order)
                .route_layer(parts.idempotency().clone())
                .route_layer(RequireScope::new("orders:write")),
        )
        .route(
            "/api/orders/{id}",
            get(orders::get_order)
                .route_layer(page(USER_PAGE_CACHE))
                .route_layer(RequireScope::new("orders:read")),
        )
        .with_state(services);
    product_page.merge(listing).merge(dashboard).merge(orders)
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
