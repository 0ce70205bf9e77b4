//! `GET /v1/orders`, `GET /v1/orders/{id}` and `POST /v1/orders`: the
//! partner tenant's orders, and placing one.
//!
//! Every call reaches the orders service with the partner's verified
//! tenant, and the service answers for that tenant only: another tenant's
//! order is a 404, never a 403, so its existence does not leak. Placing an
//! order is idempotent (gateway-core's `IdempotencyLayer`, shared with web
//! checkout): it needs an `Idempotency-Key`, a retry with the same key and
//! body gets the kept answer without calling the service again, the same
//! key with another body is a 422 and a retry while the first is under way
//! a 409. Records are kept per tenant and caller, so two partners' keys
//! never meet.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::HeaderMap,
    response::Response,
};
use gateway_core::{
    Error, RequestContext,
    downstream::{fetching, refused},
    server::{created, json_body},
};
use serde::{Deserialize, Serialize};
use shared_schema::{
    Page,
    accounts::{NewOrder, ORDER_REJECTED, ORDER_REJECTED_DETAIL, ORDERS, Order, OrderStatus},
};
use utoipa::ToSchema;

use super::{Money, V1State, timestamp};
use crate::query::{QueryParams, number_in};

/// Orders a page has unless `limit` says otherwise.
const DEFAULT_LIMIT: u32 = 20;
/// Most orders in one page.
const MAX_LIMIT: u32 = 100;

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = OrderStatus)]
#[serde(rename_all = "snake_case")]
pub enum PartnerOrderStatus {
    /// Accepted, not yet paid.
    Pending,
    /// Paid, waiting to ship.
    Paid,
    /// On its way.
    Shipped,
    /// Received by the customer.
    Delivered,
    /// Cancelled before shipping.
    Cancelled,
}

impl From<OrderStatus> for PartnerOrderStatus {
    fn from(status: OrderStatus) -> Self {
        match status {
            OrderStatus::Pending => Self::Pending,
            OrderStatus::Paid => Self::Paid,
            OrderStatus::Shipped => Self::Shipped,
            OrderStatus::Delivered => Self::Delivered,
            OrderStatus::Cancelled => Self::Cancelled,
        }
    }
}

/// An order as partners see it (v1; fields are only ever added).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Order)]
pub struct PartnerOrder {
    /// Order id.
    pub id: u64,
    /// Where it is in its life.
    pub status: PartnerOrderStatus,
    /// What was ordered.
    pub lines: Vec<PartnerOrderLine>,
    /// What it costs in all, as the orders service computed it.
    pub total: Money,
    /// When it was placed (ISO 8601, UTC).
    #[schema(format = DateTime, example = "2026-04-12T17:05:00Z")]
    pub created_at: String,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = OrderLine)]
pub struct PartnerOrderLine {
    /// The product ordered.
    pub product_id: u64,
    /// Units ordered.
    pub quantity: u32,
    /// Price of one unit when ordered.
    pub unit_price: Money,
}

impl From<Order> for PartnerOrder {
    fn from(order: Order) -> Self {
        let money = |amount_minor| Money {
            amount_minor,
            currency: order.currency.clone(),
        };
        Self {
            id: order.id,
            status: order.status.into(),
            lines: order
                .lines
                .iter()
                .map(|line| PartnerOrderLine {
                    product_id: line.product_id,
                    quantity: line.quantity,
                    unit_price: money(line.unit_price_minor),
                })
                .collect(),
            total: money(order.total_minor),
            created_at: timestamp(order.created_at),
        }
    }
}

/// One page of orders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderPage {
    /// The orders of this page, newest first.
    pub items: Vec<PartnerOrder>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// The body of `POST /v1/orders`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = NewOrder)]
#[serde(deny_unknown_fields)]
pub struct NewPartnerOrder {
    /// What to order: 1 to 50 lines.
    #[schema(min_items = 1, max_items = 50)]
    pub lines: Vec<NewPartnerOrderLine>,
}

/// One line of an order being placed; the price is set by the shop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = NewOrderLine)]
#[serde(deny_unknown_fields)]
pub struct NewPartnerOrderLine {
    /// The product to order.
    #[schema(minimum = 1)]
    pub product_id: u64,
    /// Units to order, 1 to 99.
    #[schema(minimum = 1, maximum = 99)]
    pub quantity: u32,
}

/// What a cursor of the orders listing is bound to: the caller's tenant.
fn orders_of(context: &RequestContext) -> String {
    let tenant = context
        .identity
        .as_deref()
        .map_or("", |identity| identity.tenant.as_str());
    format!("orders {tenant}")
}

