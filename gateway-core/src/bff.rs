//! What every BFF binary is made of: its identity, configuration shape and start-up.
//!
//! A BFF is a marker type implementing [`Bff`]: its name, default ports and
//! the downstream services it calls. Its configuration is [`BffConfig`]:
//! the sections `[server]`, `[observability]`, `[auth]` and `[downstream.<service>]`
//! mean the same in every BFF, so an operator learns them once. [`main`] is
//! the whole `main` of a BFF binary; [`start`] is what it runs, also used by
//! tests and `devstack` to start a BFF inside another process.

use std::{
    collections::BTreeMap, fmt::Debug, future::Future, marker::PhantomData, process::ExitCode,
    sync::Arc,
};

use axum::Router;
use serde::{Deserialize, Serialize};

use crate::{
    RequestContext,
    auth::{AuthConfig, AuthStartError, Authenticator},
    cli,
    config::{ConfigError, ServiceConfig},
    downstream::{
        ClientBuildError, DownstreamClient, DownstreamConfig, DownstreamError, Resource,
        ServiceName,
    },
    observability::{ObservabilityConfig, Telemetry},
    server::{Gateway, Running, ServeError, ServerConfig, Shutdown},
};

/// One BFF: who it is and which services it calls.
pub trait Bff: Debug + Clone + PartialEq + Send + Sync + 'static {
    /// The binary's name, also the `bff` metrics label (`bff-web`).
    const NAME: &'static str;
    /// One line for `--help`.
    const ABOUT: &'static str;
    /// Default public port (DESIGN §6).
    const PUBLIC_PORT: u16;
    /// Default admin port (DESIGN §6).
    const ADMIN_PORT: u16;
    /// The downstream services it calls; each gets a `[downstream.<name>]` section.
    const SERVICES: &'static [ServiceName];
    /// Route templates served without authentication; every other route
    /// needs a credential (fail closed).
    const PUBLIC_ROUTES: &'static [&'static str] = &[];
    /// The cookie that may carry the token, by default.
    const SESSION_COOKIE: Option<&'static str> = None;
}

/// The whole configuration of BFF `B`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    bound(deserialize = "B: Bff", serialize = "")
)]
pub struct BffConfig<B> {
    /// Listeners and limits.
    pub server: ServerConfig,
    /// Logging.
    pub observability: ObservabilityConfig,
    /// Who may call, and how they prove it.
    pub auth: AuthConfig,
    /// The services this BFF calls, by name. Defaults point every one of
    /// [`Bff::SERVICES`] at demo-services on `127.0.0.1`.
    pub downstream: BTreeMap<ServiceName, DownstreamConfig>,
    #[serde(skip)]
    bff: PhantomData<B>,
}

impl<B: Bff> Default for BffConfig<B> {
    fn default() -> Self {
        Self {
            server: ServerConfig::with_ports(B::PUBLIC_PORT, B::ADMIN_PORT),
            observability: ObservabilityConfig::default(),
            auth: AuthConfig {
                session_cookie: B::SESSION_COOKIE.map(str::to_owned),
                ..AuthConfig::for_audience(B::NAME)
            },
            downstream: B::SERVICES
                .iter()
                .map(|service| (*service, DownstreamConfig::local(service.default_port())))
                .collect(),
            bff: PhantomData,
        }
    }
}

impl<B: Bff> ServiceConfig for BffConfig<B> {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.observability.validate()?;
        self.auth.validate()?;
        if let Some(extra) = self
            .downstream
            .keys()
            .find(|service| !B::SERVICES.contains(service))
        {
            return Err(ConfigError::rule(
                &format!("downstream.{}", extra.as_str()),
                format!("{} does not call the {} service", B::NAME, extra.as_str()),
            ));
        }
        Ok(())
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
    /// The authenticator could not be built.
    #[error(transparent)]
    Auth(#[from] AuthStartError),
}

/// The clients of the services a BFF calls; cheap to clone, so handlers
/// can hold it as their state.
#[derive(Debug, Clone)]
pub struct Downstreams {
    bff: &'static str,
    clients: Arc<BTreeMap<ServiceName, DownstreamClient>>,
}

impl Downstreams {
    /// The client of `service`.
    ///
    /// # Panics
    ///
    /// When `service` is not in the BFF's [`Bff::SERVICES`]: a programming
    /// error that the first test of the BFF shows.
    pub fn client(&self, service: ServiceName) -> &DownstreamClient {
        match self.clients.get(&service) {
            Some(client) => client,
            None => panic!(
                "{} does not list {} in Bff::SERVICES",
                self.bff,
                service.as_str()
            ),
        }
    }

