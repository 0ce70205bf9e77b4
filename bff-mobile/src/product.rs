//! The product as the app's screens show it: the detail screen and every
//! list (listing, order lines) share one `Product` type.
//!
//! Fields are resolved lazily: `name` and the images come with the product
//! itself, `price` from the pricing service, `stock` from the inventory
//! service, `rating` and `topReviews` from the reviews service, each fetched
//! at most once per product and only when a selected field needs it.
//! Sibling fields resolve concurrently, and every fetch goes through the
//! request's loaders (`loaders`): one batch call per service, however many
//! products the query names. Price, stock and reviews are optional parts:
//! when their service fails, the field is `null` with an error at its own
//! path, and the rest of the product is answered.

use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use shared_schema::catalog::{Price, Product, ProductReviews, StockLevel};
use tokio::sync::OnceCell;

use crate::{
    loaders::{BatchLoader, Batched, TOP_REVIEWS, not_found},
    money::Money,
    schema::{invalid_argument, or_null},
};

/// Units at or below which stock shows as `LOW`.
const LOW_STOCK: u32 = 5;

/// A product, trimmed for a phone screen.
#[derive(Debug)]
pub(crate) struct ProductNode {
    product: Product,
    price: OnceCell<async_graphql::Result<Price>>,
    stock: OnceCell<async_graphql::Result<StockLevel>>,
    reviews: OnceCell<async_graphql::Result<ProductReviews>>,
}

impl From<Product> for ProductNode {
    fn from(product: Product) -> Self {
        Self {
            product,
            price: OnceCell::new(),
            stock: OnceCell::new(),
            reviews: OnceCell::new(),
        }
    }
}

/// Whether a product can be ordered now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub(crate) enum StockState {
    /// More than a few units.
    InStock,
    /// A few units left.
    Low,
    /// None left.
    Out,
}

impl From<&StockLevel> for StockState {
    fn from(stock: &StockLevel) -> Self {
        match stock.available {
            0 => Self::Out,
            available if available <= LOW_STOCK => Self::Low,
            _ => Self::InStock,
        }
    }
}

/// What customers think of a product.
#[derive(Debug, SimpleObject)]
pub(crate) struct RatingSummary {
    /// Mean stars, 1 to 5; 0 when there are no reviews.
    average: f64,
    /// Number of reviews.
    count: u32,
}

/// One customer review.
#[derive(Debug, SimpleObject)]
pub(crate) struct Review {
    /// 1 to 5 stars.
    rating: u8,
    /// Headline.
    title: String,
    /// Text.
    body: String,
}

/// Loads resource `T` of the product once per node, however many of its
/// fields the query selects, through the request's loader (one batch call
/// for every product of the query); every field sees the same answer or
/// error. A failure is recorded as the degraded part (`BFF-Partial`).
async fn fetch_once<'a, T: Batched>(
    cell: &'a OnceCell<async_graphql::Result<T>>,
    id: u64,
    ctx: &Context<'_>,
) -> async_graphql::Result<&'a T> {
    cell.get_or_init(|| async move {
        let request = ctx.data::<gateway_core::RequestContext>()?;
        ctx.data::<BatchLoader<T>>()?
            .load_one(id)
            .await?
            .ok_or_else(|| not_found::<T>(request))
    })
    .await
    .as_ref()
    .map_err(Clone::clone)
}

#[Object(name = "Product")]
impl ProductNode {
    /// Product id.
    async fn id(&self) -> ID {
        ID(self.product.id.to_string())
    }

    /// Display name.
    async fn name(&self) -> &str {
        &self.product.name
    }

    /// The main image's URL, for lists.
    async fn image(&self) -> &str {
        &self.product.image_url
    }

    /// Every image's URL, the main one first, for the detail screen.
    async fn images(&self) -> Vec<&str> {
        vec![self.product.image_url.as_str()]
    }

    /// Price to pay; `null`, with an error, when pricing failed.
    async fn price(&self, ctx: &Context<'_>) -> Option<Money> {
        let price = fetch_once(&self.price, self.product.id, ctx).await;
        or_null(
            ctx,
            price.map(|price| Money {
                amount_minor: price.amount_minor,
                currency: price.currency.clone(),
            }),
        )
    }

    /// Whether it can be ordered now; `null`, with an error, when inventory
    /// failed.
    async fn stock(&self, ctx: &Context<'_>) -> Option<StockState> {
        let stock = fetch_once(&self.stock, self.product.id, ctx).await;
        or_null(ctx, stock.map(StockState::from))
    }

    /// Stars and number of reviews; `null`, with an error, when reviews failed.
    async fn rating(&self, ctx: &Context<'_>) -> Option<RatingSummary> {
        let reviews = fetch_once(&self.reviews, self.product.id, ctx).await;
        or_null(
            ctx,
            reviews.map(|reviews| RatingSummary {
                // The service's decimal as it wrote it (3.047619), not the
                // binary f32 widened (3.047619104385376).
                average: reviews
                    .average_rating
                    .to_string()
                    .parse()
                    .unwrap_or_default(),
                count: reviews.total,
            }),
        )
    }

    /// The newest reviews, at most `first` (1 to 10); `null`, with an
    /// error, when reviews failed.
    async fn top_reviews(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 3)] first: i32,
    ) -> Option<Vec<Review>> {
        let Some(first) = usize::try_from(first)
            .ok()
            .filter(|first| (1..=TOP_REVIEWS).contains(first))
        else {
            let refused = invalid_argument("first", format!("must be 1 to {TOP_REVIEWS}"));
            return or_null(ctx, Err(refused));
        };
        let reviews = fetch_once(&self.reviews, self.product.id, ctx).await;
        or_null(
            ctx,
            reviews.map(|reviews| {
                reviews
                    .items
                    .iter()
                    .take(first)
                    .map(|review| Review {
                        rating: review.rating,
                        title: review.title.clone(),
                        body: review.body.clone(),
                    })
                    .collect()
            }),
        )
    }
}
