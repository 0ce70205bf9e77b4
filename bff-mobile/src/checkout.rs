//! `placeOrder(input, idempotencyKey)`: checkout, placed once per key.
//!
//! The input is checked here, field by field, before anything is called:
//! 1 to 50 lines, each a numeric product id and a quantity of 1 to 99; every
//! wrong field comes back in one `INVALID_INPUT` error's
//! `extensions.invalidParams` (`lines.0.quantity`). The order then goes to
//! the orders service for the verified user, which prices it.
//!
//! It runs through gateway-core's idempotency records, the store web
//! checkout uses: the key is the caller's (tenant and subject), the
//! request is the order as sent to the service. A retry with the same key
//! and input gets the kept order (`replayed: true`) without placing another;
//! the same key with another input is `IDEMPOTENCY_KEY_REUSED`, and a retry
//! while the first is under way `IDEMPOTENCY_IN_PROGRESS`. A refused or
//! failed order frees the key.

use async_graphql::{Context, ID, InputObject, SimpleObject};
use gateway_core::{
    Error, RequestContext,
    downstream::{DownstreamError, refused},
    idempotency::IdempotencyError,
};
use shared_schema::{
    InvalidParam,
    accounts::{NewOrder, NewOrderLine, ORDER_REJECTED, ORDER_REJECTED_DETAIL, ORDERS, Order},
};

use crate::{
    account::OrderNode,
    schema::{MobileError, Services, graphql_error, require},
};

/// An order to place.
#[derive(Debug, InputObject)]
pub(crate) struct PlaceOrderInput {
    /// What to order: 1 to 50 lines.
    lines: Vec<OrderLineInput>,
}

/// One line of an order to place.
#[derive(Debug, InputObject)]
pub(crate) struct OrderLineInput {
    /// The product.
    product_id: ID,
    /// Units, 1 to 99.
    quantity: i32,
}

/// The order placed.
#[derive(Debug, SimpleObject)]
pub(crate) struct PlaceOrderPayload {
    /// The order, as the orders service placed it.
    order: OrderNode,
    /// Whether this answers a retry: the order was placed by an earlier
    /// request with the same key.
    replayed: bool,
}

impl PlaceOrderInput {
    /// The order's lines, or every field that is wrong.
    fn lines(&self) -> Result<Vec<NewOrderLine>, MobileError> {
        let mut invalid = Vec::new();
        let mut problem =
            |name: String, reason: String| invalid.push(InvalidParam { name, reason });
        if self.lines.is_empty() || self.lines.len() > NewOrder::MAX_LINES {
            problem(
                "lines".to_owned(),
                format!("must have 1 to {} lines", NewOrder::MAX_LINES),
            );
        }
        let mut lines = Vec::with_capacity(self.lines.len());
        for (index, line) in self.lines.iter().enumerate() {
            let product_id = line.product_id.parse::<u64>().ok().filter(|id| *id > 0);
            if product_id.is_none() {
                problem(
                    format!("lines.{index}.productId"),
                    "must be a numeric product id".to_owned(),
                );
            }
            let quantity = u32::try_from(line.quantity)
                .ok()
                .filter(|quantity| (1..=NewOrderLine::MAX_QUANTITY).contains(quantity));
            if quantity.is_none() {
                problem(
                    format!("lines.{index}.quantity"),
                    format!("must be 1 to {}", NewOrderLine::MAX_QUANTITY),
                );
            }
            if let (Some(product_id), Some(quantity)) = (product_id, quantity) {
                lines.push(NewOrderLine {
                    product_id,
                    quantity,
                });
            }
        }
        if invalid.is_empty() {
            Ok(lines)
        } else {
            Err(MobileError::InvalidInput(invalid))
        }
    }
}

/// Why an order was not placed.
enum NotPlaced {
    /// The idempotency records refused or failed.
    Idempotency(IdempotencyError),
    /// The orders service refused or failed.
    Downstream(DownstreamError),
}

impl From<IdempotencyError> for NotPlaced {
    fn from(error: IdempotencyError) -> Self {
        Self::Idempotency(error)
    }
}

pub(crate) async fn place_order(
    ctx: &Context<'_>,
    input: PlaceOrderInput,
    idempotency_key: &str,
) -> async_graphql::Result<PlaceOrderPayload> {
    require(ctx, "orders:write")?;
    let context = ctx.data::<RequestContext>()?;
    let services = ctx.data::<Services>()?;
    let user_id = context.user_id().map_err(graphql_error)?;
    let caller = context
        .identity
        .as_deref()
        .ok_or_else(|| graphql_error(Error::Internal("an order without a caller".to_owned())))?;
    let order = NewOrder {
        user_id: Some(user_id),
        lines: input.lines().map_err(MobileError::into_graphql)?,
    };
    let request = serde_json::to_vec(&order).expect("an order serialises");
    let placed = services
        .idempotency
        .once(caller, idempotency_key, &request, async {
            services
                .downstreams
                .client(ORDERS.name)
                .post::<_, Order>("/orders", &order, context)
                .await
                .map_err(NotPlaced::Downstream)
        })
        .await
        .map_err(|error| match error {
            NotPlaced::Idempotency(error) => graphql_error(error.into()),
            NotPlaced::Downstream(error) => {
                graphql_error(refused(ORDER_REJECTED, ORDER_REJECTED_DETAIL)(error))
            }
        })?;
    Ok(PlaceOrderPayload {
        order: placed.value.into(),
        replayed: placed.replayed,
    })
}
