//! The configuration of a BFF: the shared sections and the BFF's own.
//!
//! `[server]`, `[observability]`, `[auth]`, `[rate_limit]`, `[client_tls]`,
//! `[cache]`, `[downstream.<service>]` and `[[routes]]` mean
//! the same in every BFF, so an operator learns them once; the BFF's own
//! section is named by [`Bff::SECTION`] (`[web]`, `[mobile]`, `[partner]`)
//! and typed by [`Bff::Config`]. Serde is implemented by hand because that
//! section's name is the BFF's, not a field name known to a derive; unknown
//! sections are still refused, with the key in the error.

use std::{collections::BTreeMap, fmt, marker::PhantomData};

use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{self, DeserializeSeed, MapAccess, Visitor},
    ser::SerializeStruct,
};

use super::Bff;
use crate::{
    auth::AuthConfig,
    cache::CacheConfig,
    cli::ServiceConfig,
    config::{ConfigError, Validate},
    downstream::DownstreamConfig,
    idempotency::IdempotencyConfig,
    observability::ObservabilityConfig,
    proxy::RouteConfig,
    ratelimit::RateLimitConfig,
    server::ServerConfig,
    stores::RedisConfig,
    tls::ClientTlsConfig,
};

/// The whole configuration of BFF `B`.
#[derive(Debug, Clone, PartialEq)]
pub struct BffConfig<B: Bff> {
    /// Listeners and limits.
    pub server: ServerConfig,
    /// Logging.
    pub observability: ObservabilityConfig,
    /// Who may call, and how they prove it.
    pub auth: AuthConfig,
    /// How often they may.
    pub rate_limit: RateLimitConfig,
    /// The Redis the fleet shares.
    pub redis: RedisConfig,
    /// The trust of the gateway's own TLS calls (the JWKS, `https` services).
    pub client_tls: ClientTlsConfig,
    /// The response cache.
    pub cache: CacheConfig,
    /// Idempotent requests (`Idempotency-Key`).
    pub idempotency: IdempotencyConfig,
    /// The services this BFF calls, by name. Defaults point every one of
    /// [`Bff::SERVICES`] at `127.0.0.1` on its local port.
    pub downstream: BTreeMap<String, DownstreamConfig>,
    /// Pass-through routes, served by forwarding to a downstream service.
    pub routes: Vec<RouteConfig>,
    /// The BFF's own section, `[<Bff::SECTION>]`.
    pub own: B::Config,
}

impl<B: Bff> BffConfig<B> {
    /// Every top-level key, the BFF's own section last.
    const SECTIONS: &'static [&'static str] = &[
        "server",
        "observability",
        "auth",
        "rate_limit",
        "redis",
        "client_tls",
        "cache",
        "idempotency",
        "downstream",
        "routes",
        B::SECTION,
    ];
}

impl<B: Bff> BffConfig<B> {
    /// The configuration with the values set under a deprecated name moved
    /// to their place (`rate_limit.redis_url` to `[redis] url`,
    /// `rate_limit.trusted_proxies` to `[server] trusted_proxies`), each
    /// move logged once as a warning: they keep working for one release.
    pub fn with_deprecated_names_moved(mut self) -> Self {
        if !self.rate_limit.redis_url.is_empty() {
            tracing::warn!(
                "rate_limit.redis_url is deprecated and will be removed in the next release: set [redis] url (BFF_REDIS__URL) instead"
            );
            self.redis.url = std::mem::take(&mut self.rate_limit.redis_url);
        }
        if !self.rate_limit.trusted_proxies.is_empty() {
            tracing::warn!(
                "rate_limit.trusted_proxies is deprecated and will be removed in the next release: set [server] trusted_proxies (BFF_SERVER__TRUSTED_PROXIES) instead"
            );
            self.server.trusted_proxies = std::mem::take(&mut self.rate_limit.trusted_proxies);
        }
        self
    }
}

