//! Orders as the web app shows them, and `GET /api/orders/{id}`.
//!
//! Totals and unit prices are the orders service's: this module only puts
//! them into the page's shape, with each line's product from one batch
//! call (part `products`).

use axum::{
    Json,
    extract::{Path, State},
};
use gateway_core::{
    Error, RequestContext,
    downstream::{Downstreams, fetching},
};
use serde::{Deserialize, Serialize};
use shared_schema::accounts::{Order, OrderStatus};

use crate::views::{self, Money, ProductCard};

/// An order on a page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    /// Order id.
    pub id: u64,
    /// Where it is in its life.
    pub status: OrderStatus,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// What it costs in all, as the orders service computed it.
    pub total: Money,
    /// What was ordered.
    pub lines: Vec<OrderLineView>,
}

/// One line of an order on a page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLineView {
    /// The product id ordered.
    pub product_id: u64,
    /// The product; `null` when products failed or no longer has it.
    pub product: Option<ProductCard>,
    /// Units ordered.
    pub quantity: u32,
    /// Price of one unit when ordered.
    pub unit_price: Money,
}

impl OrderView {
    /// `order` with each line's product as `card` finds it.
    pub(crate) fn new(order: Order, card: &impl Fn(u64) -> Option<ProductCard>) -> Self {
        Self {
            id: order.id,
            status: order.status,
            created_at: order.created_at,
            total: Money::new(order.total_minor, &order.currency),
            lines: order
                .lines
                .into_iter()
                .map(|line| OrderLineView {
                    product_id: line.product_id,
                    product: card(line.product_id),
                    quantity: line.quantity,
                    unit_price: Money::new(line.unit_price_minor, &order.currency),
                })
                .collect(),
        }
    }

    /// `order` with its lines' products, from one batch call.
    pub(crate) async fn with_products(
        order: Order,
        services: &Downstreams,
        context: &RequestContext,
    ) -> Result<Self, Error> {
        let mut ids: Vec<u64> = order.lines.iter().map(|line| line.product_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let cards = views::product_cards(services, &ids, context).await?;
        Ok(Self::new(order, &|id| {
            cards.as_ref().and_then(|cards| cards.get(&id).cloned())
        }))
    }
}

pub(crate) async fn get_order(
    State(services): State<Downstreams>,
    context: RequestContext,
    Path(id): Path<u64>,
) -> Result<Json<OrderView>, Error> {
    let user = context.user_id()?;
    let order = services
        .fetch::<Order>(id, &context)
        .await
        .map_err(fetching("order", id))?;
    // The service answers for the caller's tenant; within it, an order is
    // its own user's only.
    if order.user_id != Some(user) {
        return Err(Error::NotFound {
            resource: "order",
            id: id.to_string(),
        });
    }
    Ok(Json(
        OrderView::with_products(order, &services, &context).await?,
    ))
}
