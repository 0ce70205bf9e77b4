//! Calls to downstream services: one pooled HTTP client per service, named by
//! configuration.
//!
//! gateway-core knows no service. A BFF lists the services it calls as
//! [`ServiceSpec`]s (a name and the port of a one-machine run); each gets a
//! `[downstream.<name>]` section ([`DownstreamConfig`]) and one
//! [`DownstreamClient`], built once at start and shared by every request:
//! connections are kept alive and reused, never opened per request.
//! [`Downstreams`] holds a BFF's clients by name and fetches any
//! [`Resource`] from the service that owns it.
//!
//! Each call forwards the trace (`traceparent` with a child span id,
//! `tracestate`, `x-request-id`) and the verified identity (`X-Auth-*`,
//! rendered once per identity), goes through the service's circuit breaker,
//! retry budget and concurrency bound, is bounded by the service's timeout
//! (which covers the body and every retry) and by a maximum response size,
//! is measured in the `downstream_request_duration_seconds` histogram, and
//! fails with a [`DownstreamError`] that answers 502, 503 or 504. A `GET`
//! is first looked up in the response cache ([`crate::cache`]), as the
//! service's `Cache-Control` and `[downstream.<name>.cache]` allow.
//!
//! [`aggregate`] assembles an answer from several calls in parallel, with
//! required and optional parts and the `BFF-Partial` contract.
//!
//! # Example
//!
//! ```no_run
//! use gateway_core::{RequestContext, downstream::{DownstreamClient, DownstreamConfig}};
//! use gateway_core::observability::Telemetry;
//! use gateway_core::tls::ClientTls;
//!
//! #[derive(serde::Deserialize)]
//! struct Quote {
//!     amount_minor: i64,
//! }
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let telemetry = Telemetry::new("bff-example");
//! let tls = ClientTls::load(None)?;
//! let quotes = DownstreamClient::new("quotes", &DownstreamConfig::local(7100), &tls, &telemetry, None)?;
//! let quote: Quote = quotes.get("/quotes/42", &RequestContext::detached()).await?;
//! # Ok(()) }
//! ```

pub mod aggregate;
mod breaker;
mod client;
mod config;
mod error;
mod retry;

pub use breaker::BreakerConfig;
pub use client::{ClientBuildError, DownstreamClient};
pub use config::DownstreamConfig;
pub use error::{DownstreamError, Refused, fetching, refused};
pub use retry::RetryConfig;
pub use shared_schema::{Resource, ServiceSpec};

use std::{collections::BTreeMap, sync::Arc};

use crate::{
    RequestContext, auth::InternalTokens, cache::ResponseCache, observability::Telemetry,
    tls::ClientTls,
};

/// The clients of the services one BFF calls, by name; cheap to clone, so
/// handlers can hold it as their state.
#[derive(Debug, Clone)]
pub struct Downstreams {
    /// The BFF they belong to, named when a service is missing.
    owner: &'static str,
    clients: Arc<BTreeMap<&'static str, DownstreamClient>>,
}

impl Downstreams {
    /// Builds a client for each of `services` from its entry in `configs`,
    /// their `GET`s going through `cache` as each service's settings say,
    /// and every call carrying the caller's internal token when
    /// `internal_tokens` is given.
    pub fn build(
        owner: &'static str,
        services: &[ServiceSpec],
        configs: &BTreeMap<String, DownstreamConfig>,
        tls: &ClientTls,
        telemetry: &Telemetry,
        cache: Option<&ResponseCache>,
        internal_tokens: Option<&Arc<InternalTokens>>,
    ) -> Result<Self, ClientBuildError> {
        let mut clients = BTreeMap::new();
        for service in services {
            let config = configs
                .get(service.name)
                .ok_or(ClientBuildError::NotConfigured(service.name))?;
            clients.insert(
                service.name,
                DownstreamClient::signing(
                    service.name,
                    config,
                    tls,
                    telemetry,
                    cache,
                    internal_tokens.cloned(),
                )?,
            );
        }
        Ok(Self {
            owner,
            clients: Arc::new(clients),
        })
    }

    /// The client of `service`.
    ///
    /// # Panics
    ///
    /// When `service` is not one the BFF lists: a programming error that the
    /// first test of the route shows (and that the server answers with a 500
    /// problem, never a dropped connection).
    pub fn client(&self, service: &str) -> &DownstreamClient {
        match self.clients.get(service) {
            Some(client) => client,
            None => panic!("{} does not list the {service} service", self.owner),
        }
    }

    /// `GET`s resource `T` number `id` from the service that owns it.
    pub async fn fetch<T: Resource>(
        &self,
        id: u64,
        context: &RequestContext,
    ) -> Result<T, DownstreamError> {
        self.client(T::SERVICE.name).get(T::path(id), context).await
    }
}
