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
//! integrate before they have a key.

pub mod contract;
mod query;
pub mod v1;

use std::sync::Arc;

use axum::{
    Router,
    body::Bytes,
    http::{HeaderValue, Uri, header},
    response::IntoResponse,
    routing::get,
};
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
};
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
    const SERVICES: &'static [ServiceSpec] = &[PRODUCTS, INVENTORY, PRICING, ORDERS];
    /// The API description is public, so partners can integrate before they have a key.
    const PUBLIC_ROUTES: &'static [&'static str] = &["/v1/openapi.json"];
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
}

impl Default for PartnerSettings {
    fn default() -> Self {
        Self {
            public_url: "http://127.0.0.1:8082".to_owned(),
            cursor_secret: None,
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
        CursorSigner::check_secret("cursor_secret", self.cursor_secret.as_ref())
    }
}

/// Every version's routes, each under its prefix, with the operations
/// they generate.
fn versions(idempotency: Option<IdempotencyLayer>) -> OpenApiRouter<v1::V1State> {
    OpenApiRouter::new().nest(v1::PREFIX, v1::api(idempotency))
}

/// The OpenAPI document served at `/v1/openapi.json`: generated from the
/// routes, completed by [`contract::complete`], with `public_url` as its
/// one server. `bff-partner/openapi.json` is this with the default
/// `public_url`.
pub fn openapi_document(public_url: &str) -> serde_json::Value {
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
    document
}

/// The routes of `bff-partner` over its parts.
pub fn app(parts: &BffParts, settings: &PartnerSettings) -> Router {
    let document = Bytes::from(
        serde_json::to_vec_pretty(&openapi_document(&settings.public_url))
            .expect("a JSON value serialises"),
    );
    let state = v1::V1State {
        services: parts.downstreams().clone(),
        cursors: Arc::new(CursorSigner::new(
            settings.cursor_secret.as_ref().map(Secret::expose),
            "[partner] cursor_secret",
        )),
    };
    let (routes, _) = versions(Some(parts.idempotency().clone())).split_for_parts();
    routes
        .with_state(state)
        .route("/v1/openapi.json", get(move || openapi(document.clone())))
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
    /// from, is the one served. `BFF_PARTNER_WRITE_OPENAPI=1 cargo test -p
    /// bff-partner` writes it after a deliberate change of the contract.
    #[test]
    fn the_committed_openapi_document_is_the_one_served() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
        let served =
            serde_json::to_string_pretty(&openapi_document(&PartnerSettings::default().public_url))
                .expect("serialises")
                + "\n";
        if std::env::var_os("BFF_PARTNER_WRITE_OPENAPI").is_some() {
            std::fs::write(path, &served).expect("openapi.json written");
        }
        let committed = std::fs::read_to_string(path).expect("bff-partner/openapi.json");
        assert_eq!(
            committed, served,
            "bff-partner/openapi.json differs from the document served; after a deliberate change run BFF_PARTNER_WRITE_OPENAPI=1 cargo test -p bff-partner"
        );
    }

    #[test]
    fn every_operation_describes_its_errors_and_the_rate_limit() {
        let document = openapi_document("https://partners.example.com");
        assert_eq!(document["openapi"], "3.1.0");
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
                let mut expected = vec!["400", "429", "500", "503", "504"];
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
                    assert!(
                        response["headers"]["RateLimit-Remaining"].is_object(),
                        "{at}: {status} describes the rate limit's headers"
                    );
                }
            }
        }
        assert_eq!(operations, 6, "five v1 operations and the document itself");
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
}
