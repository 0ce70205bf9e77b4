//! The GraphQL schema and its resolvers.
//!
//! `Product` fields are resolved lazily: `name` comes with the product
//! itself, `price`/`currency` from the pricing service and `stock`/`inStock`
//! from the inventory service, each fetched at most once per product and only
//! when a selected field needs it. Sibling fields resolve concurrently, and
//! every fetch goes through the request's loaders (`loaders`): one batch
//! call per service, however many products the query names.

use async_graphql::{
    Context, EmptyMutation, EmptySubscription, ErrorExtensions, ID, Object, Schema,
    dataloader::DataLoader,
};
use gateway_core::{Error, RequestContext};
use shared_schema::catalog::{Price, Product, StockLevel};
use tokio::sync::OnceCell;

use crate::{
    MobileSettings,
    loaders::{BatchLoader, Batched, not_found},
};

/// The schema served at `/graphql`.
pub type MobileSchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// Builds the schema with the introspection and suggestions of `settings`
/// (the limits are checked before the schema sees a query: `limits`; the
/// services are reached through each request's loaders).
pub fn build_schema(settings: &MobileSettings) -> MobileSchema {
    let mut schema = Schema::build(Query, EmptyMutation, EmptySubscription);
    if !settings.introspection {
        schema = schema.disable_introspection();
    }
    if !settings.suggestions {
        schema = schema.disable_suggestions();
    }
    schema.finish()
}

/// The schema's SDL, as committed in `bff-mobile/schema.graphql`.
pub fn sdl() -> String {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .finish()
        .sdl()
}

/// A gateway error as a GraphQL error: the client-safe message and the
/// stable code in `extensions.code`, the same code problem+json carries.
pub(crate) fn graphql_error(error: Error) -> async_graphql::Error {
    let code = error.code();
    if error.status().is_server_error() {
        tracing::warn!(%error, code, "GraphQL field failed");
    }
    async_graphql::Error::new(error.client_detail())
        .extend_with(|_, extensions| extensions.set("code", code))
}

/// The root query.
#[derive(Debug)]
pub struct Query;

#[Object]
impl Query {
    /// A product by id; `null` when it does not exist.
    async fn product(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<ProductNode>> {
        let id: u64 = id.parse().map_err(|_| {
            graphql_error(Error::BadRequest(format!(
                "product id {:?} is not numeric",
                id.as_str()
            )))
        })?;
        let products = ctx.data::<DataLoader<BatchLoader<Product>>>()?;
        Ok(products.load_one(id).await?.map(|product| ProductNode {
            product,
            price: OnceCell::new(),
            stock: OnceCell::new(),
        }))
    }
}

/// A product, trimmed for a phone screen.
#[derive(Debug)]
pub(crate) struct ProductNode {
    product: Product,
    price: OnceCell<Result<Price, async_graphql::Error>>,
    stock: OnceCell<Result<StockLevel, async_graphql::Error>>,
}

/// Loads resource `T` of the product once per node, however many of its
/// fields the query selects, through the request's loader (one batch call
/// for every product of the query); every field sees the same answer or
/// error. A failure is recorded as the degraded part (`BFF-Partial`).
async fn fetch_once<'a, T: Batched>(
    cell: &'a OnceCell<Result<T, async_graphql::Error>>,
    id: u64,
    ctx: &Context<'_>,
) -> async_graphql::Result<&'a T> {
    cell.get_or_init(|| async move {
        let request = ctx.data::<RequestContext>()?;
        ctx.data::<DataLoader<BatchLoader<T>>>()?
            .load_one(id)
            .await?
            .ok_or_else(|| not_found::<T>(request))
    })
    .await
    .as_ref()
    .map_err(Clone::clone)
}

/// The value of a field backed by an optional part, or `null` with the
/// error added at the field's own path. Returning the error instead would
/// null the nearest nullable parent, the whole product.
fn or_null<T>(ctx: &Context<'_>, value: async_graphql::Result<T>) -> Option<T> {
    value
        .map_err(|error| ctx.add_error(ctx.set_error_path(error.into_server_error(ctx.item.pos))))
        .ok()
}

impl ProductNode {
    async fn price(&self, ctx: &Context<'_>) -> async_graphql::Result<&Price> {
        fetch_once(&self.price, self.product.id, ctx).await
    }

    async fn stock(&self, ctx: &Context<'_>) -> async_graphql::Result<&StockLevel> {
        fetch_once(&self.stock, self.product.id, ctx).await
    }
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

    /// Brand.
    async fn brand(&self) -> &str {
        &self.product.brand
    }

    /// Main image URL.
    async fn image_url(&self) -> &str {
        &self.product.image_url
    }

    /// Price to pay, in major units of `currency` (for display only);
    /// `null`, with an error, when pricing failed.
    #[graphql(name = "price")]
    async fn price_amount(&self, ctx: &Context<'_>) -> Option<f64> {
        let price = self.price(ctx).await;
        or_null(ctx, price.map(|price| price.amount_minor as f64 / 100.0))
    }

    /// ISO 4217 currency of `price`; `null`, with an error, when pricing failed.
    async fn currency(&self, ctx: &Context<'_>) -> Option<&str> {
        let price = self.price(ctx).await;
        or_null(ctx, price.map(|price| price.currency.as_str()))
    }

    /// Units available now; `null`, with an error, when inventory failed.
    #[graphql(name = "stock")]
    async fn stock_available(&self, ctx: &Context<'_>) -> Option<u32> {
        let stock = self.stock(ctx).await;
        or_null(ctx, stock.map(|stock| stock.available))
    }

    /// Whether it can be ordered now; `null`, with an error, when inventory failed.
    async fn in_stock(&self, ctx: &Context<'_>) -> Option<bool> {
        let stock = self.stock(ctx).await;
        or_null(ctx, stock.map(|stock| stock.available > 0))
    }
}

#[cfg(test)]
mod tests {
    /// The committed SDL, which the app team reads and generates its client
    /// code from, is the schema served. `BFF_MOBILE_WRITE_SDL=1 cargo test -p
    /// bff-mobile` writes it after a deliberate change.
    #[test]
    fn the_committed_sdl_is_the_schema_served() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
        let served = super::sdl();
        if std::env::var_os("BFF_MOBILE_WRITE_SDL").is_some() {
            std::fs::write(path, &served).expect("schema.graphql written");
        }
        let committed = std::fs::read_to_string(path).expect("bff-mobile/schema.graphql");
        assert_eq!(
            committed, served,
            "bff-mobile/schema.graphql differs from the schema served; after a deliberate change run BFF_MOBILE_WRITE_SDL=1 cargo test -p bff-mobile"
        );
    }
}