/// The tenant's orders, newest first.
#[utoipa::path(
    get,
    path = "/orders",
    tag = "orders",
    operation_id = "listOrders",
    params(
        ("limit" = Option<u32>, Query, description = "Orders in one page, 1 to 100 (default 20)", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, pattern = "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$", description = "The `next_cursor` of the page before; opaque"),
    ),
    responses((status = 200, description = "A page of the tenant's orders", body = OrderPage)),
    security(("api_key" = ["orders:read"]), ("bearer" = ["orders:read"])),
)]
pub(crate) async fn list_orders(
    State(state): State<V1State>,
    context: RequestContext,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<OrderPage>, Error> {
    let listing = orders_of(&context);
    let mut query = QueryParams::new(pairs, &["limit", "cursor"]);
    let limit = query.take("limit", number_in(1, MAX_LIMIT));
    let cursor = query.take("cursor", |cursor| {
        state
            .cursors
            .open(&listing, cursor)
            .ok_or_else(|| "is not a cursor of this listing (it was altered)".to_owned())
    });
    query.finish()?;
    let mut path = format!("/orders?limit={}", limit.unwrap_or(DEFAULT_LIMIT));
    if let Some(cursor) = cursor {
        path.push_str("&cursor=");
        path.extend(percent_encoding::utf8_percent_encode(
            &cursor,
            percent_encoding::NON_ALPHANUMERIC,
        ));
    }
    let page: Page<Order> = state
        .services
        .client(ORDERS.name)
        .get(path, &context)
        .await?;
    Ok(Json(OrderPage {
        items: page.items.into_iter().map(PartnerOrder::from).collect(),
        next_cursor: page
            .next_cursor
            .map(|next| state.cursors.sign(&listing, &next)),
    }))
}

/// One of the tenant's orders.
#[utoipa::path(
    get,
    path = "/orders/{id}",
    tag = "orders",
    operation_id = "getOrder",
    params(("id" = u64, Path, description = "Order id", minimum = 1)),
    responses((status = 200, description = "The order", body = PartnerOrder)),
    security(("api_key" = ["orders:read"]), ("bearer" = ["orders:read"])),
)]
pub(crate) async fn get_order(
    State(state): State<V1State>,
    context: RequestContext,
    Path(id): Path<u64>,
) -> Result<Json<PartnerOrder>, Error> {
    // The service answers for the caller's tenant only: another tenant's
    // order is its 404, so it is ours too.
    let order = state
        .services
        .fetch::<Order>(id, &context)
        .await
        .map_err(fetching("order", id))?;
    Ok(Json(order.into()))
}

/// Places an order for the tenant. Idempotent: send the same
/// `Idempotency-Key` with every retry of one order.
#[utoipa::path(
    post,
    path = "/orders",
    tag = "orders",
    operation_id = "createOrder",
    params(
        ("Idempotency-Key" = String, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "Chosen by the client for this order, 1 to 255 visible ASCII characters; a retry with the same key and body gets the first answer again (with `Idempotent-Replayed: true`), for 24 hours"),
    ),
    request_body = NewPartnerOrder,
    responses((
        status = 201,
        description = "The order was placed",
        body = PartnerOrder,
        headers(
            ("Location" = String, description = "The order's URL, `/v1/orders/{id}`"),
            ("Idempotent-Replayed" = String, description = "`true` on an answer given again for a retry with the same key"),
        ),
    )),
    security(("api_key" = ["orders:write"]), ("bearer" = ["orders:write"])),
    extensions(("x-problems" = json!({
        "400": ["IDEMPOTENCY_KEY_MISSING", "IDEMPOTENCY_KEY_INVALID"],
        "409": ["IDEMPOTENCY_IN_PROGRESS"],
        "422": ["IDEMPOTENCY_KEY_REUSED", "ORDER_REJECTED"],
        "503": ["IDEMPOTENCY_UNAVAILABLE"],
    }))),
)]
pub(crate) async fn create_order(
    State(state): State<V1State>,
    context: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    let body = json_body(&headers, &body)?;
    let lines = NewOrder::lines_of(&body, "product_id").map_err(Error::invalid_body)?;
    let order: Order = state
        .services
        .client(ORDERS.name)
        .post(
            "/orders",
            &NewOrder {
                user_id: None,
                lines,
            },
            &context,
        )
        .await
        .map_err(refused(ORDER_REJECTED, ORDER_REJECTED_DETAIL))?;
    Ok(created(
        format!("/v1/orders/{}", order.id),
        PartnerOrder::from(order),
    ))
}
