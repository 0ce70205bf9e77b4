//! `[[routes]]`: the pass-through routes an operator declares.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// One pass-through route (`[[routes]]`).
///
/// ```toml
/// [[routes]]
/// prefix = "/api/catalog"     # path prefix served
/// service = "products"        # downstream service
/// strip_prefix = true         # /api/catalog/products/42 -> /products/42
/// scope = "products:read"     # optional scope the route needs
/// [routes.split]              # optional weighted canary
/// products = 95
/// products-v2 = 5
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The path prefix served: the path itself and everything under it.
    pub prefix: String,
    /// The `[downstream.<name>]` service it forwards to; with a `split`,
    /// the stable side.
    pub service: String,
    /// Whether the prefix is removed from the path the service sees.
    #[serde(default)]
    pub strip_prefix: bool,
    /// A scope the caller must have (403 without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// A weighted canary: services and their weights, `service` among them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub split: BTreeMap<String, u32>,
    /// The scope a caller needs for its `BFF-Canary` header to choose its
    /// side; anyone else's header is ignored (default `canary:choose`).
    #[serde(default = "RouteConfig::default_canary_scope")]
    pub canary_scope: String,
}

/// The scope that lets a tester choose a canary's side, unless the route
/// names another.
pub const DEFAULT_CANARY_SCOPE: &str = "canary:choose";

impl RouteConfig {
    fn default_canary_scope() -> String {
        DEFAULT_CANARY_SCOPE.to_owned()
    }

    /// Checks route number `index` against the services configured in
    /// `[downstream]`.
    pub(crate) fn validate(
        &self,
        index: usize,
        configured: impl Fn(&str) -> bool,
    ) -> Result<(), ConfigError> {
        let key = |field: &str| format!("routes[{index}].{field}");
        if let Some(reason) = prefix_problem(&self.prefix) {
            return Err(ConfigError::rule(&key("prefix"), reason));
        }
        if !configured(&self.service) {
            return Err(ConfigError::rule(
                &key("service"),
                format!("no [downstream.{}] section", self.service),
            ));
        }
        if self.scope.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::rule(&key("scope"), "must not be empty"));
        }
        if self.canary_scope.is_empty() {
            return Err(ConfigError::rule(&key("canary_scope"), "must not be empty"));
        }
        if self.split.is_empty() {
            return Ok(());
        }
        if let Some(unknown) = self.split.keys().find(|service| !configured(service)) {
            return Err(ConfigError::rule(
                &key(&format!("split.{unknown}")),
                format!("no [downstream.{unknown}] section"),
            ));
        }
        if !self.split.contains_key(&self.service) {
            return Err(ConfigError::rule(
                &key("split"),
                format!("must weigh the route's service, {}", self.service),
            ));
        }
        let total: u64 = self.split.values().map(|weight| u64::from(*weight)).sum();
        if total == 0 {
            return Err(ConfigError::rule(&key("split"), "the weights add up to 0"));
        }
        Ok(())
    }

    /// Every service the route may forward to.
    pub(crate) fn services(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.service.as_str()).chain(self.split.keys().map(String::as_str))
    }
}

/// Why `prefix` cannot be a route prefix, if it cannot: it must be an
/// absolute path of plain segments (letters, digits, `-._~`), without a
/// trailing slash, so that it means the same to the router and to the
/// operator.
fn prefix_problem(prefix: &str) -> Option<&'static str> {
    let Some(segments) = prefix.strip_prefix('/') else {
        return Some("must start with '/'");
    };
    if segments.is_empty() {
        return Some("must name at least one path segment");
    }
    for segment in segments.split('/') {
        if segment.is_empty() {
            return Some("must not end with '/' or contain '//'");
        }
        if segment == "." || segment == ".." {
            return Some("must not contain '.' or '..' segments");
        }
        if !segment
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-._~".contains(&byte))
        {
            return Some("segments may only contain letters, digits and -._~");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str) -> RouteConfig {
        RouteConfig {
            prefix: prefix.to_owned(),
            service: "products".to_owned(),
            strip_prefix: true,
            scope: None,
            split: BTreeMap::new(),
            canary_scope: DEFAULT_CANARY_SCOPE.to_owned(),
        }
    }

    fn check(route: &RouteConfig) -> Result<(), String> {
        route
            .validate(2, |name| name == "products" || name == "products-v2")
            .map_err(|error| error.to_string())
    }

    #[test]
    fn a_prefix_is_an_absolute_path_of_plain_segments() {
        assert_eq!(check(&route("/api/catalog")), Ok(()));
        for (prefix, reason) in [
            ("api", "must start with '/'"),
            ("/", "must name at least one path segment"),
            ("/api/", "must not end with '/' or contain '//'"),
            ("/api//x", "must not end with '/' or contain '//'"),
            ("/api/../admin", "must not contain '.' or '..' segments"),
            (
                "/api/{id}",
                "segments may only contain letters, digits and -._~",
            ),
            (
                "/api/*",
                "segments may only contain letters, digits and -._~",
            ),
        ] {
            assert_eq!(
                check(&route(prefix)),
                Err(format!("routes[2].prefix: {reason}")),
                "{prefix}"
            );
        }
    }

    #[test]
    fn every_service_of_a_route_is_configured_and_weighed() {
        let unknown = RouteConfig {
            service: "catalog".to_owned(),
            ..route("/api")
        };
        assert_eq!(
            check(&unknown),
            Err("routes[2].service: no [downstream.catalog] section".to_owned())
        );
        let split = |weights: &[(&str, u32)]| RouteConfig {
            split: weights
                .iter()
                .map(|(name, weight)| ((*name).to_owned(), *weight))
                .collect(),
            ..route("/api")
        };
        assert_eq!(
            check(&split(&[("products", 95), ("products-v2", 5)])),
            Ok(())
        );
        assert_eq!(
            check(&split(&[("products", 95), ("products-v3", 5)])),
            Err("routes[2].split.products-v3: no [downstream.products-v3] section".to_owned())
        );
        assert_eq!(
            check(&split(&[("products-v2", 5)])),
            Err("routes[2].split: must weigh the route's service, products".to_owned())
        );
        assert_eq!(
            check(&split(&[("products", 0), ("products-v2", 0)])),
            Err("routes[2].split: the weights add up to 0".to_owned())
        );
    }
}
