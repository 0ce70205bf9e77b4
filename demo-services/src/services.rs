//! The downstream services: one router per service, each served on its own port.

use std::{
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    Extension, Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use gateway_core::cache::CACHE_TAG;
use serde::Deserialize;
use shared_schema::{
    Batch, Page,
    accounts::{NewOrder, Order},
    catalog::{CategoryFacets, Price, Product, ProductReviews, ProductSort, StockLevel},
};

use crate::{
    Rejection,
    data::{Catalog, Recommendations},
    webhooks::Webhooks,
};

/// Most ids in one batch request.
const MAX_BATCH: usize = 100;
/// How long a gateway may keep a product: shared by every caller, fresh
/// for a minute, then served while refreshed, and for ten minutes instead
/// of an error.
const PRODUCT_CACHE: HeaderValue =
    HeaderValue::from_static("public, max-age=60, stale-while-revalidate=30, stale-if-error=600");
/// Listings, facets and related products change with the catalog: shared,
/// fresh for a minute, tagged `products`.
const LISTING_CACHE: HeaderValue =
    HeaderValue::from_static("public, max-age=60, stale-while-revalidate=30");
/// Recommendations are the caller's own, and may be a minute old.
const RECOMMENDATIONS_CACHE: HeaderValue = HeaderValue::from_static("private, max-age=60");
/// A user is the caller's tenant's own: kept per caller, briefly.
const USER_CACHE: HeaderValue = HeaderValue::from_static("private, max-age=30");
/// Orders change as they are placed and paid: never kept.
const ORDER_CACHE: HeaderValue = HeaderValue::from_static("no-store");

/// Default and largest page size of listings.
const DEFAULT_LIMIT: u64 = 20;
const MAX_LIMIT: u64 = 100;

type Shared = State<Arc<Catalog>>;
type Answer<T> = Result<Json<T>, Rejection>;

fn parse_id(text: &str) -> Result<u64, Rejection> {
    text.parse::<u64>().map_err(|_| {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            "INVALID_ID",
            format!("{text:?} is not a numeric id"),
        )
    })
}

fn found<T>(item: Option<T>, what: &str, id: u64) -> Answer<T> {
    item.map(Json).ok_or_else(|| {
        Rejection::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("{what} {id} does not exist"),
        )
    })
}

fn parse_ids(ids: Option<&str>) -> Result<Vec<u64>, Rejection> {
    let ids = ids.ok_or_else(|| {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            "MISSING_IDS",
            "the ids query parameter is required",
        )
    })?;
    let ids: Vec<u64> = ids
        .split(',')
        .map(|id| parse_id(id.trim()))
        .collect::<Result<_, _>>()?;
    if ids.len() > MAX_BATCH {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "BATCH_TOO_LARGE",
            format!("at most {MAX_BATCH} ids per batch"),
        ));
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
fn parse_cursor(cursor: Option<&str>) -> Result<u64, Rejection> {
    cursor.map_or(Ok(0), |cursor| {
        cursor.parse().map_err(|_| {
            Rejection::new(
                StatusCode::BAD_REQUEST,
                "INVALID_CURSOR",
                "the cursor is not one this service issued",
            )
        })
    })
}

fn required(value: Option<String>, name: &str) -> Result<String, Rejection> {
    value.ok_or_else(|| {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            "MISSING_PARAMETER",
            format!("the {name} query parameter is required"),
        )
    })
}

/// The tenant the gateway verified, when the call came through one.
fn caller_tenant(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-auth-tenant")
        .and_then(|value| value.to_str().ok())
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    ids: Option<String>,
    cursor: Option<String>,
    limit: Option<u64>,
    category: Option<String>,
    sort: Option<String>,
    /// Only products changed at or after this time (seconds since the Unix
    /// epoch), in id order.
    updated_since: Option<u64>,
}

fn parse_sort(sort: Option<&str>) -> Result<ProductSort, Rejection> {
    sort.map_or(Ok(ProductSort::default()), |sort| {
        ProductSort::named(sort).ok_or_else(|| {
            Rejection::new(
                StatusCode::BAD_REQUEST,
                "INVALID_SORT",
                format!("{sort:?} is not an order of this listing"),
            )
        })
    })
}

