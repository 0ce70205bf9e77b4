//! The GraphQL schema: the app's screens as root fields, and how a failure
//! becomes a GraphQL error.
//!
//! - `product(id)`: the product screen (`product`);
//! - `products(first, after, category, sort)`: a category's listing, a
//!   Relay connection (`pages`);
//! - `me`: the signed-in user's profile and orders (`account`);
//! - `placeOrder(input, idempotencyKey)`: checkout (`checkout`).
//!
//! Every error carries a stable `extensions.code`, the code problem+json
//! carries for the same failure, and a wrong argument or input also lists
//! each wrong part in `extensions.invalidParams`.

use async_graphql::{Context, EmptySubscription, Enum, ErrorExtensions, ID, Object, Schema, Value};
use gateway_core::{
    Error, RequestContext, auth::require_scope, cursor::CursorSigner, downstream::Downstreams,
    idempotency::IdempotencyLayer,
};
use shared_schema::{
    InvalidParam,
    catalog::{PRODUCTS, Product, ProductSort},
};

use crate::{
    MobileSettings,
    account::Me,
    checkout::{PlaceOrderInput, PlaceOrderPayload},
    loaders::BatchLoader,
    pages::{self, ListSource, Paged},
    product::ProductNode,
};

/// The schema served at `/graphql`.
pub type MobileSchema = Schema<Query, Mutation, EmptySubscription>;

/// What every resolver may reach: the services, the cursor signer and the
/// idempotency records.
pub(crate) struct Services {
    pub(crate) downstreams: Downstreams,
    pub(crate) cursors: CursorSigner,
    pub(crate) idempotency: IdempotencyLayer,
}

/// Builds the schema over `services`, with the introspection and
/// suggestions of `settings` (the limits are checked before the schema sees
/// a query: `limits`).
pub(crate) fn build_schema(settings: &MobileSettings, services: Services) -> MobileSchema {
    let mut schema = Schema::build(Query, Mutation, EmptySubscription).data(services);
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
    Schema::build(Query, Mutation, EmptySubscription)
        .finish()
        .sdl()
}

/// A failure of bff-mobile's own: an argument or input it refuses, an
/// order the orders service refuses. It is not `Display`, so `?` cannot
/// turn it into a GraphQL error without its code: `into_graphql` does.
#[derive(Debug)]
pub(crate) enum MobileError {
    /// An argument out of its range.
    InvalidArgument {
        /// The argument.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Fields of a mutation's input that are wrong.
    InvalidInput(Vec<InvalidParam>),
}

impl MobileError {
    /// The stable code in `extensions.code`.
    fn code(&self) -> &'static str {
        match self {
            Self::InvalidArgument { .. } => "INVALID_ARGUMENT",
            Self::InvalidInput(_) => "INVALID_INPUT",
        }
    }

    /// The GraphQL error: a message, the code and the invalid parts.
    pub(crate) fn into_graphql(self) -> async_graphql::Error {
        let code = self.code();
        let (message, params) = match self {
            Self::InvalidArgument { name, reason } => (
                format!("the argument {name} {reason}"),
                vec![InvalidParam {
                    name: name.to_owned(),
                    reason,
                }],
            ),
            Self::InvalidInput(params) => (
                format!("{} field(s) of the input are invalid", params.len()),
                params,
            ),
        };
        coded(message, code, &params)
    }
}

/// The error of argument `name`, wrong as `reason` says.
pub(crate) fn invalid_argument(name: &'static str, reason: String) -> async_graphql::Error {
    MobileError::InvalidArgument { name, reason }.into_graphql()
}

/// A gateway error as a GraphQL error: the client-safe message, the stable
/// code (the code problem+json carries) and the invalid parts.
pub(crate) fn graphql_error(error: Error) -> async_graphql::Error {
    let code = error.code();
    if error.status().is_server_error() {
        tracing::warn!(%error, code, "GraphQL field failed");
    }
    let params = match &error {
        Error::Invalid { params, .. } => params.as_slice(),
        _ => &[],
    };
    coded(error.client_detail(), code, params)
}

