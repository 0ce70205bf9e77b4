//! The downstream services: one router per service, each served on its own port.

use std::{
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;
use shared_schema::{Batch, Page, accounts::NewOrder};

use crate::{data::Catalog, problem};

/// Most ids in one batch request.
const MAX_BATCH: usize = 100;
/// Default and largest page size of listings.
const DEFAULT_LIMIT: u64 = 20;
const MAX_LIMIT: u64 = 100;

type Shared = State<Arc<Catalog>>;

fn parse_id(text: &str) -> Result<u64, Response> {
    text.parse::<u64>().map_err(|_| {
        problem(400, "INVALID_ID", &format!("{text:?} is not a numeric id")).into_response()
    })
}

fn not_found(what: &str, id: u64) -> Response {
    problem(404, "NOT_FOUND", &format!("{what} {id} does not exist")).into_response()
}

fn parse_ids(ids: &str) -> Result<Vec<u64>, Response> {
    let ids: Vec<u64> = ids
        .split(',')
        .map(|id| parse_id(id.trim()))
        .collect::<Result<_, _>>()?;
    if ids.len() > MAX_BATCH {
        return Err(problem(
            400,
            "BATCH_TOO_LARGE",
            &format!("at most {MAX_BATCH} ids per batch"),
        )
        .into_response());
    }
    Ok(ids)
}

fn batch<T>(ids: &[u64], lookup: impl Fn(u64) -> Option<T>) -> Batch<T> {
    let mut found = Batch {
        items: Vec::with_capacity(ids.len()),
        missing: Vec::new(),
    };
    for &id in ids {
        match lookup(id) {
            Some(item) => found.items.push(item),
            None => found.missing.push(id),
        }
    }
    found
}

fn limit(asked: Option<u64>) -> u64 {
    asked.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

/// Parses a listing cursor: the offset of the next item, as text.
fn parse_cursor(cursor: Option<&str>) -> Result<u64, Response> {
    cursor.map_or(Ok(0), |cursor| {
        cursor.parse().map_err(|_| {
            problem(
                400,
                "INVALID_CURSOR",
                "the cursor is not one this service issued",
            )
            .into_response()
        })
    })
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    ids: Option<String>,
    cursor: Option<String>,
    limit: Option<u64>,
}

/// `GET /products/{id}`, `GET /products?ids=..`, `GET /products?cursor=..&limit=..`.
pub(crate) fn products(catalog: Arc<Catalog>) -> Router {
    async fn one(State(catalog): Shared, Path(id): Path<String>) -> Response {
        let id = match parse_id(&id) {
            Ok(id) => id,
            Err(response) => return response,
        };
        catalog.product(id).map_or_else(
            || not_found("product", id),
            |product| Json(product).into_response(),
        )
    }
    async fn list(State(catalog): Shared, Query(query): Query<ListQuery>) -> Response {
        if let Some(ids) = query.ids {
            return match parse_ids(&ids) {
                Ok(ids) => Json(batch(&ids, |id| catalog.product(id))).into_response(),
                Err(response) => response,
            };
        }
        let offset = match parse_cursor(query.cursor.as_deref()) {
            Ok(offset) => offset,
            Err(response) => return response,
        };
        let end = catalog
            .product_count()
            .min(offset.saturating_add(limit(query.limit)));
        Json(Page {
            items: (offset + 1..=end)
                .filter_map(|id| catalog.product(id))
                .collect(),
            next_cursor: (end < catalog.product_count()).then(|| end.to_string()),
        })
        .into_response()
    }
    Router::new()
        .route("/products", get(list))
        .route("/products/{id}", get(one))
        .with_state(catalog)
}

/// `GET /inventory/{id}`, `GET /inventory?ids=..`.
pub(crate) fn inventory(catalog: Arc<Catalog>) -> Router {
    async fn one(State(catalog): Shared, Path(id): Path<String>) -> Response {
        match parse_id(&id) {
            Ok(id) => catalog.stock(id).map_or_else(
                || not_found("product", id),
                |stock| Json(stock).into_response(),
            ),
            Err(response) => response,
        }
    }
    async fn many(State(catalog): Shared, Query(query): Query<ListQuery>) -> Response {
        match parse_ids(query.ids.as_deref().unwrap_or_default()) {
            Ok(ids) => Json(batch(&ids, |id| catalog.stock(id))).into_response(),
            Err(response) => response,
        }
    }
    Router::new()
        .route("/inventory", get(many))
        .route("/inventory/{id}", get(one))
        .with_state(catalog)
}

/// `GET /prices/{id}`, `GET /prices?ids=..`.
pub(crate) fn pricing(catalog: Arc<Catalog>) -> Router {
    async fn one(State(catalog): Shared, Path(id): Path<String>) -> Response {
        match parse_id(&id) {
            Ok(id) => catalog.price(id).map_or_else(
                || not_found("product", id),
                |price| Json(price).into_response(),
            ),
            Err(response) => response,
        }
    }
    async fn many(State(catalog): Shared, Query(query): Query<ListQuery>) -> Response {
        match parse_ids(query.ids.as_deref().unwrap_or_default()) {
            Ok(ids) => Json(batch(&ids, |id| catalog.price(id))).into_response(),
            Err(response) => response,
        }
    }
    Router::new()
        .route("/prices", get(many))
        .route("/prices/{id}", get(one))
        .with_state(catalog)
}

#[derive(Debug, Deserialize)]
struct ReviewQuery {
    product: Option<String>,
    cursor: Option<String>,
    limit: Option<u64>,
}

/// `GET /reviews?product={id}&limit=&cursor=`.
pub(crate) fn reviews(catalog: Arc<Catalog>) -> Router {
    async fn list(State(catalog): Shared, Query(query): Query<ReviewQuery>) -> Response {
        let Some(product) = query.product else {
            return problem(
                400,
                "MISSING_PRODUCT",
                "the product query parameter is required",
            )
            .into_response();
        };
        let (product, offset) = match (parse_id(&product), parse_cursor(query.cursor.as_deref())) {
            (Ok(product), Ok(offset)) => (product, offset),
            (Err(response), _) | (_, Err(response)) => return response,
        };
        catalog
            .reviews(product, offset, limit(query.limit))
            .map_or_else(
                || not_found("product", product),
                |reviews| Json(reviews).into_response(),
            )
    }
    Router::new()
        .route("/reviews", get(list))
        .with_state(catalog)
}

/// `GET /users/{id}`.
pub(crate) fn users(catalog: Arc<Catalog>) -> Router {
    async fn one(State(catalog): Shared, headers: HeaderMap, Path(id): Path<String>) -> Response {
        let id = match parse_id(&id) {
            Ok(id) => id,
            Err(response) => return response,
        };
        match catalog.user(id) {
            Some(user) if caller_tenant(&headers).is_none_or(|tenant| tenant == user.tenant) => {
                Json(user).into_response()
            }
            _ => not_found("user", id),
        }
    }
    Router::new()
        .route("/users/{id}", get(one))
        .with_state(catalog)
}

/// The tenant the gateway verified, when the call came through one.
fn caller_tenant(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-auth-tenant")
        .and_then(|value| value.to_str().ok())
}

#[derive(Debug, Deserialize)]
struct OrdersQuery {
    user: Option<String>,
}

/// `GET /orders?user=`, `GET /orders/{id}`, `POST /orders`.
///
/// When the gateway sends `X-Auth-Tenant`, only that tenant's orders exist:
/// this is the fine-grained check that belongs to the service.
pub(crate) fn orders(catalog: Arc<Catalog>) -> Router {
    async fn one(State(catalog): Shared, headers: HeaderMap, Path(id): Path<String>) -> Response {
        let id = match parse_id(&id) {
            Ok(id) => id,
            Err(response) => return response,
        };
        match catalog.order(id) {
            Some(order) if caller_tenant(&headers).is_none_or(|tenant| tenant == order.tenant) => {
                Json(order).into_response()
            }
            _ => not_found("order", id),
        }
    }
    async fn of_user(
        State(catalog): Shared,
        headers: HeaderMap,
        Query(query): Query<OrdersQuery>,
    ) -> Response {
        let Some(user) = query.user else {
            return problem(400, "MISSING_USER", "the user query parameter is required")
                .into_response();
        };
        let user = match parse_id(&user) {
            Ok(user) => user,
            Err(response) => return response,
        };
        let tenant = caller_tenant(&headers);
        let items = catalog
            .orders_of(user)
            .into_iter()
            .filter(|order| tenant.is_none_or(|tenant| tenant == order.tenant))
            .collect();
        Json(Page {
            items,
            next_cursor: None,
        })
        .into_response()
    }
    async fn place(
        State(catalog): Shared,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> Response {
        let new: NewOrder = match serde_json::from_slice(&body) {
            Ok(new) => new,
            Err(error) => return problem(400, "INVALID_ORDER", &error.to_string()).into_response(),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        match catalog.place_order(&new, caller_tenant(&headers), now) {
            Ok(order) => (http::StatusCode::CREATED, Json(order)).into_response(),
            Err(error) => problem(422, "ORDER_REJECTED", &error.to_string()).into_response(),
        }
    }
    Router::new()
        .route("/orders", get(of_user).post(place))
        .route("/orders/{id}", get(one))
        .with_state(catalog)
}
