//! Catalog contracts: the products, inventory, pricing and reviews services.

use serde::{Deserialize, Serialize};

use crate::{Resource, ServiceSpec};

/// The product catalog.
pub const PRODUCTS: ServiceSpec = ServiceSpec::new("products", 7001);
/// Stock levels.
pub const INVENTORY: ServiceSpec = ServiceSpec::new("inventory", 7002);
/// Prices.
pub const PRICING: ServiceSpec = ServiceSpec::new("pricing", 7003);
/// Customer reviews.
pub const REVIEWS: ServiceSpec = ServiceSpec::new("reviews", 7004);

/// A product as the products service describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// Stable numeric id.
    pub id: u64,
    /// Stock keeping unit, unique per product.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Marketing description, a few sentences.
    pub description: String,
    /// Category slug, for example `kitchen`.
    pub category: String,
    /// Brand name.
    pub brand: String,
    /// Absolute URL of the main image.
    pub image_url: String,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: u64,
}

impl Resource for Product {
    const SERVICE: ServiceSpec = PRODUCTS;
    fn path(id: u64) -> String {
        format!("/products/{id}")
    }
}

/// Stock of one product, from the inventory service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockLevel {
    /// The product this stock belongs to.
    pub product_id: u64,
    /// Units that can be sold now.
    pub available: u32,
    /// Units held by open orders.
    pub reserved: u32,
    /// Warehouse code the stock sits in.
    pub warehouse: String,
}

impl Resource for StockLevel {
    const SERVICE: ServiceSpec = INVENTORY;
    fn path(id: u64) -> String {
        format!("/inventory/{id}")
    }
}

/// Price of one product, from the pricing service.
///
/// Money is in minor units (cents) so no float ever touches it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// The product this price belongs to.
    pub product_id: u64,
    /// ISO 4217 currency code.
    pub currency: String,
    /// The price to pay, in minor units.
    pub amount_minor: i64,
    /// The list price before any discount, in minor units.
    pub list_amount_minor: i64,
}

impl Resource for Price {
    const SERVICE: ServiceSpec = PRICING;
    fn path(id: u64) -> String {
        format!("/prices/{id}")
    }
}

/// One customer review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Review {
    /// Review id.
    pub id: u64,
    /// The product reviewed.
    pub product_id: u64,
    /// The author.
    pub user_id: u64,
    /// 1 to 5 stars.
    pub rating: u8,
    /// Short headline.
    pub title: String,
    /// Review text.
    pub body: String,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: u64,
}

/// The reviews of one product: the rating summary and one page of reviews.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductReviews {
    /// The product reviewed.
    pub product_id: u64,
    /// Number of reviews in all.
    pub total: u32,
    /// Mean rating over all reviews, 0 when there are none.
    pub average_rating: f32,
    /// Reviews of this page, newest first.
    pub items: Vec<Review>,
    /// Cursor of the next page; `None` on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}
