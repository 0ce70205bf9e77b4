//! Per-request DataLoaders: every product, price and stock level a query
//! needs comes from one batch call per service (`?ids=1,2,3`), however
//! many products the query names.
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
    downstream::{DownstreamError, Downstreams, Resource, aggregate::record_degraded},
};
use shared_schema::{
    Batch, batch_path,
    catalog::{Price, Product, StockLevel},
};

use crate::schema::graphql_error;

/// A resource a batch endpoint serves by product id.
pub(crate) trait Batched: Resource + Clone + Send + Sync + 'static {
    /// The service's batch endpoint.
    const COLLECTION: &'static str;
    /// The degraded part its failure is named as.
    const PART: &'static str;
    /// The product it belongs to.
    fn product_id(&self) -> u64;
}

impl Batched for Product {
    const COLLECTION: &'static str = "/products";
    const PART: &'static str = "product";
    fn product_id(&self) -> u64 {
        self.id
    }
}

impl Batched for Price {
    const COLLECTION: &'static str = "/prices";
    const PART: &'static str = "price";
    fn product_id(&self) -> u64 {
        self.product_id
    }
}

impl Batched for StockLevel {
    const COLLECTION: &'static str = "/inventory";
    const PART: &'static str = "stock";
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
        if let [id] = ids {
            return match self.services.fetch::<T>(*id, &self.context).await {
                Ok(item) => Ok(HashMap::from([(*id, item)])),
                Err(DownstreamError::NotFound { .. }) => Ok(HashMap::new()),
                Err(error) => Err(failed::<T>(&self.context, error)),
            };
        }
        let path = batch_path(T::COLLECTION, ids);
        let loaded = self
            .services
            .client(T::SERVICE.name)
            .get::<Batch<T>>(path, &self.context)
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
