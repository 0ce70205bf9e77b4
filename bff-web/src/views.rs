//! The shapes the pages share, and the batched lookups that fill them.
//!
//! A page showing many products (a listing, related products, the
//! dashboard's recommendations) gets their prices and stock from the
//! services' batch endpoints, one call per service per page, never one per
//! item (`offers`). Both parts are optional: when one fails the products
//! are shown without it, named in `missing` (`price`, `availability`).

use std::collections::HashMap;

use gateway_core::{
    Error, RequestContext,
    downstream::{
        Downstreams,
        aggregate::{aggregate, optional},
    },
};
use serde::{Deserialize, Serialize};
use shared_schema::{
    Batch, batch_path,
    catalog::{INVENTORY, PRICING, PRODUCTS, Price, StockLevel},
};

/// A price as a page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PriceView {
    /// ISO 4217 currency.
    pub currency: String,
    /// Price to pay, minor units.
    pub amount_minor: i64,
    /// List price, minor units.
    pub list_amount_minor: i64,
    /// Discount off the list price, whole percent, as the pricing service grants it.
    pub discount_percent: u8,
    /// Ready to display, for example `12.99 EUR`.
    pub formatted: String,
}

impl From<Price> for PriceView {
    fn from(price: Price) -> Self {
        Self {
            formatted: formatted(price.amount_minor, &price.currency),
            currency: price.currency,
            amount_minor: price.amount_minor,
            list_amount_minor: price.list_amount_minor,
            discount_percent: price.discount_percent,
        }
    }
}

/// An amount of money as a page shows it (an order's total, a line's price).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Money {
    /// Minor units, as the service computed them.
    pub amount_minor: i64,
    /// ISO 4217 currency.
    pub currency: String,
    /// Ready to display, for example `12.99 EUR`.
    pub formatted: String,
}

impl Money {
    /// `amount_minor` of `currency`.
    pub(crate) fn new(amount_minor: i64, currency: &str) -> Self {
        Self {
            amount_minor,
            currency: currency.to_owned(),
            formatted: formatted(amount_minor, currency),
        }
    }
}

/// `1299` EUR as `12.99 EUR`: presentation only, the amount is the service's.
fn formatted(amount_minor: i64, currency: &str) -> String {
    let sign = if amount_minor < 0 { "-" } else { "" };
    let amount = amount_minor.unsigned_abs();
    format!("{sign}{}.{:02} {currency}", amount / 100, amount % 100)
}

/// The availability of a product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Availability {
    /// Whether it can be ordered now.
    pub in_stock: bool,
    /// Units available.
    pub available: u32,
    /// Shipping warehouse.
    pub warehouse: String,
}

impl From<StockLevel> for Availability {
    fn from(stock: StockLevel) -> Self {
        Self {
            in_stock: stock.available > 0,
            available: stock.available,
            warehouse: stock.warehouse,
        }
    }
}

/// A product as a list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductCard {
    /// Product id.
    pub id: u64,
    /// Display name.
    pub name: String,
    /// Brand.
    pub brand: String,
    /// Category slug.
    pub category: String,
    /// Main image.
    pub image_url: String,
}

/// A product as the products service lists it, read for a card: the fields
/// a card shows. The others (SKU, description) are skipped as they are
/// parsed instead of being copied into strings the page drops.
#[derive(Debug, Deserialize)]
pub(crate) struct ListedProduct {
    id: u64,
    name: String,
    brand: String,
    category: String,
    image_url: String,
}

impl From<ListedProduct> for ProductCard {
    fn from(product: ListedProduct) -> Self {
        Self {
            id: product.id,
            name: product.name,
            brand: product.brand,
            category: product.category,
            image_url: product.image_url,
        }
    }
}

/// A product of a list with what it costs and whether it can be had.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductOffer {
    /// The product.
    pub product: ProductCard,
    /// Its price; `null` when pricing failed or has none.
    pub price: Option<PriceView>,
    /// Its availability; `null` when inventory failed or has none.
    pub availability: Option<Availability>,
}

