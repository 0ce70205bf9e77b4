//! How a BFF binary is assembled: its identity, its configuration, its parts.
//!
//! A BFF is a type implementing [`Bff`]: its name and default ports, the
//! downstream services it calls, its own configuration section, and the
//! functions building its routes (and, where it needs them, layers of its
//! own). [`main`] is the whole `main` of a BFF binary: [`start`], with the
//! configuration reloaded on SIGHUP or when its file changes (`reload.rs`);
//! [`start`] alone is what tests and `devstack` use to start a BFF inside
//! another process.
//!
//! # Where a BFF's code sits in the request path
//!
//! [`start`] assembles, from the outside in:
//!
//! 1. the shared server stack (trace context, access log, problem
//!    rendering, panics, hygiene, body and time limits: see `server`);
//! 2. the BFF's own layers, [`Bff::layers`]: they see every request that
//!    reached a route, before authentication, so a CORS preflight (which
//!    carries no credential) can be answered there;
//! 3. authentication, on every route but [`Bff::PUBLIC_ROUTES`];
//! 4. rate limiting, keyed by the verified caller (by the client address
//!    on public routes), charging each route its [`Bff::ROUTE_COSTS`];
//! 5. the BFF's routes, [`Bff::routes`], with their per-route layers (a
//!    scope check) added there with `route_layer`; then, for paths none of
//!    them serves, the pass-through routes of `[[routes]]` (see `proxy`),
//!    behind the same layers 2 to 4.

mod config;
mod parts;
mod reload;

pub use config::BffConfig;
pub use parts::BffParts;

use std::{fmt::Debug, future::Future, process::ExitCode, sync::Arc};

use axum::{Router, http::HeaderMap};
use serde::{Serialize, de::DeserializeOwned};
use tower::ServiceBuilder;

use crate::{
    auth::{AuthStartError, Authenticator, InternalTokenError, InternalTokens},
    cache::ResponseCache,
    cli,
    clock::Clock,
    config::{ConfigError, ConfigSource, Validate},
    downstream::{ClientBuildError, Downstreams, ServiceSpec},
    idempotency::IdempotencyLayer,
    lifecycle::Shutdown,
    observability::Telemetry,
    proxy,
    ratelimit::RateLimiter,
    server::{Gateway, Running, ServeError},
    stores::SharedStores,
    tls::{ClientTls, TlsError},
};

/// One BFF: who it is, what it calls, and how its routes are built.
pub trait Bff: Debug + Clone + PartialEq + Send + Sync + 'static {
    /// The binary's name, also the `bff` metrics label and the default
    /// token audience (`bff-web`).
    const NAME: &'static str;
    /// One line for `--help`.
    const ABOUT: &'static str;
    /// Default public port.
    const PUBLIC_PORT: u16;
    /// Default admin port.
    const ADMIN_PORT: u16;
    /// The downstream services it calls; each gets a `[downstream.<name>]`
    /// section, by default on `127.0.0.1` at the service's local port.
    const SERVICES: &'static [ServiceSpec];
    /// Route templates served without authentication; every other route
    /// needs a credential (fail closed).
    const PUBLIC_ROUTES: &'static [&'static str] = &[];
    /// The cookie that may carry the token, by default.
    const SESSION_COOKIE: Option<&'static str> = None;
    /// Route templates that cost more than one rate-limit token, with their
    /// cost (a page fanning out to many services, a search).
    const ROUTE_COSTS: &'static [(&'static str, u32)] = &[];
    /// The name of its own configuration section (`web` for `[web]`); must
    /// differ from the shared sections.
    const SECTION: &'static str;
    /// Its own configuration section: loaded, validated (keys named without
    /// the section, which [`BffConfig`] adds) and shown like the shared
    /// sections. Derive `Deserialize` with `deny_unknown_fields` and
    /// `default`, like every shared section.
    type Config: Serialize
        + DeserializeOwned
        + Default
        + Clone
        + Debug
        + PartialEq
        + Send
        + Sync
        + Validate
        + 'static;

    /// Builds its routes over its own configuration and its parts.
    fn routes(config: &Self::Config, parts: &BffParts) -> Router;

    /// Wraps its routes in layers of its own, outside authentication and
    /// inside the shared stack (see the module docs). None by default.
    fn layers(routes: Router, _config: &Self::Config, _parts: &BffParts) -> Router {
        routes
    }

    /// Headers every answer carries, errors included, beside the security
    /// headers the server sends for every BFF (bff-web's
    /// `Strict-Transport-Security`). None by default.
    fn response_headers(_config: &Self::Config) -> HeaderMap {
        HeaderMap::new()
    }
}

