//! The settings of one downstream service (`[downstream.<name>]`).

use std::{num::NonZeroUsize, path::PathBuf};

use serde::{Deserialize, Serialize};

use super::{BreakerConfig, RetryConfig};
use crate::{
    cache::ServiceCacheConfig,
    config::{ConfigError, Delay, HumanDuration, ServiceUrl},
};

/// Settings of one downstream service (`[downstream.<name>]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownstreamConfig {
    /// Base URL, for example `http://quotes.internal:7100`.
    pub url: ServiceUrl,
    /// Whole-call timeout, connect to last body byte, retries included (default `2s`).
    #[serde(default = "DownstreamConfig::default_timeout")]
    pub timeout: HumanDuration,
    /// Timeout to open a connection (default `500ms`).
    #[serde(default = "DownstreamConfig::default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// How long an idle pooled connection is kept (default `90s`).
    #[serde(default = "DownstreamConfig::default_pool_idle_timeout")]
    pub pool_idle_timeout: HumanDuration,
    /// Most idle connections kept open to the service (default 64).
    #[serde(default = "DownstreamConfig::default_pool_max_idle")]
    pub pool_max_idle: usize,
    /// Largest response body accepted, in bytes (default 4 MiB).
    #[serde(default = "DownstreamConfig::default_max_response_bytes")]
    pub max_response_bytes: NonZeroUsize,
    /// A PEM file of CA certificates for this `https` service, instead of
    /// `[client_tls] ca_file` (the public roots stay trusted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Most calls in flight to the service from this instance (default 256).
    #[serde(default = "DownstreamConfig::default_max_concurrency")]
    pub max_concurrency: NonZeroUsize,
    /// How long a call over `max_concurrency` waits for a slot before it
    /// fails with 503 `DOWNSTREAM_OVERLOADED` (default `0s`: at once).
    #[serde(default)]
    pub concurrency_wait: Delay,
    /// The circuit breaker.
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// Retries of idempotent calls.
    #[serde(default)]
    pub retry: RetryConfig,
    /// How the service's answers are cached.
    #[serde(default)]
    pub cache: ServiceCacheConfig,
}

impl DownstreamConfig {
    const fn default_timeout() -> HumanDuration {
        HumanDuration::from_secs(2)
    }
    const fn default_connect_timeout() -> HumanDuration {
        HumanDuration::from_millis(500)
    }
    const fn default_pool_idle_timeout() -> HumanDuration {
        HumanDuration::from_secs(90)
    }
    const fn default_pool_max_idle() -> usize {
        64
    }
    const fn default_max_response_bytes() -> NonZeroUsize {
        NonZeroUsize::new(4 * 1024 * 1024).expect("non-zero")
    }
    const fn default_max_concurrency() -> NonZeroUsize {
        NonZeroUsize::new(256).expect("non-zero")
    }

    /// Checks the settings of the service named `service`.
    pub fn validate(&self, service: &str) -> Result<(), ConfigError> {
        if self.concurrency_wait.get() > self.timeout.get() {
            return Err(ConfigError::rule(
                &format!("downstream.{service}.concurrency_wait"),
                "must not exceed the timeout",
            ));
        }
        self.breaker.validate(service)?;
        self.retry.validate(service)?;
        self.cache.validate(service)
    }

    /// A service on `127.0.0.1:{port}` with default settings: the built-in
    /// defaults point at `demo-services`.
    pub fn local(port: u16) -> Self {
        Self::at(ServiceUrl::parse(&format!("http://127.0.0.1:{port}")).expect("a valid local URL"))
    }

    /// A service at `url` with default settings.
    pub fn at(url: ServiceUrl) -> Self {
        Self {
            url,
            timeout: Self::default_timeout(),
            connect_timeout: Self::default_connect_timeout(),
            pool_idle_timeout: Self::default_pool_idle_timeout(),
            pool_max_idle: Self::default_pool_max_idle(),
            max_response_bytes: Self::default_max_response_bytes(),
            ca_file: None,
            max_concurrency: Self::default_max_concurrency(),
            concurrency_wait: Delay::default(),
            breaker: BreakerConfig::default(),
            retry: RetryConfig::default(),
            cache: ServiceCacheConfig::default(),
        }
    }
}
