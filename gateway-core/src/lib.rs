//! `gateway-core`: every cross-cutting concern of the BFF platform, in one place.
//!
//! The three BFF binaries (`bff-web`, `bff-mobile`, `bff-partner`) own only
//! their API shape. Everything a gateway must do the same way for all of them
//! lives here, one concern per module:
//!
//! - [`lifecycle`]: the drain signal and readiness gates every other module
//!   may use.
//! - [`clock`]: the time of day for calendar rules (daily quotas,
//!   deprecation dates), which a test can set.
//! - [`config`]: loading (defaults < TOML file < `BFF_` environment), strict
//!   validation, and the value types configurations are made of. Each
//!   concern owns its configuration type.
//! - [`tls`]: TLS for the gateway's own calls (rustls with ring, public
//!   roots plus a private CA file).
//! - [`identity`]: the verified caller and the headers that carry it downstream.
//! - [`observability`]: structured logs, W3C trace context, access log and
//!   Prometheus metrics.
//! - [`error`]: how requests fail: [`Error`], the [`error::ProblemDetails`]
//!   every concern's error implements, and `application/problem+json`.
//! - [`context`]: what a handler knows about the request it serves.
//! - [`conditional`]: strong `ETag`s, `304 Not Modified` and each route's
//!   `Cache-Control`.
//! - [`stores`]: the Redis connection every instance shares, opened once.
//! - [`auth`]: JWT (HS256, RS256, ES256 with a cached JWKS) and API keys,
//!   and coarse scope checks.
//! - [`ratelimit`]: token buckets per caller, plans per tenant and API key,
//!   daily quotas.
//! - [`cache`]: the response cache, in process and in Redis, with single
//!   flight, stale answers and tag invalidation across instances.
//! - [`idempotency`]: unsafe requests retried with the same
//!   `Idempotency-Key` carried out once, across instances.
//! - [`downstream`]: one pooled HTTP client per configured downstream service.
//! - [`server`]: the public and admin listeners, connection hygiene, the
//!   shared layer stack and graceful drain.
//! - [`cli`]: the command line every binary shares (`--config`,
//!   `--check-config`, `--help`) and the process lifecycle around it.
//! - [`bff`]: how a BFF is assembled from all of the above.
//!
//! Modules depend on each other in that order only (a later one may use an
//! earlier one, never the reverse), so no two concerns form a cycle;
//! `docs/architecture.md` draws the graph. gateway-core knows no downstream
//! service and no resource: a BFF names the services it calls.
//!
//! A BFF is a type implementing [`bff::Bff`] and a one-line `main`:
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use gateway_core::{
//!     bff::{self, Bff, BffParts},
//!     config::{ConfigError, Validate},
//!     downstream::ServiceSpec,
//! };
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, PartialEq)]
//! struct Hello;
//!
//! /// `[hello]`: the BFF's own section.
//! #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
//! #[serde(deny_unknown_fields, default)]
//! struct HelloConfig {
//!     greeting: String,
//! }
//!
//! impl Validate for HelloConfig {
//!     fn validate(&self) -> Result<(), ConfigError> {
//!         Ok(())
//!     }
//! }
//!
//! impl Bff for Hello {
//!     const NAME: &'static str = "bff-hello";
//!     const ABOUT: &'static str = "An example BFF";
//!     const PUBLIC_PORT: u16 = 8090;
//!     const ADMIN_PORT: u16 = 9090;
//!     const SERVICES: &'static [ServiceSpec] = &[ServiceSpec::new("greetings", 7100)];
//!     const SECTION: &'static str = "hello";
//!     type Config = HelloConfig;
//!
//!     fn routes(config: &HelloConfig, parts: &BffParts) -> Router {
//!         let _greetings = parts.downstreams().client("greetings").clone();
//!         let greeting = config.greeting.clone();
//!         Router::new().route("/hello", get(move || async move { greeting }))
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     bff::main::<Hello>()
//! }
//! ```

pub mod auth;
pub mod bff;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod conditional;
pub mod config;
pub mod context;
pub mod cursor;
pub mod downstream;
pub mod error;
pub mod idempotency;
pub mod identity;
pub mod lifecycle;
pub mod observability;
pub mod proxy;
pub mod ratelimit;
pub mod server;
pub mod stores;
pub mod tls;

pub use context::RequestContext;

/// Every binary built on gateway-core allocates with jemalloc. A request
/// makes many small, short-lived allocations on several threads; on the
/// product-page benchmark jemalloc serves them with 8 % fewer instructions
/// and 11 % less CPU per request than the system allocator, at the same
/// memory (mimalloc was as fast but used 45 % more; `bench/README.md`).
/// The binaries' default `jemalloc` feature turns it on; the test build
/// goes without.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
pub use error::Error;
