//! What every BFF binary is made of: its configuration shape and start-up.
//!
//! A BFF's configuration is [`BffConfig`] over its own set of downstream
//! services (a struct implementing [`Downstreams`]): the sections
//! `[server]`, `[observability]` and `[downstream.<service>]` mean the same
//! in every BFF, so an operator learns them once.

use std::fmt::Debug;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{
    config::{ConfigError, ServiceConfig},
    downstream::ClientBuildError,
    observability::ObservabilityConfig,
    server::{ServeError, ServerConfig},
};

/// The downstream services one BFF calls, and its identity.
pub trait Downstreams:
    Serialize + DeserializeOwned + Default + Clone + Debug + Send + 'static
{
    /// The binary's name, also the `bff` metrics label (`bff-web`).
    const NAME: &'static str;
    /// Default public port (DESIGN §6).
    const PUBLIC_PORT: u16;
    /// Default admin port (DESIGN §6).
    const ADMIN_PORT: u16;
}

/// The whole configuration of a BFF.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, bound = "D: Downstreams")]
pub struct BffConfig<D> {
    /// Listeners and limits.
    pub server: ServerConfig,
    /// Logging.
    pub observability: ObservabilityConfig,
    /// The services this BFF calls.
    pub downstream: D,
}

impl<D: Downstreams> Default for BffConfig<D> {
    fn default() -> Self {
        Self {
            server: ServerConfig::with_ports(D::PUBLIC_PORT, D::ADMIN_PORT),
            observability: ObservabilityConfig::default(),
            downstream: D::default(),
        }
    }
}

impl<D: Downstreams> ServiceConfig for BffConfig<D> {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.observability.validate()
    }

    fn observability(&self) -> &ObservabilityConfig {
        &self.observability
    }
}

/// A BFF could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A downstream client could not be built.
    #[error(transparent)]
    Client(#[from] ClientBuildError),
    /// A listener could not be bound.
    #[error(transparent)]
    Serve(#[from] ServeError),
}
