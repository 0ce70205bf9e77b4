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
//! Routes live in one module per version ([`v1`]); the OpenAPI document is
//! generated from them and completed with what every route shares
//! ([`contract`]), and a committed copy (`bff-partner/openapi.json`) is
//! checked against it by a test, so a change of the contract shows in review.
//! `GET /v1/openapi.json` serves it without authentication, so partners can
//! integrate before they have a key, and with `[partner] docs = true`
//! `/v1/docs` shows it as a reference page (`reference.rs`).

pub mod contract;
mod deprecation;
mod query;
mod reference;
pub mod v1;

pub use deprecation::{DeprecationConfig, Retired};

use std::sync::Arc;

use axum::{
    Router,
    body::Bytes,
    http::{HeaderValue, Uri, header},
    response::IntoResponse,
    routing::get,
};
use deprecation::Deprecations;
use gateway_core::{
    bff::{Bff, BffConfig, BffParts},
    config::{ConfigError, Secret, Validate},
    cursor::CursorSigner,
    downstream::ServiceSpec,
    idempotency::IdempotencyLayer,
};
use serde::{Deserialize, Serialize};
use shared_schema::{
    accounts::ORDERS,
    catalog::{INVENTORY, PRICING, PRODUCTS},
    webhooks::WEBHOOKS,
};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// `bff-partner` as a [`Bff`]: its name, ports, services and routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partner;

impl Bff for Partner {
    const NAME: &'static str = "bff-partner";
    const ABOUT: &'static str =
        "Backend-for-frontend of partner systems: stable, versioned REST under /v1";
    const PUBLIC_PORT: u16 = 8082;
    const ADMIN_PORT: u16 = 9082;
    const SERVICES: &'static [ServiceSpec] = &[PRODUCTS, INVENTORY, PRICING, ORDERS, WEBHOOKS];
    /// The API description and its reference page are public, so partners
    /// can integrate before they have a key.
    const PUBLIC_ROUTES: &'static [&'static str] =
        &["/v1/openapi.json", reference::PAGE, reference::FILES];
    const SECTION: &'static str = "partner";
    type Config = PartnerSettings;

    fn routes(settings: &PartnerSettings, parts: &BffParts) -> Router {
        app(parts, settings)
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
    /// The key listing cursors are signed with, shared by every instance
    /// so a cursor from one works on another; without one each process
    /// makes its own and warns.
    pub cursor_secret: Option<Secret>,
    /// Routes and versions on their way out (`[[partner.deprecations]]`):
    /// their headers, brownouts and sunset.
    pub deprecations: Vec<DeprecationConfig>,
    /// Whether a webhook may target a loopback address over plain `http`
    /// (default `false`; for a receiver on a developer's machine).
    pub allow_http_webhooks: bool,
    /// Whether the API reference (Swagger UI) is served at `/v1/docs`
    /// (default `false`; devstack turns it on).
    pub docs: bool,
}

impl Default for PartnerSettings {
    fn default() -> Self {
        Self {
            public_url: "http://127.0.0.1:8082".to_owned(),
            cursor_secret: None,
            deprecations: Vec::new(),
            allow_http_webhooks: false,
            docs: false,
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
        CursorSigner::check_secret("cursor_secret", self.cursor_secret.as_ref())?;
        Deprecations::read(&self.deprecations, &operations()).map(drop)
    }
}

/// What the API is: the document's `info`.
#[derive(OpenApi)]
#[openapi(info(
    title = "Partner API",
    version = "1.0.0",
    description = "Stable, versioned REST API for partner systems. Fields are only ever added within v1. \
        Authenticate with an API key (`X-Api-Key`) or an OAuth client-credentials bearer token for the \
        audience `bff-partner`, never both. Every error is `application/problem+json` (RFC 9457) with a \
        stable `code`; a 422 names each invalid field in `errors`. Names are snake_case, times ISO 8601 \
        in UTC, money `{\"amount_minor\": 1299, \"currency\": \"EUR\"}`.",
))]
struct PartnerApi;

/// Every version's routes, each under its prefix, with the operations
/// they generate.
fn versions(idempotency: Option<IdempotencyLayer>) -> OpenApiRouter<v1::V1State> {
    OpenApiRouter::with_openapi(PartnerApi::openapi()).nest(v1::PREFIX, v1::api(idempotency))
}

