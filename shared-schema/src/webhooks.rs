//! Webhook contracts: the webhooks service's subscriptions and the events
//! it delivers.

use serde::{Deserialize, Serialize};

use crate::ServiceSpec;

/// Webhook subscriptions and their deliveries.
pub const WEBHOOKS: ServiceSpec = ServiceSpec::new("webhooks", 7008);

/// The event fired when an order is placed.
pub const ORDER_CREATED: &str = "order.created";
/// Every event a subscription may ask for.
pub const EVENTS: [&str; 1] = [ORDER_CREATED];

/// The header of a delivery that signs it: `t=<unix seconds>,v1=<hex
/// HMAC-SHA256 of "<t>.<body>" with the subscription's secret>`.
pub const SIGNATURE_HEADER: &str = "webhook-signature";
/// The header of a delivery naming its event, the same on every retry.
pub const EVENT_ID_HEADER: &str = "webhook-id";

/// The body of `POST /subscriptions`, for the caller's tenant (`X-Auth-Tenant`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    /// Where deliveries are POSTed.
    pub url: String,
    /// The events to deliver, from [`EVENTS`].
    pub events: Vec<String>,
}

/// A subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// Its id.
    pub id: u64,
    /// Where deliveries are POSTed.
    pub url: String,
    /// The events delivered.
    pub events: Vec<String>,
    /// When it was made, seconds since the Unix epoch.
    pub created_at: u64,
    /// The key deliveries are signed with: only in the answer that created
    /// the subscription, never again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// What a delivery's body says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The event's id (`evt_…`), the same on every retry of its delivery:
    /// a receiver that saw it already can ignore it.
    pub id: String,
    /// What happened, for example [`ORDER_CREATED`].
    #[serde(rename = "type")]
    pub event_type: String,
    /// When it happened (ISO 8601, UTC).
    pub created_at: String,
    /// What it is about.
    pub data: OrderCreated,
}

/// The data of [`ORDER_CREATED`]: which order, and its state when placed.
/// The whole order is the API's `GET /v1/orders/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCreated {
    /// The order placed.
    pub order_id: u64,
    /// Its status when placed.
    pub status: crate::accounts::OrderStatus,
    /// What it costs in all.
    pub total: Amount,
}

/// An amount of money in a currency's minor units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amount {
    /// Minor units (cents).
    pub amount_minor: i64,
    /// ISO 4217 currency code.
    pub currency: String,
}
