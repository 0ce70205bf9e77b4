//! `GET /v1/products/{id}`: a product with its price and stock, all or nothing.
//!
//! Partners integrate against a stable contract, so this route never
//! answers with a part missing: the three parts are fetched in parallel
//! (gateway-core's `aggregate`: the product required, its price and stock
//! dependent on it) and the first to fail fails the request at once with
//! its problem: 404 `NOT_FOUND` when the product does not exist, 502, 503
//! or 504 with a `DOWNSTREAM_*` code naming the cause when a service fails.

use axum::{
    Json,
    extract::{Path, State},
};
use gateway_core::{
    Error, RequestContext,
    downstream::{
        Downstreams,
        aggregate::{aggregate, dependent, required},
        fetching,
    },
};
use serde::{Deserialize, Serialize};
use shared_schema::catalog::{Price, Product, StockLevel};

/// A product as partners see it (v1; fields are only ever added).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

/// A price in minor units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartnerPrice {
    /// Price to pay, minor units (cents).
    pub amount_minor: i64,
    /// List price before discount, minor units.
    pub list_amount_minor: i64,
    /// ISO 4217 currency code.
    pub currency: String,
}

/// Stock of a product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartnerStock {
    /// Units that can be ordered now.
    pub available: u32,
    /// Warehouse code.
    pub warehouse: String,
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
        }
    }
}

pub(crate) async fn get_product(
    State(services): State<Downstreams>,
    context: RequestContext,
    Path(id): Path<u64>,
) -> Result<Json<PartnerProduct>, Error> {
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
