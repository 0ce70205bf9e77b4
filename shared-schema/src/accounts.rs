//! Account contracts: the users and orders services.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{InvalidParam, Resource, ServiceSpec};

/// User accounts.
pub const USERS: ServiceSpec = ServiceSpec::new("users", 7005);
/// Orders.
pub const ORDERS: ServiceSpec = ServiceSpec::new("orders", 7006);

/// The problem code of an order the orders service refused.
pub const ORDER_REJECTED: &str = "ORDER_REJECTED";
/// What a client is told of an order the orders service refused.
pub const ORDER_REJECTED_DETAIL: &str =
    "the order was refused: a product does not exist or cannot be ordered";

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
    /// The user who placed it; none when a partner system placed it for
    /// its tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<u64>,
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

    /// The lines of a client's order body, `{"lines": [{"<product_id>": 42,
    /// "quantity": 1}]}`, or every field that is wrong with it, each named
    /// by its JSON Pointer (`/lines/1/quantity`).
    ///
    /// `product_id` is how the client's API spells the product id member
    /// (`productId` on the web, `product_id` for partners). Members other
    /// than these are refused, so a misspelt field is never ignored.
    pub fn lines_of(
        body: &Value,
        product_id: &str,
    ) -> Result<Vec<NewOrderLine>, Vec<InvalidParam>> {
        let mut invalid = Vec::new();
        let mut problem = |name: String, reason: &str| {
            invalid.push(InvalidParam {
                name,
                reason: reason.to_owned(),
            });
        };
        let Some(object) = body.as_object() else {
            problem(String::new(), "must be an object with lines");
            return Err(invalid);
        };
        for field in object.keys().filter(|field| *field != "lines") {
            problem(
                format!("/{}", pointer_token(field)),
                "is not a field of an order",
            );
        }
        let lines = match object.get("lines") {
            None => {
                problem("/lines".to_owned(), "is required");
                &Vec::new()
            }
            Some(Value::Array(lines)) => {
                if lines.is_empty() || lines.len() > Self::MAX_LINES {
                    problem(
                        "/lines".to_owned(),
                        &format!("must have 1 to {} lines", Self::MAX_LINES),
                    );
                }
                lines
            }
            Some(_) => {
                problem("/lines".to_owned(), "must be an array of lines");
                &Vec::new()
            }
        };
        let mut checked = Vec::with_capacity(lines.len());
        for (index, line) in lines.iter().enumerate() {
            let at = |field: &str| format!("/lines/{index}{field}");
            let Some(line) = line.as_object() else {
                problem(
                    at(""),
                    &format!("must be an object with {product_id} and quantity"),
                );
                continue;
            };
            for field in line
                .keys()
                .filter(|field| *field != product_id && *field != "quantity")
            {
                problem(
                    at(&format!("/{}", pointer_token(field))),
                    "is not a field of a line",
                );
            }
            let id = match line.get(product_id) {
                None => {
                    problem(at(&format!("/{product_id}")), "is required");
                    None
                }
                Some(id) => {
                    let id = whole_number(id).filter(|id| *id > 0);
                    if id.is_none() {
                        problem(
                            at(&format!("/{product_id}")),
                            "must be a positive whole number",
                        );
                    }
                    id
                }
            };
            let quantity = match line.get("quantity") {
                None => {
                    problem(at("/quantity"), "is required");
                    None
                }
                Some(quantity) => {
                    let quantity = whole_number(quantity)
                        .and_then(|quantity| u32::try_from(quantity).ok())
                        .filter(|quantity| (1..=NewOrderLine::MAX_QUANTITY).contains(quantity));
                    if quantity.is_none() {
                        problem(
                            at("/quantity"),
                            &format!(
                                "must be a whole number from 1 to {}",
                                NewOrderLine::MAX_QUANTITY
                            ),
                        );
                    }
                    quantity
                }
            };
            if let (Some(product_id), Some(quantity)) = (id, quantity) {
                checked.push(NewOrderLine {
                    product_id,
                    quantity,
                });
            }
        }
        if invalid.is_empty() {
            Ok(checked)
        } else {
            Err(invalid)
        }
    }
}

/// A JSON number that is a whole number, as JSON Schema's `integer` counts
/// them: `2` and `2.0` alike (a client's JSON library may write either).
fn whole_number(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|number| {
                number.fract() == 0.0 && (0.0..=9_007_199_254_740_992.0).contains(number)
            })
            .map(|number| number as u64)
    })
}

/// A member name as a JSON Pointer token (RFC 6901).
fn pointer_token(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// The body of `POST /orders`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// The user placing the order; none when a partner system places it
    /// for the caller's tenant (`X-Auth-Tenant`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<u64>,
    /// What to order; at least one line.
    pub lines: Vec<NewOrderLine>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(body: &str) -> Vec<String> {
        let body: Value = serde_json::from_str(body).expect("JSON");
        match NewOrder::lines_of(&body, "productId") {
            Ok(lines) => panic!("valid: {lines:?}"),
            Err(invalid) => invalid.into_iter().map(|param| param.name).collect(),
        }
    }

    #[test]
    fn a_good_body_gives_its_lines_in_either_spelling() {
        let web = serde_json::json!({"lines": [{"productId": 42, "quantity": 1}, {"productId": 7, "quantity": 99}]});
        let lines = NewOrder::lines_of(&web, "productId").expect("valid");
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[1].product_id, lines[1].quantity), (7, 99));
        let partner = serde_json::json!({"lines": [{"product_id": 42, "quantity": 3.0}]});
        let lines = NewOrder::lines_of(&partner, "product_id").expect("valid");
        assert_eq!((lines[0].product_id, lines[0].quantity), (42, 3));
        assert_eq!(
            NewOrder::lines_of(&partner, "productId").expect_err("the other spelling"),
            [
                InvalidParam {
                    name: "/lines/0/product_id".into(),
                    reason: "is not a field of a line".into()
                },
                InvalidParam {
                    name: "/lines/0/productId".into(),
                    reason: "is required".into()
                },
            ]
        );
    }

    #[test]
    fn every_invalid_field_is_listed() {
        assert_eq!(
            invalid(
                r#"{"lines":[{"productId":0,"quantity":100},{"quantity":"2","colour":"red"},7],"coupon":"X"}"#
            ),
            [
                "/coupon",
                "/lines/0/productId",
                "/lines/0/quantity",
                "/lines/1/colour",
                "/lines/1/productId",
                "/lines/1/quantity",
                "/lines/2",
            ]
        );
        assert_eq!(invalid(r#"{"lines":[]}"#), ["/lines"]);
        assert_eq!(invalid(r#"{}"#), ["/lines"]);
        assert_eq!(invalid(r#"{"lines":{}}"#), ["/lines"]);
        assert_eq!(invalid(r#"[1]"#), [""]);
        assert_eq!(
            invalid(r#"{"lines":[{"productId":1,"quantity":4294967297}]}"#),
            ["/lines/0/quantity"]
        );
        let too_many = format!(
            r#"{{"lines":[{}]}}"#,
            vec![r#"{"productId":1,"quantity":1}"#; NewOrder::MAX_LINES + 1].join(",")
        );
        assert_eq!(invalid(&too_many), ["/lines"]);
        assert_eq!(
            invalid(r#"{"a/b":1,"lines":[{"productId":1,"quantity":1}]}"#),
            ["/a~1b"]
        );
    }
}
