//! `GET /api/product-page/{id}`: everything a product page shows, in one document.
//!
//! The page is assembled with gateway-core's `aggregate`: all four parts
//! are fetched in parallel. The product itself is required: if it does not
//! exist the page is a 404, and if the products service fails the page
//! fails at once with its problem, without waiting for the other parts.
//! Price, availability and reviews are optional: when one of them fails the
//! page is still a 200, with that part `null` and named in `missing` with
//! its cause (and in the `BFF-Partial` header), so the browser can render
//! what it has.

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::{Path, State},
};
use gateway_core::{
    Error, RequestContext,
    downstream::{
        Downstreams,
        aggregate::{aggregate, optional, required},
        fetching,
    },
};
use serde::{Deserialize, Serialize};
use shared_schema::catalog::{Price, Product, ProductReviews, REVIEWS, StockLevel};

/// What the page is assembled from.
#[derive(Debug, Clone)]
pub(crate) struct PageSources {
    /// The downstream clients.
    pub(crate) services: Downstreams,
    /// Reviews shown on the page (`[web] product_page_reviews`).
    pub(crate) reviews: u32,
}

/// The product page document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductPage {
    /// The product.
    pub product: ProductSummary,
    /// Its price; `null` when pricing failed.
    pub price: Option<PriceView>,
    /// Its availability; `null` when inventory failed.
    pub availability: Option<Availability>,
    /// Its reviews; `null` when reviews failed.
    pub reviews: Option<ReviewDigest>,
    /// Parts that could not be fetched (`price`, `availability`,
    /// `reviews`), each with its cause (`timeout`, `circuit_open`...), as
    /// in `BFF-Partial`; empty when the page is whole.
    pub missing: BTreeMap<String, String>,
}

/// The product part of the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductSummary {
    /// Product id.
    pub id: u64,
    /// Stock keeping unit.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Brand.
    pub brand: String,
    /// Category slug.
    pub category: String,
    /// Main image.
    pub image_url: String,
}

/// The price part of the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PriceView {
    /// ISO 4217 currency.
    pub currency: String,
    /// Price to pay, minor units.
    pub amount_minor: i64,
    /// List price, minor units.
    pub list_amount_minor: i64,
    /// Discount off the list price, whole percent.
    pub discount_percent: u8,
    /// Ready to display, for example `12.99 EUR`.
    pub formatted: String,
}

/// The availability part of the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Availability {
    /// Whether it can be ordered now.
    pub in_stock: bool,
    /// Units available.
    pub available: u32,
    /// Shipping warehouse.
    pub warehouse: String,
}

/// The reviews part of the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewDigest {
    /// Mean rating, 0 to 5.
    pub average_rating: f32,
    /// Number of reviews.
    pub total: u32,
    /// The newest reviews.
    pub top: Vec<ReviewView>,
}

/// One review on the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewView {
    /// 1 to 5.
    pub rating: u8,
    /// Headline.
    pub title: String,
    /// Text.
    pub body: String,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
}

impl From<Product> for ProductSummary {
    fn from(product: Product) -> Self {
        Self {
            id: product.id,
            sku: product.sku,
            name: product.name,
            description: product.description,
            brand: product.brand,
            category: product.category,
            image_url: product.image_url,
        }
    }
}

impl From<Price> for PriceView {
    fn from(price: Price) -> Self {
        let discount = if price.list_amount_minor > 0 {
            100 - price.amount_minor * 100 / price.list_amount_minor
        } else {
            0
        };
        Self {
            formatted: format!(
                "{}.{:02} {}",
                price.amount_minor / 100,
                price.amount_minor % 100,
                price.currency
            ),
            discount_percent: discount.clamp(0, 100) as u8,
            currency: price.currency,
            amount_minor: price.amount_minor,
            list_amount_minor: price.list_amount_minor,
        }
    }
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

impl From<ProductReviews> for ReviewDigest {
    fn from(reviews: ProductReviews) -> Self {
        Self {
            average_rating: (reviews.average_rating * 10.0).round() / 10.0,
            total: reviews.total,
            top: reviews
                .items
                .into_iter()
                .map(|review| ReviewView {
                    rating: review.rating,
                    title: review.title,
                    body: review.body,
                    created_at: review.created_at,
                })
                .collect(),
        }
    }
}

pub(crate) async fn get_product_page(
    State(PageSources { services, reviews }): State<PageSources>,
    context: RequestContext,
    Path(id): Path<u64>,
) -> Result<Json<ProductPage>, Error> {
    let reviews_path = format!("/reviews?product={id}&limit={reviews}");
    let (product, price, stock, reviews) = aggregate((
        required(async {
            services
                .fetch::<Product>(id, &context)
                .await
                .map_err(fetching("product", id))
        }),
        optional("price", &context, services.fetch::<Price>(id, &context)),
        optional(
            "availability",
            &context,
            services.fetch::<StockLevel>(id, &context),
        ),
        optional(
            "reviews",
            &context,
            services
                .client(REVIEWS.name)
                .get::<ProductReviews>(reviews_path, &context),
        ),
    ))
    .await?;
    Ok(Json(ProductPage {
        product: product.into(),
        price: price.map(PriceView::from),
        availability: stock.map(Availability::from),
        reviews: reviews.map(ReviewDigest::from),
        missing: context
            .degraded()
            .into_iter()
            .map(|degraded| (degraded.part.to_owned(), degraded.cause.to_owned()))
            .collect(),
    }))
}
