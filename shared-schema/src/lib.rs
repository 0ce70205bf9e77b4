//! The shared vocabulary of the platform.
//!
//! Every BFF and the demo services speak the same downstream contracts; keeping
//! the serde types in one crate means a field renamed by a service breaks the
//! build of every BFF that reads it instead of silently turning into `null`.
//!
//! - [`catalog`]: products, stock levels, prices and reviews, and the
//!   services that serve them.
//! - [`accounts`]: users and their orders, and their services.
//! - [`webhooks`]: webhook subscriptions and the events delivered to them.
//! - [`ServiceSpec`] and [`Resource`]: which service serves a contract, and where.
//! - [`Page`] and [`Batch`]: the two list shapes (cursor listings and `?ids=` batches).
//! - [`Problem`]: the `application/problem+json` body (RFC 9457) every error uses.
//! - [`Identity`]: who the caller is, as verified by the gateway.

pub mod accounts;
pub mod catalog;
mod identity;
mod problem;
mod service;
pub mod webhooks;

pub use identity::{AuthMethod, Identity};
pub use problem::{InvalidParam, PROBLEM_JSON, Problem};
pub use service::{Resource, ServiceSpec};

use serde::{Deserialize, Serialize};

/// One page of a cursor listing.
///
/// `next_cursor` is opaque to clients: they pass it back unchanged to get the
/// next page, and it is absent on the last page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items of this page, in listing order.
    pub items: Vec<T>,
    /// Cursor of the next page; `None` on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The answer to a batch lookup (`?ids=1,2,3`).
///
/// Ids that do not exist are listed in `missing` rather than failing the whole
/// batch, so a caller can render what it has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch<T> {
    /// The items found, in the order their ids were asked for.
    pub items: Vec<T>,
    /// Ids asked for that do not exist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<u64>,
}

/// The path of a batch lookup: `collection?ids=1,2,3` (`/prices?ids=3,1,42`).
pub fn batch_path(collection: &str, ids: &[u64]) -> String {
    use std::fmt::Write as _;
    let mut path = String::with_capacity(collection.len() + 5 + ids.len() * 6);
    path.push_str(collection);
    path.push_str("?ids=");
    for (index, id) in ids.iter().enumerate() {
        if index > 0 {
            path.push(',');
        }
        write!(path, "{id}").expect("writing to a String cannot fail");
    }
    path
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_batch_path_lists_the_ids_in_order() {
        assert_eq!(
            super::batch_path("/prices", &[3, 1, 42]),
            "/prices?ids=3,1,42"
        );
        assert_eq!(super::batch_path("/prices", &[7]), "/prices?ids=7");
    }
}