/// Prices and stock of many products, from one call per service.
#[derive(Debug, Default)]
pub(crate) struct Offers {
    prices: HashMap<u64, PriceView>,
    stock: HashMap<u64, Availability>,
}

impl Offers {
    /// The price of product `id`, if pricing gave one.
    pub(crate) fn price(&self, id: u64) -> Option<PriceView> {
        self.prices.get(&id).cloned()
    }

    /// The availability of product `id`, if inventory gave one.
    pub(crate) fn availability(&self, id: u64) -> Option<Availability> {
        self.stock.get(&id).cloned()
    }

    /// `product` with its price and availability.
    pub(crate) fn offer(&self, product: ProductCard) -> ProductOffer {
        ProductOffer {
            price: self.price(product.id),
            availability: self.availability(product.id),
            product,
        }
    }
}

/// Prices (part `price`) and stock (part `availability`) of `ids`: one
/// batch call to each service, in parallel; none for no ids.
pub(crate) async fn offers(
    services: &Downstreams,
    ids: &[u64],
    context: &RequestContext,
) -> Result<Offers, Error> {
    let (prices, stock) = aggregate((
        prices(services, ids, context),
        stock(services, ids, context),
    ))
    .await?;
    Ok(Offers { prices, stock })
}

/// The prices of `ids` from one batch call (part `price`); empty when
/// pricing failed, and for no ids, which call nothing.
pub(crate) async fn prices(
    services: &Downstreams,
    ids: &[u64],
    context: &RequestContext,
) -> Result<HashMap<u64, PriceView>, Error> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let batch = optional(
        "price",
        context,
        services
            .client(PRICING.name)
            .get::<Batch<Price>>(batch_path("/prices", ids), context),
    )
    .await?;
    Ok(batch
        .into_iter()
        .flat_map(|batch| batch.items)
        .map(|price| (price.product_id, price.into()))
        .collect())
}

/// The stock of `ids` from one batch call (part `availability`); empty
/// when inventory failed, and for no ids, which call nothing.
async fn stock(
    services: &Downstreams,
    ids: &[u64],
    context: &RequestContext,
) -> Result<HashMap<u64, Availability>, Error> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let batch = optional(
        "availability",
        context,
        services
            .client(INVENTORY.name)
            .get::<Batch<StockLevel>>(batch_path("/inventory", ids), context),
    )
    .await?;
    Ok(batch
        .into_iter()
        .flat_map(|batch| batch.items)
        .map(|stock| (stock.product_id, stock.into()))
        .collect())
}

/// Products `ids` as cards, from one batch call (part `products`); `None`
/// when the products service failed. Ids it does not know are left out.
pub(crate) async fn product_cards(
    services: &Downstreams,
    ids: &[u64],
    context: &RequestContext,
) -> Result<Option<HashMap<u64, ProductCard>>, Error> {
    if ids.is_empty() {
        return Ok(Some(HashMap::new()));
    }
    let products = optional(
        "products",
        context,
        services
            .client(PRODUCTS.name)
            .get::<Batch<ListedProduct>>(batch_path("/products", ids), context),
    )
    .await?;
    Ok(products.map(|batch| {
        batch
            .items
            .into_iter()
            .map(|product| (product.id, product.into()))
            .collect()
    }))
}

/// The parts of the request that degraded, by name, for a page's `missing`.
pub(crate) fn missing(context: &RequestContext) -> std::collections::BTreeMap<String, String> {
    context
        .degraded()
        .into_iter()
        .map(|degraded| (degraded.part.to_owned(), degraded.cause.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_shown_with_two_decimals() {
        assert_eq!(formatted(1299, "EUR"), "12.99 EUR");
        assert_eq!(formatted(5, "EUR"), "0.05 EUR");
        assert_eq!(formatted(-250, "EUR"), "-2.50 EUR");
    }
}
