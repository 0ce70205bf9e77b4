//! The settings of one downstream service (`[downstream.<name>]`).

use std::{num::NonZeroUsize, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{HumanDuration, ServiceUrl};

/// Settings of one downstream service (`[downstream.<name>]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownstreamConfig {
    /// Base URL, for example `http://quotes.internal:7100`.
    pub url: ServiceUrl,
    /// Whole-call timeout, connect to last body byte (default `2s`).
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
        }
    }
}