/// An error saying `message`, with `code` in `extensions.code` and each of
/// `params` in `extensions.invalidParams`.
fn coded(message: String, code: &'static str, params: &[InvalidParam]) -> async_graphql::Error {
    let params: Vec<Value> = params
        .iter()
        .map(|param| {
            Value::from_json(serde_json::json!({ "name": param.name, "reason": param.reason }))
                .expect("JSON is a GraphQL value")
        })
        .collect();
    async_graphql::Error::new(message).extend_with(|_, extensions| {
        extensions.set("code", code);
        if !params.is_empty() {
            extensions.set("invalidParams", Value::List(params.clone()));
        }
    })
}

/// The value of a nullable field, or `null` with the error added at the
/// field's own path, as the GraphQL specification asks. Returning the
/// error from the resolver instead would null its parent too (async-graphql
/// propagates a resolver's error one level up): a failed price would null
/// the whole product.
pub(crate) fn or_null<T>(ctx: &Context<'_>, value: async_graphql::Result<T>) -> Option<T> {
    value
        .map_err(|error| ctx.add_error(ctx.set_error_path(error.into_server_error(ctx.item.pos))))
        .ok()
}

/// `scope`, or the error of a caller without it (`AUTH_INSUFFICIENT_SCOPE`).
pub(crate) fn require(ctx: &Context<'_>, scope: &'static str) -> async_graphql::Result<()> {
    let request = ctx.data::<RequestContext>()?;
    require_scope(request.identity.as_deref(), scope).map_err(|error| graphql_error(error.into()))
}

/// The order of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(name = "ProductSort", remote = "shared_schema::catalog::ProductSort")]
pub(crate) enum ListingSort {
    /// The catalog's own ranking.
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

/// The root query.
#[derive(Debug)]
pub struct Query;

#[Object]
impl Query {
    /// A product by id; `null` when it does not exist (or, with an error,
    /// when it could not be fetched).
    async fn product(&self, ctx: &Context<'_>, id: ID) -> Option<ProductNode> {
        let product = async {
            let id: u64 = id
                .parse()
                .map_err(|_| invalid_argument("id", "must be a numeric product id".to_owned()))?;
            let products = ctx.data::<BatchLoader<Product>>()?;
            products.load_one(id).await
        };
        or_null(ctx, product.await).flatten().map(ProductNode::from)
    }

    /// The products of a category in `sort` order, `first` (1 to 50) after
    /// the cursor `after`.
    async fn products(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
        category: String,
        #[graphql(default_with = "ListingSort::Relevance")] sort: ListingSort,
    ) -> async_graphql::Result<Paged<ProductNode>> {
        let sort: ProductSort = sort.into();
        // The slug goes into the service's query: one made of letters,
        // digits and dashes cannot smuggle a parameter in; any other names
        // no category.
        let slug_is_plain = !category.is_empty()
            && category
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
        if !slug_is_plain {
            return Err(graphql_error(Error::NotFound {
                resource: "category",
                id: category,
            }));
        }
        let source = ListSource {
            service: PRODUCTS.name,
            path: format!("/products?category={category}&sort={}", sort.as_str()),
            list: format!("products {category} {}", sort.as_str()),
            owner: ("category", category),
        };
        pages::connection::<Product, ProductNode>(ctx, source, first, after.as_deref()).await
    }

    /// The signed-in user; `null`, with `USER_REQUIRED`, for a caller that
    /// is not a user of the shop.
    async fn me(&self, ctx: &Context<'_>) -> Option<Me> {
        let user_id = ctx
            .data::<RequestContext>()
            .and_then(|context| context.user_id().map_err(graphql_error));
        or_null(ctx, user_id).map(Me::new)
    }
}

/// The root mutation.
#[derive(Debug)]
pub struct Mutation;

#[Object]
impl Mutation {
    /// Places an order for the signed-in user (scope `orders:write`). The
    /// same `idempotencyKey` with the same input places it once: a retry
    /// gets the same order with `replayed: true`; with another input it is
    /// refused (`IDEMPOTENCY_KEY_REUSED`).
    async fn place_order(
        &self,
        ctx: &Context<'_>,
        input: PlaceOrderInput,
        idempotency_key: String,
    ) -> async_graphql::Result<PlaceOrderPayload> {
        crate::checkout::place_order(ctx, input, &idempotency_key).await
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