impl<B: Bff> Default for BffConfig<B> {
    fn default() -> Self {
        Self {
            server: ServerConfig::with_ports(B::PUBLIC_PORT, B::ADMIN_PORT),
            observability: ObservabilityConfig::default(),
            auth: AuthConfig {
                session_cookie: B::SESSION_COOKIE.unwrap_or_default().to_owned(),
                ..AuthConfig::for_audience(B::NAME)
            },
            rate_limit: RateLimitConfig::default(),
            redis: RedisConfig::default(),
            client_tls: ClientTlsConfig::default(),
            cache: CacheConfig::default(),
            idempotency: IdempotencyConfig::default(),
            downstream: B::SERVICES
                .iter()
                .map(|service| {
                    (
                        service.name.to_owned(),
                        DownstreamConfig::local(service.local_port),
                    )
                })
                .collect(),
            routes: Vec::new(),
            own: B::Config::default(),
        }
    }
}

impl<B: Bff> Validate for BffConfig<B> {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.observability.validate()?;
        self.auth.validate()?;
        self.rate_limit.validate()?;
        if !self.rate_limit.redis_url.is_empty() && !self.redis.url.is_empty() {
            return Err(ConfigError::rule(
                "rate_limit.redis_url",
                "is the deprecated name of [redis] url, which is set too: keep only [redis] url",
            ));
        }
        if !self.rate_limit.trusted_proxies.is_empty() && !self.server.trusted_proxies.is_empty() {
            return Err(ConfigError::rule(
                "rate_limit.trusted_proxies",
                "is the deprecated name of [server] trusted_proxies, which is set too: keep only [server] trusted_proxies",
            ));
        }
        self.client_tls.validate()?;
        self.idempotency.validate()?;
        if let Some((index, key)) = self
            .auth
            .api_keys
            .iter()
            .enumerate()
            .find(|(_, key)| !self.rate_limit.plans.contains_key(&key.plan))
        {
            return Err(ConfigError::rule(
                &format!("auth.api_keys[{index}].plan"),
                format!("no plan named {:?} in [rate_limit.plans]", key.plan),
            ));
        }
        if let Some((plan, route, cost)) = self.rate_limit.plans.iter().find_map(|(plan, shape)| {
            B::ROUTE_COSTS
                .iter()
                .find(|(_, cost)| *cost > shape.capacity)
                .map(|(route, cost)| (plan, route, cost))
        }) {
            return Err(ConfigError::rule(
                &format!("rate_limit.plans.{plan}.capacity"),
                format!("smaller than the cost of {route} ({cost}): no request of it could pass"),
            ));
        }
        let called = || {
            B::SERVICES
                .iter()
                .map(|service| service.name)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let routed = |name: &str| {
            self.routes
                .iter()
                .any(|route| route.services().any(|service| service == name))
        };
        if let Some(extra) = self
            .downstream
            .keys()
            .find(|name| !B::SERVICES.iter().any(|service| service.name == *name) && !routed(name))
        {
            return Err(ConfigError::rule(
                &format!("downstream.{extra}"),
                format!(
                    "{} does not call a service named {extra} (it calls {}) and no route forwards to it",
                    B::NAME,
                    called()
                ),
            ));
        }
        if let Some(missing) = B::SERVICES
            .iter()
            .find(|service| !self.downstream.contains_key(service.name))
        {
            return Err(ConfigError::rule(
                &format!("downstream.{}", missing.name),
                format!("missing: {} calls this service", B::NAME),
            ));
        }
        for (service, config) in &self.downstream {
            config.validate(service)?;
        }
        for (index, route) in self.routes.iter().enumerate() {
            route.validate(index, |name| self.downstream.contains_key(name))?;
            if let Some(first) = self.routes[..index]
                .iter()
                .position(|earlier| earlier.prefix == route.prefix)
            {
                return Err(ConfigError::rule(
                    &format!("routes[{index}].prefix"),
                    format!("routes[{first}] already serves {}", route.prefix),
                ));
            }
        }
        self.own
            .validate()
            .map_err(|error| error.within(B::SECTION))
    }
}

