//! `GET /v1/products` and `GET /v1/products/{id}`: products with their
//! price and stock, all or nothing.
//!
//! Partners integrate against a stable contract, so these routes never
//! answer with a part missing: the parts are fetched in parallel
//! (gateway-core's `aggregate`: the product required, its price and stock
//! dependent on it) and the first to fail fails the request at once with
//! its problem: 404 `NOT_FOUND` when the product does not exist, 502, 503
//! or 504 with a `DOWNSTREAM_*` code naming the cause when a service fails.
//! A page's prices and stock come from one batch call to each service.
//!
//! The listing is the feed a partner syncs its catalogue from: products in
//! id order, so new ones only ever join at the end, filtered by `category`
//! and `updated_since`, paged by an opaque `cursor` that is signed over
//! the filters it was issued for.

use std::collections::HashMap;

use axum::{
    Json,
    extract::{Path, Query, State},
};
use gateway_core::{
    Error, RequestContext,
    cursor::CursorSigner,
    downstream::{
        DownstreamError, Downstreams,
        aggregate::{aggregate, dependent, required},
        fetching,
    },
};
use serde::{Deserialize, Serialize};
use shared_schema::{
    Batch, Page, batch_path,
    catalog::{INVENTORY, PRICING, PRODUCTS, Price, Product, StockLevel},
};
use utoipa::ToSchema;

use super::{Money, V1State, timestamp};
use crate::query::{QueryParams, number_in};

/// Products a page has unless `limit` says otherwise.
const DEFAULT_LIMIT: u32 = 20;
/// Most products in one page.
const MAX_LIMIT: u32 = 100;

/// A product as partners see it (v1; fields are only ever added).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Product)]
pub struct PartnerProduct {
    /// Product id.
    pub id: u64,
    /// Stock keeping unit.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Brand.
    pub brand: String,
    /// Category slug.
    pub category: String,
    /// Current price.
    pub price: PartnerPrice,
    /// Current stock.
    pub stock: PartnerStock,
    /// When the product was created (ISO 8601, UTC).
    #[schema(format = DateTime, example = "2026-03-01T09:30:00Z")]
    pub created_at: String,
    /// When the product last changed (ISO 8601, UTC); what `updated_since` filters on.
    #[schema(format = DateTime, example = "2026-04-12T17:05:00Z")]
    pub updated_at: String,
}

/// A price in minor units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Price)]
pub struct PartnerPrice {
    /// Price to pay, minor units (cents).
    pub amount_minor: i64,
    /// List price before discount, minor units.
    pub list_amount_minor: i64,
    /// ISO 4217 currency code.
    #[schema(example = "EUR")]
    pub currency: String,
}

/// Stock of a product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Stock)]
pub struct PartnerStock {
    /// Units that can be ordered now.
    pub available: u32,
    /// Warehouse code.
    pub warehouse: String,
}

/// One page of products.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProductPage {
    /// The products of this page, in id order.
    pub items: Vec<PartnerProduct>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

impl PartnerProduct {
    fn assemble(product: Product, price: Price, stock: StockLevel) -> Self {
        Self {
            id: product.id,
            sku: product.sku,
            name: product.name,
            brand: product.brand,
            category: product.category,
            price: PartnerPrice {
                amount_minor: price.amount_minor,
                list_amount_minor: price.list_amount_minor,
                currency: price.currency,
            },
            stock: PartnerStock {
                available: stock.available,
                warehouse: stock.warehouse,
            },
            created_at: timestamp(product.created_at),
            updated_at: timestamp(product.updated_at),
        }
    }
}

impl From<&PartnerPrice> for Money {
    fn from(price: &PartnerPrice) -> Self {
        Self {
            amount_minor: price.amount_minor,
            currency: price.currency.clone(),
        }
    }
}

/// The query of `GET /v1/products`, checked.
#[derive(Debug, PartialEq)]
struct Listing {
    limit: u32,
    category: Option<String>,
    /// Seconds since the Unix epoch.
    updated_since: Option<u64>,
    /// The service's cursor, opened.
    cursor: Option<String>,
}

