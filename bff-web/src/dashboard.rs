//! `GET /api/me/dashboard`: the signed-in user's home page.
//!
//! The user is always the verified subject (`user-{id}`): there is no user
//! id in the path or the query to change. Two rounds:
//! 1. the profile (required), the newest orders and the recommendations
//!    (both optional), in parallel;
//! 2. the products of every order line and every recommendation in one
//!    batch call, and the recommendations' prices in another
//!    ([`crate::views`]).
//!
//! The users, orders and recommendations services each answer only for the
//! caller's tenant, and what the response cache keeps of them is kept per
//! tenant and subject: no user's dashboard can reach another.

use std::collections::BTreeMap;

use axum::{Json, extract::State};
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
    accounts::{ORDERS, Order, User},
};

use crate::{
    RECOMMENDATIONS,
    orders::OrderView,
    views::{self, PriceView, ProductCard},
};

/// What the dashboard is assembled from.
#[derive(Debug, Clone)]
pub(crate) struct DashboardSources {
    /// The downstream clients.
    pub(crate) services: Downstreams,
    /// Newest orders shown (`[web] dashboard_orders`).
    pub(crate) orders: u32,
    /// Recommendations shown (`[web] dashboard_recommendations`).
    pub(crate) recommendations: u32,
}

/// The dashboard document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dashboard {
    /// Who is signed in.
    pub profile: Profile,
    /// The newest orders; `null` when orders failed.
    pub recent_orders: Option<Vec<OrderView>>,
    /// Products picked for the user; `null` when recommendations failed.
    pub recommendations: Option<Vec<RecommendationView>>,
    /// Parts that could not be fetched (`orders`, `recommendations`,
    /// `products`, `price`), with their causes, as in `BFF-Partial`.
    pub missing: BTreeMap<String, String>,
}

/// The signed-in user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// User id.
    pub id: u64,
    /// Display name.
    pub name: String,
    /// Contact address.
    pub email: String,
    /// Loyalty tier.
    pub tier: String,
}

/// A recommended product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecommendationView {
    /// The product; `null` when products failed.
    pub product: Option<ProductCard>,
    /// Its price; `null` when pricing failed.
    pub price: Option<PriceView>,
    /// Why it is recommended.
    pub reason: String,
}

/// The recommendations service's answer.
#[derive(Debug, Deserialize)]
struct Recommendations {
    items: Vec<Recommendation>,
}

#[derive(Debug, Deserialize)]
struct Recommendation {
    product_id: u64,
    reason: String,
}

impl From<User> for Profile {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            name: user.name,
            email: user.email,
            tier: user.tier,
        }
    }
}

pub(crate) async fn get_dashboard(
    State(DashboardSources {
        services,
        orders,
        recommendations,
    }): State<DashboardSources>,
    context: RequestContext,
) -> Result<Json<Dashboard>, Error> {
    let user = context.user_id()?;
    let orders_path = format!("/orders?user={user}&limit={orders}");
    let recommendations_path = format!("/recommendations?user={user}&limit={recommendations}");
    let (profile, orders, recommended) = aggregate((
        required(async {
            services
                .fetch::<User>(user, &context)
                .await
                .map_err(fetching("user", user))
        }),
        optional(
            "orders",
            &context,
            services
                .client(ORDERS.name)
                .get::<Page<Order>>(orders_path, &context),
        ),
        optional(
            "recommendations",
            &context,
            services
                .client(RECOMMENDATIONS.name)
                .get::<Recommendations>(recommendations_path, &context),
        ),
    ))
    .await?;
    let orders: Option<Vec<Order>> = orders.map(|page| page.items);
    let recommended: Option<Vec<Recommendation>> = recommended.map(|found| found.items);
    let line_ids = orders
        .iter()
        .flatten()
        .flat_map(|order| order.lines.iter().map(|line| line.product_id));
    let recommended_ids: Vec<u64> = recommended
        .iter()
        .flatten()
        .map(|item| item.product_id)
        .collect();
    let mut product_ids: Vec<u64> = line_ids.chain(recommended_ids.iter().copied()).collect();
    product_ids.sort_unstable();
    product_ids.dedup();
    let (cards, prices) = aggregate((
        views::product_cards(&services, &product_ids, &context),
        views::prices(&services, &recommended_ids, &context),
    ))
    .await?;
    let card = |id| cards.as_ref().and_then(|cards| cards.get(&id).cloned());
    Ok(Json(Dashboard {
        profile: profile.into(),
        recent_orders: orders.map(|orders| {
            orders
                .into_iter()
                .map(|order| OrderView::new(order, &card))
                .collect()
        }),
        recommendations: recommended.map(|items| {
            items
                .into_iter()
                .map(|item| RecommendationView {
                    product: card(item.product_id),
                    price: prices.get(&item.product_id).cloned(),
                    reason: item.reason,
                })
                .collect()
        }),
        missing: views::missing(&context),
    }))
}
