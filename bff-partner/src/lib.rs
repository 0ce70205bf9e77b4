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
    body::Bytes,
    http::{HeaderValue, Uri, header},
    response::IntoResponse,
    routing::get,
};
use gateway_core::{
    auth::RequireScope,
    bff::{Bff, BffConfig, BffParts},
    config::{ConfigError, Validate},
    downstream::{Downstreams, ServiceSpec},
};
use serde::{Deserialize, Serialize};
use shared_schema::catalog::{INVENTORY, PRICING, PRODUCTS};

pub use products::{PartnerPrice, PartnerProduct, PartnerStock};

/// The OpenAPI 3.1 document of the `/v1` API, as written; the served one
/// names the configured public URL as its server ([`openapi_document`]).
pub const OPENAPI: &str = include_str!("openapi.json");

/// `bff-partner` as a [`Bff`]: its name, ports, services and routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partner;

impl Bff for Partner {
    const NAME: &'static str = "bff-partner";
    const ABOUT: &'static str =
        "Backend-for-frontend of partner systems: stable, versioned REST under /v1";
    const PUBLIC_PORT: u16 = 8082;
    const ADMIN_PORT: u16 = 9082;
    const SERVICES: &'static [ServiceSpec] = &[PRODUCTS, INVENTORY, PRICING];
    /// The API description is public, so partners can integrate before they have a key.
    const PUBLIC_ROUTES: &'static [&'static str] = &["/v1/openapi.json"];
    const SECTION: &'static str = "partner";
    type Config = PartnerSettings;

    fn routes(settings: &PartnerSettings, parts: &BffParts) -> Router {
        app(parts.downstreams().clone(), settings)
    }
}

/// The configuration of `bff-partner`.
pub type PartnerConfig = BffConfig<Partner>;

/// `bff-partner`'s own section, `[partner]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PartnerSettings {
    /// The URL partners call, named as the server of the OpenAPI document
    /// so generated clients point at it (default `http://127.0.0.1:8082`).
    pub public_url: String,
}

impl Default for PartnerSettings {
    fn default() -> Self {
        Self {
            public_url: "http://127.0.0.1:8082".to_owned(),
        }
    }
}

impl Validate for PartnerSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        let uri: Uri = self
            .public_url
            .parse()
            .map_err(|error| ConfigError::rule("public_url", format!("not a URL: {error}")))?;
        let absolute = matches!(uri.scheme_str(), Some("http" | "https"))
            && uri
                .authority()
                .is_some_and(|authority| !authority.as_str().contains('@'))
            && uri.query().is_none();
        if !absolute {
            return Err(ConfigError::rule(
                "public_url",
                "must be an http or https URL with a host and no query or credentials",
            ));
        }
        Ok(())
    }
}

/// The OpenAPI document served at `/v1/openapi.json`: [`OPENAPI`] with
/// `public_url` as its one server, rendered once at start.
pub fn openapi_document(public_url: &str) -> Bytes {
    let mut document: serde_json::Value =
        serde_json::from_str(OPENAPI).expect("the bundled OpenAPI document is JSON");
    document["servers"] = serde_json::json!([{ "url": public_url.trim_end_matches('/') }]);
    Bytes::from(serde_json::to_vec(&document).expect("a JSON value serialises"))
}

/// The routes of `bff-partner` over its downstream clients.
pub fn app(downstreams: Downstreams, settings: &PartnerSettings) -> Router {
    let document = openapi_document(&settings.public_url);
    Router::new()
        .route("/v1/openapi.json", get(move || openapi(document.clone())))
        .route(
            "/v1/products/{id}",
            get(products::get_product).route_layer(RequireScope::new("products:read")),
        )
        .with_state(downstreams)
}

async fn openapi(document: Bytes) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        document,
    )
}
