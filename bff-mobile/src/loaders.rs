//! Per-request DataLoaders: every product, price, stock level and review
//! summary a query needs comes from one batch call per service
//! (`?ids=1,2,3`), however many products the query names.
//!
//! A loader is made for each request (nothing crosses callers) and
//! batches the keys its resolvers ask for while they run concurrently. A
//! batch of one asks for the item itself (`/products/42`), which the
//! services let the response cache keep and invalidate by its tag; a batch
//! is the caller's own mix, which they do not.
//! A service that fails fails every key of its batch at once, recorded
//! once as the degraded part (`BFF-Partial`); a key the service does not
//! know is `None` to the loader's caller.

use std::{collections::HashMap, marker::PhantomData, time::Duration};

use async_graphql::dataloader::{DataLoader, Loader};
use gateway_core::{
    RequestContext,
    downstream::{DownstreamError, Downstreams, Resource, ServiceSpec, aggregate::record_degraded},
};
use serde::de::DeserializeOwned;
use shared_schema::{
    Batch, batch_path,
    catalog::{Price, Product, ProductReviews, REVIEWS, StockLevel},
};

use crate::schema::graphql_error;

/// Reviews fetched with each product's summary: the most `topReviews` shows.
pub(crate) const TOP_REVIEWS: usize = 10;

/// A resource a batch endpoint serves by product id.
pub(crate) trait Batched: DeserializeOwned + Clone + Send + Sync + 'static {
    /// The service that serves it.
    const SERVICE: ServiceSpec;
    /// The degraded part its failure is named as.
    const PART: &'static str;
    /// The path of one product's.
    fn item_path(id: u64) -> String;
    /// The path of several products'.
    fn batch_path(ids: &[u64]) -> String;
    /// The product it belongs to.
    fn product_id(&self) -> u64;
}

/// `Batched` for a `Resource` whose service answers `{collection}?ids=`.
macro_rules! batched_resource {
    ($resource:ty, $collection:literal, $part:literal, $id:ident) => {
        impl Batched for $resource {
            const SERVICE: ServiceSpec = <$resource as Resource>::SERVICE;
            const PART: &'static str = $part;
            fn item_path(id: u64) -> String {
                <$resource as Resource>::path(id)
            }
            fn batch_path(ids: &[u64]) -> String {
                batch_path($collection, ids)
            }
            fn product_id(&self) -> u64 {
                self.$id
            }
        }
    };
}

batched_resource!(Product, "/products", "product", id);
batched_resource!(Price, "/prices", "price", product_id);
batched_resource!(StockLevel, "/inventory", "stock", product_id);

impl Batched for ProductReviews {
    const SERVICE: ServiceSpec = REVIEWS;
    const PART: &'static str = "reviews";
    fn item_path(id: u64) -> String {
        format!("/reviews?product={id}&limit={TOP_REVIEWS}")
    }
    fn batch_path(ids: &[u64]) -> String {
        let mut path = batch_path("/reviews", ids);
        path.push_str(&format!("&limit={TOP_REVIEWS}"));
        path
    }
    fn product_id(&self) -> u64 {
        self.product_id
    }
}

/// Loads `T` for a request's products, a batch call at a time.
pub(crate) struct BatchLoader<T> {
    services: Downstreams,
    context: RequestContext,
    resource: PhantomData<fn() -> T>,
}

impl<T: Batched> Loader<u64> for BatchLoader<T> {
    type Value = T;
    type Error = async_graphql::Error;

    async fn load(&self, ids: &[u64]) -> Result<HashMap<u64, T>, Self::Error> {
        let client = self.services.client(T::SERVICE.name);
        if let [id] = ids {
            return match client.get::<T>(T::item_path(*id), &self.context).await {
                Ok(item) => Ok(HashMap::from([(*id, item)])),
                Err(DownstreamError::NotFound { .. }) => Ok(HashMap::new()),
                Err(error) => Err(failed::<T>(&self.context, error)),
            };
        }
        let loaded = client
            .get::<Batch<T>>(T::batch_path(ids), &self.context)
            .await;
        match loaded {
            Ok(batch) => Ok(batch
                .items
                .into_iter()
                .map(|item| (item.product_id(), item))
                .collect()),
            Err(error) => Err(failed::<T>(&self.context, error)),
        }
    }
}

/// `error` of `T`'s service, recorded as its degraded part (the product
/// itself is required: its failure is the field's error alone).
fn failed<T: Batched>(context: &RequestContext, error: DownstreamError) -> async_graphql::Error {
    if T::PART != Product::PART {
        record_degraded(context, T::PART, &error);
    }
    graphql_error(error.into())
}

/// The error of a product the service does not know `T` of: a missing
/// price of an existing product is the service's fault, not the caller's.
pub(crate) fn not_found<T: Batched>(context: &RequestContext) -> async_graphql::Error {
    failed::<T>(
        context,
        DownstreamError::NotFound {
            service: T::SERVICE.name,
        },
    )
}

/// A request's loader of `T`. Keys are batched as the resolvers ask for
/// them in one turn of the executor, with no added delay.
pub(crate) fn loader<T: Batched>(
    services: &Downstreams,
    context: &RequestContext,
) -> DataLoader<BatchLoader<T>> {
    DataLoader::new(
        BatchLoader {
            services: services.clone(),
            context: context.clone(),
            resource: PhantomData,
        },
        tokio::spawn,
    )
    .delay(Duration::ZERO)
}