fn unknown_category(slug: &str) -> Rejection {
    Rejection::new(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("category {slug:?} does not exist"),
    )
}

/// A listing's caching headers: [`LISTING_CACHE`], tagged `products`.
fn listing_headers() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, LISTING_CACHE),
        (CACHE_TAG, HeaderValue::from_static("products")),
    ]
}

/// The answer of `GET /products`: a batch for `?ids=`, else a page.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
enum ProductListing {
    Batch(Batch<Product>),
    Page(Page<Product>),
}

/// `GET /products/{id}`, `GET /products?ids=..`, `GET /products?cursor=..&limit=..`,
/// `GET /products?category=..&sort=..&cursor=..&limit=..`, in id order with
/// `sort=id` or `updated_since=..` (the cursor is then the last id seen),
/// `GET /products/{id}/related?limit=..`, `GET /categories/{slug}/facets`.
pub(crate) fn products(catalog: Arc<Catalog>) -> Router {
    async fn one(
        State(catalog): Shared,
        Path(id): Path<String>,
    ) -> Result<impl IntoResponse, Rejection> {
        let id = parse_id(&id)?;
        let product = found(catalog.product(id), "product", id)?;
        let tags = HeaderValue::try_from(format!("product:{id}, products"))
            .expect("a number is header-safe");
        Ok((
            [(header::CACHE_CONTROL, PRODUCT_CACHE), (CACHE_TAG, tags)],
            product,
        ))
    }
    async fn list(
        State(catalog): Shared,
        Query(query): Query<ListQuery>,
    ) -> Answer<ProductListing> {
        if query.ids.is_some() {
            let ids = parse_ids(query.ids.as_deref())?;
            return Ok(Json(ProductListing::Batch(batch(&ids, |id| {
                catalog.product(id)
            }))));
        }
        let offset = parse_cursor(query.cursor.as_deref())?;
        if query.updated_since.is_some() || query.sort.as_deref() == Some("id") {
            let slug = query.category.as_deref();
            let (items, next) = catalog
                .products_after(offset, slug, query.updated_since, limit(query.limit))
                .ok_or_else(|| unknown_category(slug.unwrap_or_default()))?;
            return Ok(Json(ProductListing::Page(Page {
                items,
                next_cursor: next.map(|after| after.to_string()),
            })));
        }
        if let Some(slug) = query.category.as_deref() {
            let sort = parse_sort(query.sort.as_deref())?;
            let (items, next) = catalog
                .category_page(slug, sort, offset, limit(query.limit))
                .ok_or_else(|| unknown_category(slug))?;
            return Ok(Json(ProductListing::Page(Page {
                items,
                next_cursor: next.map(|offset| offset.to_string()),
            })));
        }
        let end = catalog
            .product_count()
            .min(offset.saturating_add(limit(query.limit)));
        Ok(Json(ProductListing::Page(Page {
            items: (offset + 1..=end)
                .filter_map(|id| catalog.product(id))
                .collect(),
            next_cursor: (end < catalog.product_count()).then(|| end.to_string()),
        })))
    }
    async fn listing(
        state: Shared,
        query: Query<ListQuery>,
    ) -> Result<impl IntoResponse, Rejection> {
        // Only a category listing is cacheable; a batch is the caller's own mix.
        let cacheable = query.category.is_some() && query.ids.is_none();
        let listed = list(state, query).await?;
        Ok((cacheable.then(listing_headers), listed))
    }
    async fn related(
        State(catalog): Shared,
        Path(id): Path<String>,
        Query(query): Query<ListQuery>,
    ) -> Result<impl IntoResponse, Rejection> {
        let id = parse_id(&id)?;
        let items = found(catalog.related(id, limit(query.limit)), "product", id)?.0;
        Ok((
            listing_headers(),
            Json(Page {
                items,
                next_cursor: None,
            }),
        ))
    }
    async fn facets(
        State(catalog): Shared,
        Path(slug): Path<String>,
    ) -> Result<impl IntoResponse, Rejection> {
        let facets: CategoryFacets = catalog
            .category_facets(&slug)
            .ok_or_else(|| unknown_category(&slug))?;
        Ok((listing_headers(), Json(facets)))
    }
    Router::new()
        .route("/products", get(listing))
        .route("/products/{id}", get(one))
        .route("/products/{id}/related", get(related))
        .route("/categories/{slug}/facets", get(facets))
        .with_state(catalog)
}