/// Every operation of the API, as `"GET /v1/products/{id}"`.
pub fn operations() -> Vec<String> {
    let (_, generated) = versions(None).split_for_parts();
    generated
        .paths
        .paths
        .iter()
        .flat_map(|(path, item)| {
            [
                ("GET", item.get.is_some()),
                ("POST", item.post.is_some()),
                ("PUT", item.put.is_some()),
                ("PATCH", item.patch.is_some()),
                ("DELETE", item.delete.is_some()),
            ]
            .into_iter()
            .filter(|(_, present)| *present)
            .map(move |(method, _)| format!("{method} {path}"))
        })
        .collect()
}

/// The OpenAPI document served at `/v1/openapi.json`: generated from the
/// routes, completed by [`contract::complete`], with `settings`'
/// `public_url` as its one server and its deprecated operations marked
/// ([`contract::deprecate`]). `bff-partner/openapi.json` is this with the
/// default settings.
pub fn openapi_document(settings: &PartnerSettings) -> serde_json::Value {
    let public_url = settings.public_url.as_str();
    let (_, generated) = versions(None).split_for_parts();
    let mut document = serde_json::to_value(generated).expect("an OpenAPI document serialises");
    document["servers"] = serde_json::json!([{ "url": public_url.trim_end_matches('/') }]);
    document["paths"]["/v1/openapi.json"] = serde_json::json!({
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document",
            "tags": ["meta"],
            "security": [],
            "responses": { "200": { "description": "The OpenAPI document", "content": { "application/json": {} } } },
        }
    });
    contract::complete(&mut document);
    document["webhooks"] = v1::deliveries();
    for deprecation in &settings.deprecations {
        contract::deprecate(&mut document, deprecation.route.trim());
    }
    document
}

