//! Version 1 of the partner API, under `/v1`: its routes and the part of
//! the OpenAPI document they generate.
//!
//! Each version is one module with its own router and types, so a `v2`
//! is a new module beside this one and touches no `v1` handler. Within
//! v1, fields are only ever added.
//!
//! | route                   | scope           | sources                      |
//! |-------------------------|-----------------|------------------------------|
//! | `GET /v1/products`      | `products:read` | products, pricing, inventory (one batch call each) |
//! | `GET /v1/products/{id}` | `products:read` | products, pricing, inventory |
//! | `GET /v1/orders`        | `orders:read`   | orders                       |
//! | `GET /v1/orders/{id}`   | `orders:read`   | orders                       |
//! | `POST /v1/orders`       | `orders:write`  | orders; `Idempotency-Key` required |
//! | `POST /v1/webhooks`     | `webhooks:manage` | webhooks                   |
//! | `GET /v1/webhooks`      | `webhooks:manage` | webhooks                   |
//! | `DELETE /v1/webhooks/{id}` | `webhooks:manage` | webhooks                |

mod orders;
mod products;
mod webhooks;

use std::{
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use gateway_core::{
    auth::RequireScope, cursor::CursorSigner, downstream::Downstreams,
    idempotency::IdempotencyLayer,
};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

pub use orders::{
    NewPartnerOrder, NewPartnerOrderLine, OrderPage, PartnerOrder, PartnerOrderLine,
    PartnerOrderStatus,
};
pub use products::{PartnerPrice, PartnerProduct, PartnerStock, ProductPage};
pub(crate) use webhooks::deliveries;
pub use webhooks::{
    CreatedWebhook, NewWebhook, OrderCreatedData, Webhook, WebhookEvent, WebhookEventType,
    WebhookPage,
};

/// The path every v1 route is under.
pub const PREFIX: &str = "/v1";

/// What v1's handlers share.
#[derive(Debug, Clone)]
pub(crate) struct V1State {
    /// The downstream clients.
    pub(crate) services: Downstreams,
    /// Signs and opens the listings' cursors.
    pub(crate) cursors: Arc<CursorSigner>,
    /// Whether a webhook may target loopback over plain http (development).
    pub(crate) allow_http_webhooks: bool,
}

/// An amount of money: minor units of a currency, never a float.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Money {
    /// The amount in the currency's minor units (cents).
    pub amount_minor: i64,
    /// ISO 4217 currency code.
    #[schema(example = "EUR")]
    pub currency: String,
}

/// Seconds since the Unix epoch as ISO 8601 in UTC (`2026-04-12T17:05:00Z`).
pub(crate) fn timestamp(seconds: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds)).to_string()
}

/// v1's parts of the document that no route generates: its tags, and the
/// schema of a webhook delivery.
#[derive(OpenApi)]
#[openapi(
    tags(
        (name = "products", description = "The catalogue with current prices and stock"),
        (name = "orders", description = "The tenant's orders"),
        (name = "webhooks", description = "Events delivered to the partner's systems, signed"),
    ),
    components(schemas(WebhookEvent)),
)]
struct V1Doc;

/// v1's routes with their scopes and the operations they generate; the
/// idempotency layer guards placing an order (none when only the document
/// is wanted).
pub(crate) fn api(idempotency: Option<IdempotencyLayer>) -> OpenApiRouter<V1State> {
    let products = OpenApiRouter::new()
        .routes(routes!(products::list_products))
        .routes(routes!(products::get_product))
        .route_layer(RequireScope::new("products:read"));
    let read_orders = OpenApiRouter::new()
        .routes(routes!(orders::list_orders))
        .routes(routes!(orders::get_order))
        .route_layer(RequireScope::new("orders:read"));
    let mut place_order = OpenApiRouter::new().routes(routes!(orders::create_order));
    if let Some(idempotency) = idempotency {
        place_order = place_order.route_layer(idempotency);
    }
    let place_order = place_order.route_layer(RequireScope::new("orders:write"));
    let webhooks = OpenApiRouter::new()
        .routes(routes!(webhooks::create_webhook, webhooks::list_webhooks))
        .routes(routes!(webhooks::delete_webhook))
        .route_layer(RequireScope::new("webhooks:manage"));
    OpenApiRouter::with_openapi(V1Doc::openapi())
        .merge(products)
        .merge(read_orders)
        .merge(place_order)
        .merge(webhooks)
}
