//! Pass-through routes: paths an operator declares in `[[routes]]` and any
//! BFF serves by forwarding them to a downstream service as they are.
//!
//! A route serves its `prefix` and every path under it. It goes through
//! everything a BFF's own routes go through (the server stack,
//! authentication, the rate limit, its optional `scope`) and through the
//! service's call stack (fan-out slot, retries of bodiless `GET`s, circuit
//! breaker, concurrency bound, timeout until the answer's head). Bodies are
//! streamed both ways, never held whole: an upload goes out as it arrives, a
//! 10 MB download leaves as it comes in (each chunk within the service's
//! `timeout`), holding the call's concurrency slot until its last byte.
//!
//! What the service gets: the method, the path (without the prefix when
//! `strip_prefix`), the query, the client's headers without the hop-by-hop
//! ones, its credentials (`Authorization`, `Cookie`, `X-Api-Key`: the
//! service gets the verified caller as `X-Auth-*`) and `Host`; plus
//! `X-Forwarded-For` (extended by the peer), `X-Forwarded-Proto` and
//! `X-Forwarded-Host`, the trace and the request id. What the client gets:
//! the service's status, headers (without the hop-by-hop ones) and body, a
//! 4xx included; a 5xx, a timeout or an open circuit is the gateway's
//! problem+json (502, 504, 503), as on every other route.
//!
//! With `[routes.split]`, each caller is sent to one side of a weighted
//! canary, the same side on every request (see `split`); a tester (a
//! caller with the route's `canary_scope`) forces a side with
//! `BFF-Canary: products-v2`. The table is built once at start.

mod config;
mod forward;
mod split;

pub use config::{DEFAULT_CANARY_SCOPE, RouteConfig};
pub use split::BFF_CANARY;

use std::sync::Arc;

use axum::{Router, routing::any};
use ipnet::IpNet;

use crate::{
    auth::RequireScope,
    downstream::{DownstreamClient, Downstreams, ServiceSpec},
};
use split::{Side, Split};

/// One pass-through route, built at start.
#[derive(Debug)]
struct Route {
    prefix: String,
    strip_prefix: bool,
    split: Split<DownstreamClient>,
    /// The scope a caller needs for `BFF-Canary` to choose its side.
    canary_scope: String,
    /// Peers whose `X-Forwarded-*` headers are believed.
    trusted_proxies: Vec<IpNet>,
}

impl Route {
    fn new(config: &RouteConfig, downstreams: &Downstreams, trusted_proxies: &[IpNet]) -> Self {
        let weights: Vec<(&str, u32)> = match config.split.is_empty() {
            true => vec![(&config.service, 1)],
            false => config
                .split
                .iter()
                .map(|(name, weight)| (name.as_str(), *weight))
                .collect(),
        };
        let sides = weights.into_iter().map(|(name, weight)| {
            let side = Side {
                name: name.to_owned(),
                target: downstreams.client(name).clone(),
            };
            (side, weight)
        });
        Self {
            prefix: config.prefix.clone(),
            strip_prefix: config.strip_prefix,
            split: Split::new(&config.prefix, sides),
            canary_scope: config.canary_scope.clone(),
            trusted_proxies: trusted_proxies.to_vec(),
        }
    }

    /// The path and query the service gets for a request to `path`
    /// (under the prefix) with `query`.
    fn downstream_path(&self, path: &str, query: Option<&str>) -> String {
        let path = match self.strip_prefix {
            true => path.strip_prefix(self.prefix.as_str()).unwrap_or(path),
            false => path,
        };
        let path = if path.is_empty() { "/" } else { path };
        let mut target =
            String::with_capacity(path.len() + query.map_or(0, |query| query.len() + 1));
        target.push_str(path);
        if let Some(query) = query {
            target.push('?');
            target.push_str(query);
        }
        target
    }
}

/// The services `routes` forward to that are not among `services` (the
/// BFF's own), so that they get a client too; their names live as long as
/// the process, like the BFF's own.
pub(crate) fn extra_services(routes: &[RouteConfig], services: &[ServiceSpec]) -> Vec<ServiceSpec> {
    let mut extra: Vec<ServiceSpec> = Vec::new();
    for name in routes.iter().flat_map(RouteConfig::services) {
        let known = services
            .iter()
            .chain(&extra)
            .any(|service| service.name == name);
        if !known {
            // Once per configured service at start: the metrics labels and
            // errors name services by `&'static str`.
            let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
            extra.push(ServiceSpec::new(name, 0));
        }
    }
    extra
}

/// The router of `routes`, each at its prefix and every path under it,
/// with its scope check; `trusted_proxies` are the peers whose
/// `X-Forwarded-*` headers are believed. The BFF serves it after its own
/// routes (see [`crate::server::Gateway::with_fallback`]), so a path the
/// BFF serves itself is never passed through; of nested prefixes, the
/// longest wins.
pub(crate) fn router(
    routes: &[RouteConfig],
    downstreams: &Downstreams,
    trusted_proxies: &[IpNet],
) -> Router {
    let mut router = Router::new();
    for config in routes {
        let route = Arc::new(Route::new(config, downstreams, trusted_proxies));
        let mut handler = any(forward::forward).with_state(route);
        if let Some(scope) = &config.scope {
            // Once per route at start: scopes are checked as `&'static str`.
            let scope: &'static str = Box::leak(scope.clone().into_boxed_str());
            handler = handler.layer(RequireScope::new(scope));
        }
        let prefix = &config.prefix;
        // `{*rest}` matches no empty rest: `prefix/` is a route of its own.
        router = router
            .route(prefix, handler.clone())
            .route(&format!("{prefix}/"), handler.clone())
            .route(&format!("{prefix}/{{*rest}}"), handler);
    }
    router
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn route(strip_prefix: bool) -> Route {
        Route {
            prefix: "/api/catalog".to_owned(),
            strip_prefix,
            split: Split::new("/api/catalog", std::iter::empty()),
            canary_scope: DEFAULT_CANARY_SCOPE.to_owned(),
            trusted_proxies: Vec::new(),
        }
    }

    #[test]
    fn the_prefix_is_stripped_or_kept_and_the_query_follows() {
        let stripped = route(true);
        assert_eq!(
            stripped.downstream_path("/api/catalog/products/42", Some("fields=name")),
            "/products/42?fields=name"
        );
        assert_eq!(stripped.downstream_path("/api/catalog", None), "/");
        let kept = route(false);
        assert_eq!(
            kept.downstream_path("/api/catalog/products/42", None),
            "/api/catalog/products/42"
        );
    }

    #[test]
    fn services_only_routes_call_get_a_client_of_their_own() {
        let routes = [RouteConfig {
            prefix: "/api/catalog".to_owned(),
            service: "products".to_owned(),
            strip_prefix: true,
            scope: None,
            split: BTreeMap::from([("products".to_owned(), 95), ("products-v2".to_owned(), 5)]),
            canary_scope: DEFAULT_CANARY_SCOPE.to_owned(),
        }];
        let extra = extra_services(&routes, &[ServiceSpec::new("products", 7001)]);
        let names: Vec<&str> = extra.iter().map(|service| service.name).collect();
        assert_eq!(names, ["products-v2"]);
    }
}
