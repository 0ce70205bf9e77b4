//! `gateway-core`: every cross-cutting concern of the BFF platform, in one place.
//!
//! The three BFF binaries (`bff-web`, `bff-mobile`, `bff-partner`) own only
//! their API shape. Everything a gateway must do the same way for all of them
//! lives here, one concern per module:
//!
//! - [`config`]: layered configuration (defaults < TOML file < `BFF_`
//!   environment) with strict validation, and the value types it is made of.
//! - [`cli`]: the command line every binary shares (`--config`,
//!   `--check-config`, `--help`) and the process lifecycle around it.
//! - [`server`]: the public and admin listeners, connection hygiene, the
//!   request layer stack and graceful drain.
//! - [`observability`]: structured logs, W3C trace context, access log and
//!   Prometheus metrics.
//! - [`error`]: the one error type and its `application/problem+json` rendering.
//! - [`auth`]: JWT (HS256, RS256, ES256 with a cached JWKS) and API keys,
//!   the verified identity, and coarse scope checks.
//! - [`downstream`]: one pooled HTTP client per downstream service.
//! - [`context`]: what a handler needs to know about the request it serves.
//! - [`bff`]: the configuration shape and start-up errors every BFF shares.
//!
//! A BFF is a marker type naming its ports and downstream services, a
//! function building its routes, and a one-line `main`:
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use gateway_core::{
//!     bff::{self, Bff, BffParts},
//!     downstream::ServiceName,
//! };
//!
//! #[derive(Debug, Clone, PartialEq)]
//! struct Hello;
//!
//! impl Bff for Hello {
//!     const NAME: &'static str = "bff-hello";
//!     const ABOUT: &'static str = "An example BFF";
//!     const PUBLIC_PORT: u16 = 8090;
//!     const ADMIN_PORT: u16 = 9090;
//!     const SERVICES: &'static [ServiceName] = &[ServiceName::Products];
//! }
//!
//! fn routes(parts: &BffParts) -> Router {
//!     let _products = parts.downstreams().client(ServiceName::Products).clone();
//!     Router::new().route("/hello", get(|| async { "hello" }))
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     bff::main::<Hello, _>(routes)
//! }
//! ```

pub mod auth;
pub mod bff;
pub mod cli;
pub mod config;
pub mod context;
pub mod downstream;
pub mod error;
pub mod observability;
pub mod server;

pub use context::RequestContext;
pub use error::Error;
