//! `me`: the signed-in user's profile (scope `profile:read`) and orders
//! (scope `orders:read`), newest first, as a Relay connection.
//!
//! The user is always the verified subject (`user-{id}`): there is no user
//! argument to change. The users and orders services answer only for the
//! caller's tenant. An order's lines name products, fetched through the
//! request's product loader: every product of every order on the page in
//! one batch call.

use async_graphql::{Context, Enum, ID, Object};
use gateway_core::{RequestContext, downstream::fetching};
use shared_schema::{
    accounts::{ORDERS, Order, OrderLine, User},
    catalog::Product,
};

use crate::{
    loaders::BatchLoader,
    money::Money,
    pages::{self, ListSource, Paged},
    product::ProductNode,
    schema::{Services, graphql_error, or_null, require},
};

/// The signed-in user.
#[derive(Debug)]
pub(crate) struct Me {
    user_id: u64,
}

impl Me {
    pub(crate) fn new(user_id: u64) -> Self {
        Self { user_id }
    }
}

/// Who is signed in.
#[derive(Debug, async_graphql::SimpleObject)]
pub(crate) struct Profile {
    /// User id.
    id: ID,
    /// Display name.
    name: String,
    /// Contact address.
    email: String,
    /// Loyalty tier, for example `gold`.
    tier: String,
}

#[Object]
impl Me {
    /// The user's profile (scope `profile:read`).
    async fn profile(&self, ctx: &Context<'_>) -> async_graphql::Result<Profile> {
        require(ctx, "profile:read")?;
        let services = ctx.data::<Services>()?;
        let context = ctx.data::<RequestContext>()?;
        let user: User = services
            .downstreams
            .fetch(self.user_id, context)
            .await
            .map_err(|error| graphql_error(fetching("user", self.user_id)(error)))?;
        Ok(Profile {
            id: ID(user.id.to_string()),
            name: user.name,
            email: user.email,
            tier: user.tier,
        })
    }

    /// The user's orders, newest first, `first` (1 to 50) after the cursor
    /// `after` (scope `orders:read`).
    async fn orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 10)] first: i32,
        after: Option<String>,
    ) -> async_graphql::Result<Paged<OrderNode>> {
        require(ctx, "orders:read")?;
        let context = ctx.data::<RequestContext>()?;
        let tenant = context
            .identity
            .as_ref()
            .map_or("", |identity| identity.tenant.as_str());
        let source = ListSource {
            service: ORDERS.name,
            path: format!("/orders?user={}", self.user_id),
            list: format!("orders {tenant} {}", self.user_id),
            owner: ("user", self.user_id.to_string()),
        };
        pages::connection::<Order, OrderNode>(ctx, source, first, after.as_deref()).await
    }
}

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "shared_schema::accounts::OrderStatus")]
pub(crate) enum OrderStatus {
    /// Accepted, not yet paid.
    Pending,
    /// Paid, waiting to ship.
    Paid,
    /// On its way.
    Shipped,
    /// Received.
    Delivered,
    /// Cancelled before shipping.
    Cancelled,
}

/// An order, as the orders screen shows it.
#[derive(Debug)]
pub(crate) struct OrderNode(Order);

impl From<Order> for OrderNode {
    fn from(order: Order) -> Self {
        Self(order)
    }
}

#[Object(name = "Order")]
impl OrderNode {
    /// Order id.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// Where it is in its life.
    async fn status(&self) -> OrderStatus {
        self.0.status.into()
    }

    /// What it costs in all, as the orders service computed it.
    async fn total(&self) -> Money {
        Money {
            amount_minor: self.0.total_minor,
            currency: self.0.currency.clone(),
        }
    }

    /// What was ordered.
    async fn lines(&self) -> Vec<OrderLineNode<'_>> {
        self.0.lines.iter().map(OrderLineNode).collect()
    }
}

/// One line of an order.
#[derive(Debug)]
pub(crate) struct OrderLineNode<'a>(&'a OrderLine);

#[Object(name = "OrderLine")]
impl OrderLineNode<'_> {
    /// Units ordered.
    async fn quantity(&self) -> u32 {
        self.0.quantity
    }

    /// The product ordered; `null`, with an error, when products failed or
    /// it no longer exists.
    async fn product(&self, ctx: &Context<'_>) -> Option<ProductNode> {
        let loaded = match ctx.data::<BatchLoader<Product>>() {
            Ok(products) => products.load_one(self.0.product_id).await,
            Err(error) => Err(error),
        };
        or_null(ctx, loaded).flatten().map(ProductNode::from)
    }
}
