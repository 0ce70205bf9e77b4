//! The shared vocabulary of the platform.
//!
//! Every BFF and the demo services speak the same downstream contracts; keeping
//! the serde types in one crate means a field renamed by a service breaks the
//! build of every BFF that reads it instead of silently turning into `null`.
//!
//! - [`catalog`]: products, stock levels, prices and reviews, and the
//!   services that serve them.
//! - [`accounts`]: users and their orders, and their services.
//! - [`ServiceSpec`] and [`Resource`]: which service serves a contract, and where.
//! - [`Page`] and [`Batch`]: the two list shapes (cursor listings and `?ids=` batches).
//! - [`Problem`]: the `application/problem+json` body (RFC 9457) every error uses.
//! - [`Identity`]: who the caller is, as verified by the gateway.

pub mod accounts;
pub mod catalog;
mod identity;
mod problem;
mod service;

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