#[derive(Debug, Deserialize)]
struct RecommendationsQuery {
    user: Option<String>,
    limit: Option<u64>,
}

/// `GET /recommendations?user=&limit=`; a user of another tenant than the
/// caller's has none.
pub(crate) fn recommendations(catalog: Arc<Catalog>) -> Router {
    async fn of_user(
        State(catalog): Shared,
        headers: HeaderMap,
        Query(query): Query<RecommendationsQuery>,
    ) -> Result<impl IntoResponse, Rejection> {
        let user = parse_id(&required(query.user, "user")?)?;
        let tenant = caller_tenant(&headers);
        let known = catalog
            .user(user)
            .is_some_and(|found| tenant.is_none_or(|tenant| tenant == found.tenant));
        let recommended: Option<Recommendations> = known
            .then(|| catalog.recommendations(user, limit(query.limit)))
            .flatten();
        Ok((
            [(header::CACHE_CONTROL, RECOMMENDATIONS_CACHE)],
            found(recommended, "user", user)?,
        ))
    }
    Router::new()
        .route("/recommendations", get(of_user))
        .with_state(catalog)
}

/// `GET /inventory/{id}`, `GET /inventory?ids=..`.
pub(crate) fn inventory(catalog: Arc<Catalog>) -> Router {
    async fn one(State(catalog): Shared, Path(id): Path<String>) -> Answer<StockLevel> {
        let id = parse_id(&id)?;
        found(catalog.stock(id), "product", id)
    }
    async fn many(
        State(catalog): Shared,
        Query(query): Query<ListQuery>,
    ) -> Answer<Batch<StockLevel>> {
        let ids = parse_ids(query.ids.as_deref())?;
        Ok(Json(batch(&ids, |id| catalog.stock(id))))
    }
    Router::new()
        .route("/inventory", get(many))
        .route("/inventory/{id}", get(one))
        .with_state(catalog)
}

/// `GET /prices/{id}`, `GET /prices?ids=..`.
pub(crate) fn pricing(catalog: Arc<Catalog>) -> Router {
    async fn one(State(catalog): Shared, Path(id): Path<String>) -> Answer<Price> {
        let id = parse_id(&id)?;
        found(catalog.price(id), "product", id)
    }
    async fn many(State(catalog): Shared, Query(query): Query<ListQuery>) -> Answer<Batch<Price>> {
        let ids = parse_ids(query.ids.as_deref())?;
        Ok(Json(batch(&ids, |id| catalog.price(id))))
    }
    Router::new()
        .route("/prices", get(many))
        .route("/prices/{id}", get(one))
        .with_state(catalog)
}

#[derive(Debug, Deserialize)]
struct ReviewQuery {
    product: Option<String>,
    ids: Option<String>,
    cursor: Option<String>,
    limit: Option<u64>,
}

/// `GET /reviews?product={id}&limit=&cursor=`; `GET /reviews?ids=..&limit=`:
/// the summary and first `limit` reviews of each product.
pub(crate) fn reviews(catalog: Arc<Catalog>) -> Router {
    async fn list(
        State(catalog): Shared,
        Query(query): Query<ReviewQuery>,
    ) -> Result<axum::response::Response, Rejection> {
        if query.ids.is_some() {
            let ids = parse_ids(query.ids.as_deref())?;
            let limit = limit(query.limit);
            return Ok(Json(batch(&ids, |id| catalog.reviews(id, 0, limit))).into_response());
        }
        Ok(of_product(&catalog, query)?.into_response())
    }
    fn of_product(catalog: &Catalog, query: ReviewQuery) -> Answer<ProductReviews> {
        let product = parse_id(&required(query.product, "product")?)?;
        let offset = parse_cursor(query.cursor.as_deref())?;
        found(
            catalog.reviews(product, offset, limit(query.limit)),
            "product",
            product,
        )
    }
    Router::new()
        .route("/reviews", get(list))
        .with_state(catalog)
}

