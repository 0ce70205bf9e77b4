//! Account contracts: the users and orders services.

use serde::{Deserialize, Serialize};

use crate::{Resource, ServiceSpec};

/// User accounts.
pub const USERS: ServiceSpec = ServiceSpec::new("users", 7005);
/// Orders.
pub const ORDERS: ServiceSpec = ServiceSpec::new("orders", 7006);

/// A user of the shop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Numeric id; the token subject of this user is `user-{id}`.
    pub id: u64,
    /// Tenant (shop) the user belongs to.
    pub tenant: String,
    /// Display name.
    pub name: String,
    /// Contact address.
    pub email: String,
    /// Loyalty tier, for example `gold`.
    pub tier: String,
}

impl Resource for User {
    const SERVICE: ServiceSpec = USERS;
    fn path(id: u64) -> String {
        format!("/users/{id}")
    }
}

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Accepted, not yet paid.
    Pending,
    /// Paid, waiting to ship.
    Paid,
    /// On its way.
    Shipped,
    /// Received by the customer.
    Delivered,
    /// Cancelled before shipping.
    Cancelled,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The product ordered.
    pub product_id: u64,
    /// Units ordered.
    pub quantity: u32,
    /// Price of one unit when ordered, in minor units.
    pub unit_price_minor: i64,
}

/// An order, from the orders service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Order id.
    pub id: u64,
    /// Tenant the order belongs to.
    pub tenant: String,
    /// The user who placed it.
    pub user_id: u64,
    /// Current status.
    pub status: OrderStatus,
    /// What was ordered.
    pub lines: Vec<OrderLine>,
    /// ISO 4217 currency code of every amount in the order.
    pub currency: String,
    /// Sum of the lines, in minor units.
    pub total_minor: i64,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: u64,
}

impl Resource for Order {
    const SERVICE: ServiceSpec = ORDERS;
    fn path(id: u64) -> String {
        format!("/orders/{id}")
    }
}

/// One line of an order being placed; the price is set by the service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrderLine {
    /// The product to order.
    pub product_id: u64,
    /// Units to order, at least 1.
    pub quantity: u32,
}

impl NewOrderLine {
    /// Most units of one product in one line.
    pub const MAX_QUANTITY: u32 = 99;
}

impl NewOrder {
    /// Most lines in one order.
    pub const MAX_LINES: usize = 50;
}

/// The body of `POST /orders`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// The user placing the order.
    pub user_id: u64,
    /// What to order; at least one line.
    pub lines: Vec<NewOrderLine>,
}