/// A BFF could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration breaks a rule.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A downstream client could not be built.
    #[error(transparent)]
    Client(#[from] ClientBuildError),
    /// A listener could not be bound.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The authenticator could not be built.
    #[error(transparent)]
    Auth(#[from] AuthStartError),
    /// The internal-token signing key cannot be used.
    #[error(transparent)]
    InternalToken(#[from] InternalTokenError),
    /// The CA file of `[client_tls]` cannot be used.
    #[error("client_tls.ca_file: {0}")]
    Tls(#[from] TlsError),
}

/// Starts BFF `B` as the module docs describe, and serves it until
/// `shutdown` triggers.
pub async fn start<B: Bff>(
    config: BffConfig<B>,
    shutdown: Shutdown,
) -> Result<Running, StartError> {
    start_at(config, shutdown, Clock::system()).await
}

/// [`start`] with the time of day read from `clock`, which a test moves
/// to see a daily quota reset or a sunset pass.
pub async fn start_at<B: Bff>(
    config: BffConfig<B>,
    shutdown: Shutdown,
    clock: Clock,
) -> Result<Running, StartError> {
    launch(config, shutdown, clock, None).await
}

/// [`start_at`], and with a `source` the configuration reloaded from it on
/// SIGHUP or when its file changes (`reload.rs`).
async fn launch<B: Bff>(
    config: BffConfig<B>,
    shutdown: Shutdown,
    clock: Clock,
    source: Option<ConfigSource>,
) -> Result<Running, StartError> {
    config.validate()?;
    let config = config.with_deprecated_names_moved();
    let running_config = source.is_some().then(|| config.clone());
    // First: installs the crypto provider every client below is built with.
    let tls = ClientTls::load(config.client_tls.ca_file.as_deref())?;
    let telemetry = Telemetry::new(B::NAME);
    let stores = SharedStores::open(config.redis.url.expose(), &shutdown)?;
    let cache = ResponseCache::new(&config.cache, &stores, &telemetry, &shutdown);
    let services = [
        B::SERVICES,
        &proxy::extra_services(&config.routes, B::SERVICES),
    ]
    .concat();
    let internal_tokens = match config.auth.internal_token.enabled {
        true => Some(Arc::new(InternalTokens::new(
            &config.auth.internal_token,
            &telemetry,
        )?)),
        false => None,
    };
    let downstreams = Downstreams::build(
        B::NAME,
        &services,
        &config.downstream,
        &tls,
        &telemetry,
        Some(&cache),
        internal_tokens.as_ref(),
    )?;
    let trusted_proxies = config.server.trusted_proxies.clone();
    let mut gateway = Gateway::new(B::NAME, config.server, telemetry.clone())
        .with_admin(cache.admin_routes())
        .with_response_headers(B::response_headers(&config.own));
    if let Some(tokens) = &internal_tokens {
        gateway = gateway.with_admin(tokens.admin_routes());
    }
    let parts = BffParts {
        downstreams,
        telemetry,
        readiness: gateway.readiness().clone(),
        shutdown: shutdown.clone(),
        idempotency: IdempotencyLayer::new(B::NAME, &config.idempotency, &stores),
        stores,
        clock,
    };
    let authenticator = Authenticator::start(
        &config.auth,
        &tls,
        &parts.telemetry,
        &parts.readiness,
        &shutdown,
        &parts.stores,
    )?;
    let limiter = match config.rate_limit.enabled {
        true => Some(RateLimiter::start(
            B::NAME,
            &config.rate_limit,
            &trusted_proxies,
            &parts.telemetry,
            &parts.readiness,
            &shutdown,
            &parts.stores,
            &parts.clock,
        )?),
        false => None,
    };
    if let (Some(source), Some(running)) = (source, running_config) {
        let reloader = reload::Reloader::new(
            source,
            running,
            authenticator.clone(),
            limiter.clone(),
            &parts.telemetry,
        );
        tokio::spawn(reloader.watch(shutdown.clone()));
    }
    // One route layer for both: the router boxes each route layer apart.
    let caller = ServiceBuilder::new()
        .layer(authenticator.layer(B::PUBLIC_ROUTES))
        .option_layer(limiter.map(|limiter| limiter.layer(B::ROUTE_COSTS)));
    let routes = B::routes(&config.own, &parts).route_layer(caller.clone());
    let app = B::layers(routes, &config.own, &parts);
    let gateway = match config.routes.is_empty() {
        true => gateway,
        false => {
            let passed_through =
                proxy::router(&config.routes, &parts.downstreams, &trusted_proxies);
            let passed_through = passed_through.route_layer(caller);
            gateway.with_fallback(B::layers(passed_through, &config.own, &parts))
        }
    };
    Ok(gateway.serve(app, shutdown).await?)
}

/// The `main` of BFF `B`'s binary: command line, configuration, then
/// [`start`] until SIGTERM or SIGINT has drained it.
pub fn main<B: Bff>() -> ExitCode {
    cli::main(
        B::NAME,
        B::ABOUT,
        |config: BffConfig<B>, shutdown, source| {
            run(launch(config, shutdown, Clock::system(), Some(source)))
        },
    )
}

async fn run(
    started: impl Future<Output = Result<Running, StartError>>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    started.await?.wait().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use figment::{
        Figment,
        providers::{Format, Serialized, Toml},
    };
    use serde::Deserialize;

    use super::*;
    use crate::config::render_masked;

    #[derive(Debug, Clone, PartialEq)]
    struct Catalog;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct CatalogConfig {
        page_size: u32,
    }

    impl Default for CatalogConfig {
        fn default() -> Self {
            Self { page_size: 20 }
        }
    }

    impl Validate for CatalogConfig {
        fn validate(&self) -> Result<(), ConfigError> {
            if self.page_size == 0 || self.page_size > 100 {
                return Err(ConfigError::rule("page_size", "must be 1 to 100"));
            }
            Ok(())
        }
    }

    impl Bff for Catalog {
        const NAME: &'static str = "bff-catalog";
        const ABOUT: &'static str = "test";
        const PUBLIC_PORT: u16 = 8099;
        const ADMIN_PORT: u16 = 9099;
        const SERVICES: &'static [ServiceSpec] = &[
            ServiceSpec::new("listings", 7101),
            ServiceSpec::new("quotes", 7103),
        ];
        const ROUTE_COSTS: &'static [(&'static str, u32)] = &[("/search", 30)];
        const SECTION: &'static str = "catalog";
        type Config = CatalogConfig;

        fn routes(_config: &CatalogConfig, _parts: &BffParts) -> Router {
            Router::new()
        }
    }

    fn load(toml: &str) -> Result<BffConfig<Catalog>, String> {
        let config: BffConfig<Catalog> =
            Figment::from(Serialized::defaults(BffConfig::<Catalog>::default()))
                .merge(Toml::string(toml))
                .extract()
                .map_err(|error| format!("{}: {}", error.path.join("."), error.kind))?;
        config.validate().map_err(|error| error.to_string())?;
        Ok(config)
    }

    #[test]
    fn defaults_point_every_service_at_its_local_port() {
        let config = BffConfig::<Catalog>::default();
        assert_eq!(config.downstream.len(), 2);
        assert_eq!(
            config.downstream["quotes"].url.as_str(),
            "http://127.0.0.1:7103/"
        );
        assert_eq!(config.server.listen.port(), 8099);
        assert_eq!(config.own.page_size, 20);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn the_own_section_loads_under_its_name() {
        let config = load("[catalog]\npage_size = 50\n").expect("valid");
        assert_eq!(config.own.page_size, 50);
    }

    #[test]
    fn the_own_section_is_validated_with_its_keys_named_in_full() {
        let error = load("[catalog]\npage_size = 0\n").expect_err("out of range");
        assert_eq!(error, "catalog.page_size: must be 1 to 100");
    }

    #[test]
    fn unknown_keys_are_refused_in_the_own_section_and_at_the_top() {
        let error = load("[catalog]\npage_sise = 5\n").expect_err("typo");
        assert!(
            error.starts_with("catalog.page_sise: unknown field"),
            "{error}"
        );
        let error = load("[catalogue]\npage_size = 5\n").expect_err("unknown section");
        assert!(error.starts_with("catalogue: unknown field"), "{error}");
        assert!(
            error.contains("`catalog`"),
            "the expected sections are listed: {error}"
        );
    }

    #[test]
    fn the_own_section_is_rendered_with_the_shared_ones() {
        let rendered = render_masked(&BffConfig::<Catalog>::default());
        assert!(
            rendered.contains("[catalog]\npage_size = 20\n"),
            "{rendered}"
        );
        assert!(rendered.contains("[server]"), "{rendered}");
        let reloaded: BffConfig<Catalog> = toml::from_str(&rendered).expect("reloads");
        assert_eq!(reloaded, BffConfig::default());
    }

    #[test]
    fn a_service_the_bff_does_not_call_is_a_configuration_error() {
        let error = load("[downstream.warehouse]\nurl = \"http://w:1\"\n").expect_err("not called");
        assert_eq!(
            error,
            "downstream.warehouse: bff-catalog does not call a service named warehouse (it calls listings, quotes) and no route forwards to it"
        );
    }

    #[test]
    fn a_plan_too_small_for_a_routes_cost_is_a_configuration_error() {
        let error = load("[rate_limit.plans.tiny]\ncapacity = 10\nrefill_per_second = 1\n")
            .expect_err("the search costs 30");
        assert_eq!(
            error,
            "rate_limit.plans.tiny.capacity: smaller than the cost of /search (30): no request of it could pass"
        );
    }

    #[test]
    fn a_service_without_configuration_is_a_configuration_error() {
        let mut config = BffConfig::<Catalog>::default();
        config.downstream.remove("quotes");
        let error = config.validate().expect_err("missing").to_string();
        assert_eq!(
            error,
            "downstream.quotes: missing: bff-catalog calls this service"
        );
    }
}