impl Listing {
    fn parse(pairs: Vec<(String, String)>, cursors: &CursorSigner) -> Result<Self, Error> {
        let mut query = QueryParams::new(pairs, &["limit", "cursor", "category", "updated_since"]);
        let limit = query.take("limit", number_in(1, MAX_LIMIT));
        let category = query.take("category", |slug| {
            let valid = (1..=64).contains(&slug.len())
                && slug
                    .bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
            if valid {
                Ok(slug.to_owned())
            } else {
                Err("must be a category slug: 1 to 64 of a-z, 0-9 and '-'".to_owned())
            }
        });
        let updated_since = query.take("updated_since", |text| {
            humantime::parse_rfc3339(text)
                .ok()
                .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|since| since.as_secs())
                .ok_or_else(|| {
                    "must be an ISO 8601 UTC time such as 2026-04-01T00:00:00Z".to_owned()
                })
        });
        let filters = feed_of(category.as_deref(), updated_since);
        let cursor = query.take("cursor", |cursor| {
            cursors.open(&filters, cursor).ok_or_else(|| {
                "is not a cursor of this listing (it was altered, or issued with other filters)"
                    .to_owned()
            })
        });
        query.finish()?;
        Ok(Self {
            limit: limit.unwrap_or(DEFAULT_LIMIT),
            category,
            updated_since,
            cursor,
        })
    }

    /// The products service's path for this page.
    fn path(&self) -> String {
        let mut path = format!("/products?sort=id&limit={}", self.limit);
        if let Some(category) = &self.category {
            path.push_str("&category=");
            path.push_str(category);
        }
        if let Some(since) = self.updated_since {
            path.push_str(&format!("&updated_since={since}"));
        }
        if let Some(cursor) = &self.cursor {
            path.push_str("&cursor=");
            path.extend(percent_encoding::utf8_percent_encode(
                cursor,
                percent_encoding::NON_ALPHANUMERIC,
            ));
        }
        path
    }
}

/// What a cursor is bound to: the filters of the feed it pages.
fn feed_of(category: Option<&str>, updated_since: Option<u64>) -> String {
    format!(
        "products {} {}",
        category.unwrap_or("*"),
        updated_since.map_or_else(|| "*".to_owned(), |since| since.to_string())
    )
}