impl<B: Bff> ServiceConfig for BffConfig<B> {
    fn observability(&self) -> &ObservabilityConfig {
        &self.observability
    }
}

impl<B: Bff> Serialize for BffConfig<B> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut config = serializer.serialize_struct("BffConfig", Self::SECTIONS.len())?;
        config.serialize_field("server", &self.server)?;
        config.serialize_field("observability", &self.observability)?;
        config.serialize_field("auth", &self.auth)?;
        config.serialize_field("rate_limit", &self.rate_limit)?;
        config.serialize_field("redis", &self.redis)?;
        config.serialize_field("client_tls", &self.client_tls)?;
        config.serialize_field("cache", &self.cache)?;
        config.serialize_field("idempotency", &self.idempotency)?;
        config.serialize_field("downstream", &self.downstream)?;
        match self.routes.is_empty() {
            true => config.skip_field("routes")?,
            false => config.serialize_field("routes", &self.routes)?,
        }
        config.serialize_field(B::SECTION, &self.own)?;
        config.end()
    }
}

impl<'de, B: Bff> Deserialize<'de> for BffConfig<B> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct(
            "BffConfig",
            Self::SECTIONS,
            ConfigVisitor::<B>(PhantomData),
        )
    }
}

/// A top-level key of a BFF's configuration.
enum Section {
    Server,
    Observability,
    Auth,
    RateLimit,
    Redis,
    ClientTls,
    Cache,
    Idempotency,
    Downstream,
    Routes,
    Own,
}

/// Reads a top-level key, refusing unknown ones while the key is read so
/// the loader's error names it (`web2 (in bff.toml): unknown field`).
struct SectionName<B>(PhantomData<B>);

impl<'de, B: Bff> DeserializeSeed<'de> for SectionName<B> {
    type Value = Section;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Section, D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl<B: Bff> Visitor<'_> for SectionName<B> {
    type Value = Section;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a section name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Section, E> {
        Ok(match name {
            "server" => Section::Server,
            "observability" => Section::Observability,
            "auth" => Section::Auth,
            "rate_limit" => Section::RateLimit,
            "redis" => Section::Redis,
            "client_tls" => Section::ClientTls,
            "cache" => Section::Cache,
            "idempotency" => Section::Idempotency,
            "downstream" => Section::Downstream,
            "routes" => Section::Routes,
            own if own == B::SECTION => Section::Own,
            unknown => return Err(E::unknown_field(unknown, BffConfig::<B>::SECTIONS)),
        })
    }
}

struct ConfigVisitor<B>(PhantomData<B>);

impl<'de, B: Bff> Visitor<'de> for ConfigVisitor<B> {
    type Value = BffConfig<B>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the configuration of {}", B::NAME)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BffConfig<B>, A::Error> {
        // Absent sections keep their defaults, as a derive with
        // `#[serde(default)]` would.
        let mut config = BffConfig::<B>::default();
        while let Some(section) = map.next_key_seed(SectionName::<B>(PhantomData))? {
            match section {
                Section::Server => config.server = map.next_value()?,
                Section::Observability => config.observability = map.next_value()?,
                Section::Auth => config.auth = map.next_value()?,
                Section::RateLimit => config.rate_limit = map.next_value()?,
                Section::Redis => config.redis = map.next_value()?,
                Section::ClientTls => config.client_tls = map.next_value()?,
                Section::Cache => config.cache = map.next_value()?,
                Section::Idempotency => config.idempotency = map.next_value()?,
                Section::Downstream => config.downstream = map.next_value()?,
                Section::Routes => config.routes = map.next_value()?,
                Section::Own => config.own = map.next_value()?,
            }
        }
        Ok(config)
    }
}
