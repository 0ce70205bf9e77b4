//! `POST /api/orders`: checkout.
//!
//! The body is checked here, field by field, before anything is called:
//! `{"lines": [{"productId": 42, "quantity": 1}]}` with 1 to
//! [`NewOrder::MAX_LINES`] lines, each a product id and a quantity of 1 to
//! [`shared_schema::accounts::NewOrderLine::MAX_QUANTITY`], and nothing else. Another content type is a 415,
//! JSON that does not parse a 400 naming where it broke, and a body of
//! the wrong shape a 422 listing every invalid field (`errors`,
//! JSON Pointers). The order then goes to the orders service for the
//! verified user, which prices it and computes its total; the answer is a
//! `201` with `Location` and the created order in the page's shape.
//!
//! The route is idempotent (gateway-core's `IdempotencyLayer`): it needs an
//! `Idempotency-Key`, and a retry with the same key is placed once.

use axum::{body::Bytes, extract::State, http::HeaderMap, response::Response};
use gateway_core::{
    Error, RequestContext,
    downstream::{Downstreams, refused},
    server::{created, json_body},
};
use shared_schema::accounts::{NewOrder, ORDER_REJECTED, ORDER_REJECTED_DETAIL, ORDERS, Order};

use crate::orders::OrderView;

pub(crate) async fn post_order(
    State(services): State<Downstreams>,
    context: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    let body = json_body(&headers, &body)?;
    let lines = NewOrder::lines_of(&body, "productId").map_err(Error::invalid_body)?;
    let user = context.user_id()?;
    let order: Order = services
        .client(ORDERS.name)
        .post(
            "/orders",
            &NewOrder {
                user_id: Some(user),
                lines,
            },
            &context,
        )
        .await
        .map_err(refused(ORDER_REJECTED, ORDER_REJECTED_DETAIL))?;
    let location = format!("/api/orders/{}", order.id);
    let view = OrderView::with_products(order, &services, &context).await?;
    Ok(created(location, view))
}
