//! Per-request loaders: every product, price, stock level and review
//! summary a query needs comes from one batch call per service
//! (`?ids=1,2,3`), however many products the query names.
//!
//! A loader is made for each request (nothing crosses callers) and
//! batches the keys its resolvers ask for while they run concurrently: the
//! first key opens a batch, a task of its own that starts once the
//! request's task has let every other resolver ready to run ask for its
//! keys, and every caller awaits its one answer. A batch of one
//! asks for the item itself (`/products/42`), which the services let the
//! response cache keep and invalidate by its tag; a batch is the caller's
//! own mix, which they do not.
//!
//! Hand-written rather than async-graphql's `DataLoader`, which waits on a
//! `futures-timer` delay even when it is zero: a wake-up from the timer's
//! own thread per batch; without it the product screen takes a quarter
//! less CPU (269 to 202 µs a request, `bench/README.md`).
//! A service that fails fails every key of its batch at once, recorded
//! once as the degraded part (`BFF-Partial`); a key the service does not
//! know is `None` to the loader's caller.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use futures_util::{
    FutureExt,
    future::{BoxFuture, Shared},
};
use gateway_core::{
    Error, RequestContext,
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

/// What a batch answers: each product's `T`, or the error of the whole batch.
type Answer<T> = Result<Arc<HashMap<u64, T>>, async_graphql::Error>;

/// Loads `T` for a request's products, a batch call at a time.
pub(crate) struct BatchLoader<T> {
    /// What every loader of the request calls with, shared by them.
    caller: Arc<Caller>,
    /// The batch still taking keys, if there is one.
    open: Mutex<Option<OpenBatch<T>>>,
}

/// A batch not sent yet: its keys (taken when it is sent, `None` from then
/// on) and its answer, which every caller awaits.
struct OpenBatch<T> {
    keys: Arc<Mutex<Option<Vec<u64>>>>,
    answer: Shared<BoxFuture<'static, Answer<T>>>,
}

impl<T: Batched> BatchLoader<T> {
    /// `T` of product `id`; `None` when the service does not know it.
    pub(crate) async fn load_one(&self, id: u64) -> async_graphql::Result<Option<T>> {
        let answer = self.join(id);
        Ok(answer.await?.get(&id).cloned())
    }

    /// Adds `id` to the open batch, or opens one with it; its answer.
    fn join(&self, id: u64) -> Shared<BoxFuture<'static, Answer<T>>> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(batch) = open.as_ref() {
            let mut keys = batch.keys.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(keys) = keys.as_mut() {
                if !keys.contains(&id) {
                    keys.push(id);
                }
                return batch.answer.clone();
            }
        }
        let keys = Arc::new(Mutex::new(Some(vec![id])));
        let (caller, taken) = (self.caller.clone(), keys.clone());
        // A task of its own, which starts once the request's task has let
        // every resolver it can run now ask for its keys (tokio runs a
        // task spawned by a worker after the current one, on that worker).
        let batch = tokio::spawn(async move {
            let ids = taken
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
                .unwrap_or_default();
            fetch::<T>(&caller.services, &caller.context, &ids)
                .await
                .map(Arc::new)
        });
        let answer = batch
            .map(|joined| {
                joined.unwrap_or_else(|error| {
                    Err(graphql_error(Error::Internal(format!(
                        "a batch load failed: {error}"
                    ))))
                })
            })
            .boxed()
            .shared();
        *open = Some(OpenBatch {
            keys,
            answer: answer.clone(),
        });
        answer
    }
}

/// Most ids the services take in one batch call.
const MAX_BATCH_IDS: usize = 100;

/// `T` of products `ids`: the item itself for one, a batch call for
/// several (calls of at most [`MAX_BATCH_IDS`] together, for more).
async fn fetch<T: Batched>(
    services: &Downstreams,
    context: &RequestContext,
    ids: &[u64],
) -> Result<HashMap<u64, T>, async_graphql::Error> {
    let client = services.client(T::SERVICE.name);
    if let [id] = ids {
        return match client.get::<T>(T::item_path(*id), context).await {
            Ok(item) => Ok(HashMap::from([(*id, item)])),
            Err(DownstreamError::NotFound { .. }) => Ok(HashMap::new()),
            Err(error) => Err(failed::<T>(context, error)),
        };
    }
    let batches = futures_util::future::try_join_all(
        ids.chunks(MAX_BATCH_IDS)
            .map(|chunk| client.get::<Batch<T>>(T::batch_path(chunk), context)),
    )
    .await
    .map_err(|error| failed::<T>(context, error))?;
    Ok(batches
        .into_iter()
        .flat_map(|batch| batch.items)
        .map(|item| (item.product_id(), item))
        .collect())
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

/// What a request's loaders call with: the services and the request.
pub(crate) struct Caller {
    services: Downstreams,
    context: RequestContext,
}

impl Caller {
    pub(crate) fn new(services: &Downstreams, context: &RequestContext) -> Arc<Self> {
        Arc::new(Self {
            services: services.clone(),
            context: context.clone(),
        })
    }
}

/// A request's loader of `T`.
pub(crate) fn loader<T: Batched>(caller: &Arc<Caller>) -> BatchLoader<T> {
    BatchLoader {
        caller: caller.clone(),
        open: Mutex::new(None),
    }
}
