//! `GET /v1/products/{id}`: a product with its price and stock, all or nothing.

use axum::{
    Json,
    extract::{Path, State},
};
use gateway_core::{
    Error, RequestContext,
    downstream::{Downstreams, fetching},
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
    let (product, price, stock) = tokio::join!(
        services.fetch::<Product>(id, &context),
        services.fetch::<Price>(id, &context),
        services.fetch::<StockLevel>(id, &context),
    );
    // Only the product's own 404 is the partner's 404: a missing price or
    // stock of an existing product is the gateway's failure (502).
    Ok(Json(PartnerProduct::assemble(
        product.map_err(fetching("product", id))?,
        price?,
        stock?,
    )))
}
