//! `GET /api/product-page/{id}`: everything a product page shows, in one document.
//!
//! Three parts run in parallel with gateway-core's `aggregate`:
//! - the product (required: if it does not exist the page is a 404, and
//!   if the products service fails the page fails at once with its
//!   problem);
//! - its reviews with their rating summary (optional);
//! - the products related to it (optional), then the prices and stock of
//!   the product and of every related product, one batch call per service
//!   ([`crate::views::offers`]). The product's id is in the path, so this
//!   chain waits neither for the product nor for the reviews.
//!
//! Price, availability, reviews and related products are optional: when
//! one fails the page is still a 200, with that part `null` and named in
//! `missing` with its cause (and in the `BFF-Partial` header), so the
//! browser can render what it has.

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
use shared_schema::{
    Page,
    catalog::{PRODUCTS, Product, ProductReviews, REVIEWS},
};

use crate::views::{self, Availability, ListedProduct, PriceView, ProductCard, ProductOffer};

/// What the page is assembled from.
#[derive(Debug, Clone)]
pub(crate) struct PageSources {
    /// The downstream clients.
    pub(crate) services: Downstreams,
    /// Reviews shown on the page (`[web] product_page_reviews`).
    pub(crate) reviews: u32,
    /// Related products shown (`[web] related_products`).
    pub(crate) related: u32,
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
    /// Its rating summary and newest reviews; `null` when reviews failed.
    pub reviews: Option<ReviewDigest>,
    /// Products of the same category, each with its price and
    /// availability; `null` when they could not be listed.
    pub related: Option<Vec<ProductOffer>>,
    /// Parts that could not be fetched (`price`, `availability`,
    /// `reviews`, `related`), each with its cause (`timeout`,
    /// `circuit_open`...), as in `BFF-Partial`; empty when the page is whole.
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

/// The reviews part of the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewDigest {
    /// Mean rating, 0 to 5.
    pub average_rating: f32,
    /// Number of reviews.
    pub total: u32,
    /// How many reviews gave each number of stars, `"1"` to `"5"`.
    pub histogram: BTreeMap<String, u32>,
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

impl From<ProductReviews> for ReviewDigest {
    fn from(reviews: ProductReviews) -> Self {
        Self {
            // One decimal, as the page shows it.
            average_rating: (reviews.average_rating * 10.0).round() / 10.0,
            total: reviews.total,
            histogram: (1..=5)
                .zip(reviews.histogram)
                .map(|(stars, count)| (stars.to_string(), count))
                .collect(),
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
    State(PageSources {
        services,
        reviews,
        related,
    }): State<PageSources>,
    context: RequestContext,
    Path(id): Path<u64>,
) -> Result<Json<ProductPage>, Error> {
    let reviews_path = format!("/reviews?product={id}&limit={reviews}");
    let related_path = format!("/products/{id}/related?limit={related}");
    let (product, reviews, (related, offers)) = aggregate((
        required(async {
            services
                .fetch::<Product>(id, &context)
                .await
                .map_err(fetching("product", id))
        }),
        optional(
            "reviews",
            &context,
            services
                .client(REVIEWS.name)
                .get::<ProductReviews>(reviews_path, &context),
        ),
        async {
            let related: Option<Vec<ProductCard>> = match related {
                0 => Some(Vec::new()),
                _ => optional(
                    "related",
                    &context,
                    services
                        .client(PRODUCTS.name)
                        .get::<Page<ListedProduct>>(related_path, &context),
                )
                .await?
                .map(|page| page.items.into_iter().map(ProductCard::from).collect()),
            };
            let ids: Vec<u64> = std::iter::once(id)
                .chain(related.iter().flatten().map(|card| card.id))
                .collect();
            let offers = views::offers(&services, &ids, &context).await?;
            Ok((related, offers))
        },
    ))
    .await?;
    Ok(Json(ProductPage {
        price: offers.price(id),
        availability: offers.availability(id),
        product: product.into(),
        reviews: reviews.map(ReviewDigest::from),
        related: related.map(|cards| cards.into_iter().map(|card| offers.offer(card)).collect()),
        missing: views::missing(&context),
    }))
}