/// The routes of `bff-partner` over its parts.
pub fn app(parts: &BffParts, settings: &PartnerSettings) -> Router {
    let document = Bytes::from(
        serde_json::to_vec_pretty(&openapi_document(settings)).expect("a JSON value serialises"),
    );
    let state = v1::V1State {
        services: parts.downstreams().clone(),
        cursors: Arc::new(CursorSigner::new(
            settings.cursor_secret.as_ref().map(Secret::expose),
            "[partner] cursor_secret",
        )),
        allow_http_webhooks: settings.allow_http_webhooks,
    };
    let (routes, _) = versions(Some(parts.idempotency().clone())).split_for_parts();
    let mut routes = routes.with_state(state);
    let deprecations = Deprecations::read(&settings.deprecations, &operations())
        .expect("the settings were validated");
    if !deprecations.is_empty() {
        routes = routes.route_layer(axum::middleware::from_fn_with_state(
            deprecations.in_force(parts.clock().clone(), parts.telemetry()),
            deprecation::lifecycle,
        ));
    }
    let routes = routes.route("/v1/openapi.json", get(move || openapi(document.clone())));
    match settings.docs {
        true => routes.merge(reference::routes()),
        false => routes,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed document, which partners read and generate clients
    /// from, is the one served. `UPDATE_PARTNER_OPENAPI=1 cargo test -p
    /// bff-partner` writes it after a deliberate change of the contract.
    #[test]
    fn the_committed_openapi_document_is_the_one_served() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
        let served = serde_json::to_string_pretty(&openapi_document(&PartnerSettings::default()))
            .expect("serialises")
            + "\n";
        if std::env::var_os("UPDATE_PARTNER_OPENAPI").is_some() {
            std::fs::write(path, &served).expect("openapi.json written");
        }
        let committed = std::fs::read_to_string(path).expect("bff-partner/openapi.json");
        assert_eq!(
            committed, served,
            "bff-partner/openapi.json differs from the document served; after a deliberate change run UPDATE_PARTNER_OPENAPI=1 cargo test -p bff-partner"
        );
    }

    #[test]
    fn every_operation_describes_its_errors_and_the_rate_limit() {
        let document = openapi_document(&PartnerSettings {
            public_url: "https://partners.example.com".to_owned(),
            ..PartnerSettings::default()
        });
        assert_eq!(document["openapi"], "3.1.0");
        assert_eq!(document["info"]["title"], "Partner API");
        assert_eq!(document["info"]["version"], "1.0.0");
        assert_eq!(
            document["servers"][0]["url"],
            "https://partners.example.com"
        );
        let mut operations = 0;
        for (path, item) in document["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("a path item") {
                operations += 1;
                let at = format!("{method} {path}");
                assert!(operation.get("x-problems").is_none(), "{at}: folded in");
                let responses = operation["responses"].as_object().expect("responses");
                let public = operation["security"] == serde_json::json!([]);
                let mut expected = vec!["400", "408", "413", "429", "500", "503", "504"];
                if !public {
                    expected.extend(["401", "403", "502"]);
                }
                for status in expected {
                    let codes = &responses[status]["content"]["application/problem+json"]["schema"]
                        ["allOf"][1]["properties"]["code"]["enum"];
                    assert!(
                        codes.as_array().is_some_and(|codes| !codes.is_empty()),
                        "{at}: {status} lists its codes"
                    );
                }
                for (status, response) in responses {
                    for header in ["RateLimit-Remaining", "Quota-Remaining"] {
                        assert!(
                            response["headers"][header].is_object(),
                            "{at}: {status} describes {header}"
                        );
                    }
                }
                assert!(
                    operation.get("deprecated").is_none(),
                    "{at}: none by default"
                );
            }
        }
        assert_eq!(operations, 9, "eight v1 operations and the document itself");
        let create = &document["paths"]["/v1/orders"]["post"]["responses"];
        let codes = |status: &str| {
            create[status]["content"]["application/problem+json"]["schema"]["allOf"][1]["properties"]["code"]["enum"].clone()
        };
        assert_eq!(codes("409"), serde_json::json!(["IDEMPOTENCY_IN_PROGRESS"]));
        assert_eq!(
            codes("422"),
            serde_json::json!(["IDEMPOTENCY_KEY_REUSED", "INVALID_BODY", "ORDER_REJECTED"])
        );
        assert!(
            codes("400")
                .as_array()
                .expect("codes")
                .contains(&"AUTH_AMBIGUOUS".into())
        );
        assert_eq!(
            document["paths"]["/v1/products/{id}"]["get"]["responses"]["404"]["content"]["application/problem+json"]
                ["schema"]["allOf"][1]["properties"]["code"]["enum"],
            serde_json::json!(["NOT_FOUND"])
        );
    }

    #[test]
    fn a_deprecated_operation_is_marked_with_its_410_and_headers() {
        let settings = PartnerSettings {
            deprecations: vec![DeprecationConfig {
                route: "GET /v1/orders/{id}".to_owned(),
                deprecated_at: "2026-06-01T00:00:00Z".to_owned(),
                sunset_at: Some("2027-03-01T00:00:00Z".to_owned()),
                successor: None,
                docs: None,
                brownouts: Vec::new(),
            }],
            ..PartnerSettings::default()
        };
        settings.validate().expect("a known operation");
        let document = openapi_document(&settings);
        let operation = &document["paths"]["/v1/orders/{id}"]["get"];
        assert_eq!(operation["deprecated"], true);
        assert_eq!(
            operation["responses"]["410"]["content"]["application/problem+json"]["schema"]["allOf"]
                [1]["properties"]["code"]["enum"],
            serde_json::json!(["ROUTE_BROWNOUT", "ROUTE_SUNSET"])
        );
        assert!(operation["responses"]["200"]["headers"]["Sunset"].is_object());
        assert!(document["components"]["headers"]["Deprecation"].is_object());
        assert!(
            document["paths"]["/v1/orders"]["get"]
                .get("deprecated")
                .is_none()
        );
        let whole_version = PartnerSettings {
            deprecations: vec![DeprecationConfig {
                route: "v1".to_owned(),
                ..settings.deprecations[0].clone()
            }],
            ..PartnerSettings::default()
        };
        let document = openapi_document(&whole_version);
        for operation in operations() {
            let (method, path) = operation.split_once(' ').expect("METHOD path");
            assert_eq!(
                document["paths"][path][method.to_lowercase()]["deprecated"],
                true,
                "{operation}"
            );
        }
        assert!(
            document["paths"]["/v1/openapi.json"]["get"]
                .get("deprecated")
                .is_none(),
            "the document stays"
        );
        let unknown = PartnerSettings {
            deprecations: vec![DeprecationConfig {
                route: "GET /v1/invoices".to_owned(),
                ..settings.deprecations[0].clone()
            }],
            ..PartnerSettings::default()
        };
        assert!(unknown.validate().is_err());
    }
}