/// Products in id order, with their current price and stock.
#[utoipa::path(
    get,
    path = "/products",
    tag = "products",
    operation_id = "listProducts",
    params(
        ("limit" = Option<u32>, Query, description = "Products in one page, 1 to 100 (default 20)", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, pattern = "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$", description = "The `next_cursor` of the page before; opaque, and valid only with the filters it was issued with"),
        ("category" = Option<String>, Query, description = "Only products of this category (its slug, for example `audio`)", pattern = "^[a-z0-9-]{1,64}$"),
        ("updated_since" = Option<String>, Query, description = "Only products changed at or after this time (ISO 8601, UTC, for example `2026-04-01T00:00:00Z`)", format = DateTime),
    ),
    responses((status = 200, description = "A page of products", body = ProductPage)),
    security(("api_key" = ["products:read"]), ("bearer" = ["products:read"])),
    extensions(("x-problems" = json!({ "404": ["NOT_FOUND"] }))),
)]
pub(crate) async fn list_products(
    State(state): State<V1State>,
    context: RequestContext,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<ProductPage>, Error> {
    let listing = Listing::parse(pairs, &state.cursors)?;
    let services = &state.services;
    let page: Page<Product> = services
        .client(PRODUCTS.name)
        .get(listing.path(), &context)
        .await
        .map_err(fetching(
            "category",
            listing.category.as_deref().unwrap_or("*"),
        ))?;
    let ids: Vec<u64> = page.items.iter().map(|product| product.id).collect();
    let (prices, stock) = aggregate((
        required(batch::<Price>(
            services,
            PRICING.name,
            "/prices",
            &ids,
            &context,
        )),
        required(batch::<StockLevel>(
            services,
            INVENTORY.name,
            "/inventory",
            &ids,
            &context,
        )),
    ))
    .await?;
    let mut prices: HashMap<u64, Price> = prices
        .into_iter()
        .map(|price| (price.product_id, price))
        .collect();
    let mut stock: HashMap<u64, StockLevel> = stock
        .into_iter()
        .map(|level| (level.product_id, level))
        .collect();
    let items = page
        .items
        .into_iter()
        .map(|product| {
            let (Some(price), Some(level)) =
                (prices.remove(&product.id), stock.remove(&product.id))
            else {
                return Err(Error::from(DownstreamError::NotFound {
                    service: if prices.contains_key(&product.id) {
                        INVENTORY.name
                    } else {
                        PRICING.name
                    },
                }));
            };
            Ok(PartnerProduct::assemble(product, price, level))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let next_cursor = page.next_cursor.map(|next| {
        state.cursors.sign(
            &feed_of(listing.category.as_deref(), listing.updated_since),
            &next,
        )
    });
    Ok(Json(ProductPage { items, next_cursor }))
}

/// The items of `ids` from one batch call to `service`; none for no ids.
async fn batch<T: serde::de::DeserializeOwned>(
    services: &Downstreams,
    service: &str,
    collection: &str,
    ids: &[u64],
    context: &RequestContext,
) -> Result<Vec<T>, Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let found: Batch<T> = services
        .client(service)
        .get(batch_path(collection, ids), context)
        .await?;
    Ok(found.items)
}

/// A product with its current price and stock.
#[utoipa::path(
    get,
    path = "/products/{id}",
    tag = "products",
    operation_id = "getProduct",
    params(("id" = u64, Path, description = "Product id", minimum = 1)),
    responses((status = 200, description = "The product", body = PartnerProduct)),
    security(("api_key" = ["products:read"]), ("bearer" = ["products:read"])),
)]
pub(crate) async fn get_product(
    State(state): State<V1State>,
    context: RequestContext,
    Path(id): Path<u64>,
) -> Result<Json<PartnerProduct>, Error> {
    let services = &state.services;
    // All or nothing: a part that fails fails the request at once, with its
    // status and code. Only the product's own 404 is the partner's 404: a
    // missing price or stock of an existing product is the gateway's
    // failure (502), and of a missing product it is the product's 404.
    let (product, price, stock) = aggregate((
        required(async {
            services
                .fetch::<Product>(id, &context)
                .await
                .map_err(fetching("product", id))
        }),
        dependent(services.fetch::<Price>(id, &context)),
        dependent(services.fetch::<StockLevel>(id, &context)),
    ))
    .await?;
    Ok(Json(PartnerProduct::assemble(
        product,
        price.get()?,
        stock.get()?,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{invalid_names, pairs};

    fn signer() -> CursorSigner {
        CursorSigner::new(Some("a-secret-of-thirty-two-bytes-long!"), "cursor_secret")
    }

    #[test]
    fn a_listing_query_is_read_into_the_services_path() {
        let cursors = signer();
        let listing = Listing::parse(
            pairs(&[
                ("category", "audio"),
                ("updated_since", "2026-04-01T00:00:00Z"),
                ("limit", "5"),
            ]),
            &cursors,
        )
        .expect("valid");
        assert_eq!(
            listing.path(),
            "/products?sort=id&limit=5&category=audio&updated_since=1775001600"
        );
        let next = cursors.sign(&feed_of(Some("audio"), Some(1_775_001_600)), "40");
        let listing = Listing::parse(
            pairs(&[
                ("category", "audio"),
                ("updated_since", "2026-04-01T00:00:00Z"),
                ("cursor", &next),
            ]),
            &cursors,
        )
        .expect("its own cursor");
        assert_eq!(listing.cursor.as_deref(), Some("40"));
        assert_eq!(listing.limit, DEFAULT_LIMIT);
    }

    #[test]
    fn a_cursor_of_other_filters_and_bad_values_are_named() {
        let cursors = signer();
        let audio = cursors.sign(&feed_of(Some("audio"), None), "40");
        let error = Listing::parse(
            pairs(&[
                ("category", "office"),
                ("cursor", &audio),
                ("limit", "101"),
                ("updated_since", "yesterday"),
            ]),
            &cursors,
        )
        .expect_err("invalid");
        assert_eq!(invalid_names(&error), ["limit", "updated_since", "cursor"]);
        let error = Listing::parse(pairs(&[("category", "Audio&sort=x")]), &cursors)
            .expect_err("not a slug");
        assert_eq!(invalid_names(&error), ["category"]);
    }
}