/// `GET /users/{id}`; a user of another tenant than the caller's does not exist.
pub(crate) fn users(catalog: Arc<Catalog>) -> Router {
    async fn one(
        State(catalog): Shared,
        headers: HeaderMap,
        Path(id): Path<String>,
    ) -> Result<impl IntoResponse, Rejection> {
        let id = parse_id(&id)?;
        let tenant = caller_tenant(&headers);
        let user = catalog
            .user(id)
            .filter(|user| tenant.is_none_or(|tenant| tenant == user.tenant));
        Ok((
            [(header::CACHE_CONTROL, USER_CACHE)],
            found(user, "user", id)?,
        ))
    }
    Router::new()
        .route("/users/{id}", get(one))
        .with_state(catalog)
}

#[derive(Debug, Deserialize)]
struct OrdersQuery {
    user: Option<String>,
    limit: Option<u64>,
    cursor: Option<String>,
}

/// `GET /orders?user=&limit=&cursor=` (newest first; without `user`, every
/// order of the caller's tenant), `GET /orders/{id}`, `POST /orders`.
///
/// When the gateway sends `X-Auth-Tenant`, only that tenant's orders exist:
/// this is the fine-grained check that belongs to the service. A placed
/// order is published to the webhooks service as `order.created`.
pub(crate) fn orders(catalog: Arc<Catalog>, webhooks: Arc<Webhooks>) -> Router {
    async fn one(
        State(catalog): Shared,
        headers: HeaderMap,
        Path(id): Path<String>,
    ) -> Result<impl IntoResponse, Rejection> {
        let id = parse_id(&id)?;
        let tenant = caller_tenant(&headers);
        let order = catalog
            .order(id)
            .filter(|order| tenant.is_none_or(|tenant| tenant == order.tenant));
        Ok((
            [(header::CACHE_CONTROL, ORDER_CACHE)],
            found(order, "order", id)?,
        ))
    }
    async fn of_user(
        State(catalog): Shared,
        headers: HeaderMap,
        Query(query): Query<OrdersQuery>,
    ) -> Answer<Page<Order>> {
        let offset = usize::try_from(parse_cursor(query.cursor.as_deref())?).unwrap_or(usize::MAX);
        let limit = usize::try_from(limit(query.limit)).unwrap_or(usize::MAX);
        let tenant = caller_tenant(&headers);
        // A user's orders, or without one the whole tenant's (a partner's view).
        let orders = match (query.user, tenant) {
            (Some(user), _) => catalog.orders_of(parse_id(&user)?),
            (None, Some(tenant)) => catalog.orders_of_tenant(tenant),
            (None, None) => {
                return Err(Rejection::new(
                    StatusCode::BAD_REQUEST,
                    "MISSING_PARAMETER",
                    "the user query parameter is required without X-Auth-Tenant",
                ));
            }
        };
        let mut orders: Vec<Order> = orders
            .into_iter()
            .filter(|order| tenant.is_none_or(|tenant| tenant == order.tenant))
            .skip(offset)
            .take(limit.saturating_add(1))
            .collect();
        let more = orders.len() > limit;
        orders.truncate(limit);
        let next_cursor = more.then(|| (offset + limit).to_string());
        Ok(Json(Page {
            items: orders,
            next_cursor,
        }))
    }
    async fn place(
        State(catalog): Shared,
        Extension(webhooks): Extension<Arc<Webhooks>>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> Result<(StatusCode, Json<Order>), Rejection> {
        let new: NewOrder = serde_json::from_slice(&body).map_err(|error| {
            Rejection::new(StatusCode::BAD_REQUEST, "INVALID_ORDER", error.to_string())
        })?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let order = catalog
            .place_order(&new, caller_tenant(&headers), now)
            .map_err(|error| {
                Rejection::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "ORDER_REJECTED",
                    error.to_string(),
                )
            })?;
        webhooks.publish(&order);
        Ok((StatusCode::CREATED, Json(order)))
    }
    Router::new()
        .route("/orders", get(of_user).post(place))
        .route("/orders/{id}", get(one))
        .layer(Extension(webhooks))
        .with_state(catalog)
}
