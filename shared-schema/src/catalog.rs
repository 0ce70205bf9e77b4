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
    /// Time of the last change, seconds since the Unix epoch; never before
    /// `created_at`.
    pub updated_at: u64,
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
    /// The discount off the list price, whole percent, as the pricing
    /// service grants it.
    #[serde(default)]
    pub discount_percent: u8,
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
    /// How many reviews gave 1, 2, 3, 4 and 5 stars.
    #[serde(default)]
    pub histogram: [u32; 5],
    /// Reviews of this page, newest first.
    pub items: Vec<Review>,
    /// Cursor of the next page; `None` on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The order of a category listing (`GET /products?category=&sort=`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ProductSort {
    /// The catalog's own ranking (the default).
    #[default]
    Relevance,
    /// Cheapest first.
    PriceAsc,
    /// Dearest first.
    PriceDesc,
    /// Best rated first.
    Rating,
    /// Newest first.
    Newest,
}

impl ProductSort {
    /// Every order, the default first.
    pub const ALL: [Self; 5] = [
        Self::Relevance,
        Self::PriceAsc,
        Self::PriceDesc,
        Self::Rating,
        Self::Newest,
    ];

    /// Its name in a query string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Relevance => "relevance",
            Self::PriceAsc => "price_asc",
            Self::PriceDesc => "price_desc",
            Self::Rating => "rating",
            Self::Newest => "newest",
        }
    }

    /// The order named `name`.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|sort| sort.as_str() == name)
    }
}

/// What a category holds, for a listing's filters
/// (`GET /categories/{slug}/facets`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryFacets {
    /// The category's slug.
    pub category: String,
    /// Products in the category.
    pub total: u32,
    /// Each brand in the category with its number of products, most first.
    pub brands: Vec<BrandCount>,
    /// Price bands of the category's products, cheapest first.
    pub price_bands: Vec<PriceBand>,
    /// Products in the category that can be sold now.
    pub in_stock: u32,
}

/// One brand of a category and how many of its products it makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrandCount {
    /// Brand name.
    pub brand: String,
    /// Products of the brand in the category.
    pub count: u32,
}

/// Products priced from `min_minor` up to, not including, `max_minor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceBand {
    /// Lowest price of the band, minor units.
    pub min_minor: i64,
    /// Price the band stops below, minor units; `None` for the last band.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_minor: Option<i64>,
    /// Products priced in the band.
    pub count: u32,
}