    /// `GET`s resource `T` number `id` from the service that owns it.
    pub async fn fetch<T: Resource>(
        &self,
        id: u64,
        context: &RequestContext,
    ) -> Result<T, DownstreamError> {
        self.client(T::SERVICE).get(&T::path(id), context).await
    }
}

/// What a BFF's routes are built from: its downstream clients.
#[derive(Debug)]
pub struct BffParts {
    downstreams: Downstreams,
}

impl BffParts {
    /// The downstream clients.
    pub fn downstreams(&self) -> Downstreams {
        self.downstreams.clone()
    }
}

/// Starts BFF `B`: builds its downstream clients and authenticator, its
/// routes with `routes` (every one authenticated but [`Bff::PUBLIC_ROUTES`]),
/// and serves them until `shutdown` triggers.
pub async fn start<B: Bff>(
    config: BffConfig<B>,
    shutdown: Shutdown,
    routes: impl FnOnce(&BffParts) -> Router,
) -> Result<Running, StartError> {
    let telemetry = Telemetry::new(B::NAME);
    let mut clients = BTreeMap::new();
    for (service, downstream) in &config.downstream {
        clients.insert(
            *service,
            DownstreamClient::new(*service, downstream, &telemetry)?,
        );
    }
    let parts = BffParts {
        downstreams: Downstreams {
            bff: B::NAME,
            clients: Arc::new(clients),
        },
    };
    let gateway = Gateway::new(B::NAME, config.server, telemetry.clone());
    let authenticator =
        Authenticator::start(&config.auth, &telemetry, gateway.readiness(), &shutdown)?;
    let router = routes(&parts).route_layer(authenticator.layer(B::PUBLIC_ROUTES));
    Ok(gateway.serve(router, shutdown).await?)
}

/// The `main` of BFF `B`'s binary: command line, configuration, then
/// [`start`] until SIGTERM or SIGINT has drained it.
pub fn main<B: Bff, R>(routes: R) -> ExitCode
where
    R: FnOnce(&BffParts) -> Router,
{
    cli::main(B::NAME, B::ABOUT, |config: BffConfig<B>, shutdown| {
        run(start(config, shutdown, routes))
    })
}

async fn run(
    started: impl Future<Output = Result<Running, StartError>>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    started.await?.wait().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Catalog;

    impl Bff for Catalog {
        const NAME: &'static str = "bff-catalog";
        const ABOUT: &'static str = "test";
        const PUBLIC_PORT: u16 = 8099;
        const ADMIN_PORT: u16 = 9099;
        const SERVICES: &'static [ServiceName] = &[ServiceName::Products, ServiceName::Pricing];
    }

    #[test]
    fn defaults_point_every_service_at_demo_services() {
        let config = BffConfig::<Catalog>::default();
        assert_eq!(config.downstream.len(), 2);
        assert_eq!(
            config.downstream[&ServiceName::Pricing].url.as_str(),
            "http://127.0.0.1:7003/"
        );
        assert_eq!(config.server.listen.port(), 8099);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn a_service_the_bff_does_not_call_is_a_configuration_error() {
        let mut config = BffConfig::<Catalog>::default();
        config
            .downstream
            .insert(ServiceName::Orders, DownstreamConfig::local(7006));
        let error = config
            .validate()
            .expect_err("orders is not called")
            .to_string();
        assert!(error.starts_with("downstream.orders"), "{error}");
    }

    #[test]
    fn an_unknown_service_name_is_rejected_while_loading() {
        let toml = "[downstream.warehouse]\nurl = \"http://w:1\"\n";
        let loaded = figment::Figment::from(figment::providers::Serialized::defaults(BffConfig::<
            Catalog,
        >::default(
        )))
        .merge(<figment::providers::Toml as figment::providers::Format>::string(toml))
        .extract::<BffConfig<Catalog>>();
        assert!(loaded.is_err());
    }
}
