//! The deprecation lifecycle of partner routes (`[[partner.deprecations]]`).
//!
//! A route (`"GET /v1/products/{id}"`) or a whole version (`"v1"`) that is
//! going away says so on every answer, so a partner's logs show it long
//! before anything breaks:
//!
//! - `Deprecation: @<unix seconds>` (RFC 9745), from `deprecated_at`;
//! - `Sunset: <HTTP-date>` (RFC 8594), from `sunset_at`;
//! - `Link: <successor>; rel="successor-version", <docs>; rel="deprecation"`.
//!
//! `partner_deprecated_calls_total{route,tenant}` counts who still calls it,
//! so the team knows whom to call. During a brownout window (`brownouts`,
//! ISO 8601 intervals such as `2027-01-10T14:00Z/PT1H`) the route answers
//! 410 `ROUTE_BROWNOUT`, a rehearsal of the sunset that integrations notice;
//! from `sunset_at` on it answers 410 `ROUTE_SUNSET`. Both problems say what
//! to migrate to. Dates are read from the BFF's clock, which tests move.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use gateway_core::{
    Error, clock::Clock, config::ConfigError, error::ProblemDetails, identity::VerifiedIdentity,
    observability::Telemetry,
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};
use serde::{Deserialize, Serialize};

/// `Deprecation` (RFC 9745).
const DEPRECATION: HeaderName = HeaderName::from_static("deprecation");
/// `Sunset` (RFC 8594).
const SUNSET: HeaderName = HeaderName::from_static("sunset");

/// One route or version on its way out (`[[partner.deprecations]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeprecationConfig {
    /// An operation, `"GET /v1/products/{id}"` (its method and path as the
    /// OpenAPI document names them), or a whole version, `"v1"`.
    pub route: String,
    /// When it was (or will be) deprecated, RFC 3339 in UTC
    /// (`2026-06-01T00:00:00Z`).
    pub deprecated_at: String,
    /// When it stops answering (410 from then on), RFC 3339 in UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sunset_at: Option<String>,
    /// The URL of what replaces it (`Link; rel="successor-version"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successor: Option<String>,
    /// The URL of the migration guide (`Link; rel="deprecation"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs: Option<String>,
    /// Windows before the sunset in which it already answers 410, ISO 8601
    /// intervals of a start and a duration (`2027-01-10T14:00Z/PT1H`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub brownouts: Vec<String>,
}

/// A deprecation, read and checked.
#[derive(Debug, Clone)]
struct Lifecycle {
    /// What `route` named, as the metric's `route` label.
    route: &'static str,
    sunset_at: Option<SystemTime>,
    brownouts: Vec<(SystemTime, SystemTime)>,
    /// `Deprecation`, `Sunset` and `Link`, rendered once.
    headers: HeaderMap,
    /// What a 410 tells the partner to do instead.
    migration: String,
}

impl Lifecycle {
    fn read(config: &DeprecationConfig, key: &str) -> Result<Self, ConfigError> {
        let time = |field: &str, text: &str| {
            utc_time(text).ok_or_else(|| {
                ConfigError::rule(
                    &format!("{key}.{field}"),
                    format!("{text:?} is not an RFC 3339 time in UTC such as 2027-01-10T14:00:00Z"),
                )
            })
        };
        let deprecated_at = time("deprecated_at", &config.deprecated_at)?;
        let sunset_at = config
            .sunset_at
            .as_deref()
            .map(|text| time("sunset_at", text))
            .transpose()?;
        if sunset_at.is_some_and(|sunset| sunset < deprecated_at) {
            return Err(ConfigError::rule(
                &format!("{key}.sunset_at"),
                "is before deprecated_at",
            ));
        }
        let mut brownouts = Vec::with_capacity(config.brownouts.len());
        for window in &config.brownouts {
            let (start, end) = interval(window).ok_or_else(|| {
                ConfigError::rule(
                    &format!("{key}.brownouts"),
                    format!(
                        "{window:?} is not an ISO 8601 interval such as 2027-01-10T14:00Z/PT1H"
                    ),
                )
            })?;
            brownouts.push((start, end));
        }
        let mut links = Vec::new();
        for (field, url, relation) in [
            ("successor", &config.successor, "successor-version"),
            ("docs", &config.docs, "deprecation"),
        ] {
            if let Some(url) = url {
                let valid = (url.starts_with("https://") || url.starts_with("http://"))
                    && !url.contains(['<', '>', ' ', '"', ',']);
                if !valid {
                    return Err(ConfigError::rule(
                        &format!("{key}.{field}"),
                        "must be an http or https URL",
                    ));
                }
                links.push(format!("<{url}>; rel=\"{relation}\""));
            }
        }
        let mut headers = HeaderMap::new();
        let seconds = |time: SystemTime| {
            time.duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_secs())
        };
        headers.insert(
            DEPRECATION,
            HeaderValue::try_from(format!("@{}", seconds(deprecated_at))).expect("digits"),
        );
        if let Some(sunset) = sunset_at {
            headers.insert(
                SUNSET,
                HeaderValue::try_from(httpdate::fmt_http_date(sunset)).expect("an HTTP-date"),
            );
        }
        if !links.is_empty() {
            headers.insert(
                header::LINK,
                HeaderValue::try_from(links.join(", ")).map_err(|_| {
                    ConfigError::rule(&format!("{key}.successor"), "is not header-safe")
                })?,
            );
        }
        let mut migration = format!("{} is deprecated", config.route);
        if let Some(successor) = &config.successor {
            migration.push_str(&format!("; use {successor} instead"));
        }
        if let Some(docs) = &config.docs {
            migration.push_str(&format!("; how to migrate: {docs}"));
        }
        Ok(Self {
            route: Box::leak(config.route.clone().into_boxed_str()),
            sunset_at,
            brownouts,
            headers,
            migration,
        })
    }

    /// Why the route refuses to answer at `now`, if it does.
    fn refusal(&self, now: SystemTime) -> Option<Retired> {
        if self.sunset_at.is_some_and(|sunset| now >= sunset) {
            return Some(Retired::Sunset(self.migration.clone()));
        }
        self.brownouts
            .iter()
            .find(|(start, end)| (*start..*end).contains(&now))
            .map(|(_, end)| Retired::Brownout {
                migration: self.migration.clone(),
                until: *end,
            })
    }
}

/// Why a deprecated route answered 410.
#[derive(Debug, thiserror::Error)]
pub enum Retired {
    /// Past its sunset.
    #[error("this operation has been retired: {0}")]
    Sunset(String),
    /// In a brownout window, a rehearsal of the sunset.
    #[error("this operation is unavailable during a scheduled brownout until {}: {migration}", httpdate::fmt_http_date(*.until))]
    Brownout {
        /// What to migrate to.
        migration: String,
        /// When the window ends.
        until: SystemTime,
    },
}

impl ProblemDetails for Retired {
    fn status(&self) -> StatusCode {
        StatusCode::GONE
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Sunset(_) => "ROUTE_SUNSET",
            Self::Brownout { .. } => "ROUTE_BROWNOUT",
        }
    }

    fn client_detail(&self) -> String {
        self.to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CallLabels {
    route: &'static str,
    tenant: String,
}

/// The deprecations in force, by operation and by version; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Deprecations {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `"GET /v1/products/{id}"` to its lifecycle.
    operations: HashMap<String, Lifecycle>,
    /// `"v1"` to its lifecycle.
    versions: HashMap<String, Lifecycle>,
    clock: Clock,
    calls: Family<CallLabels, Counter>,
}

impl Deprecations {
    /// Reads `configs`, each of which must name an operation of `known`
    /// (`"GET /v1/products/{id}"`) or a version prefix of one.
    pub(crate) fn read(
        configs: &[DeprecationConfig],
        known: &[String],
    ) -> Result<ReadDeprecations, ConfigError> {
        let mut operations = HashMap::new();
        let mut versions = HashMap::new();
        for (index, config) in configs.iter().enumerate() {
            let key = format!("partner.deprecations[{index}]");
            let lifecycle = Lifecycle::read(config, &key)?;
            let route = config.route.trim();
            if known.iter().any(|operation| operation == route) {
                operations.insert(route.to_owned(), lifecycle);
            } else if !route.contains(' ')
                && known
                    .iter()
                    .any(|operation| operation.contains(&format!(" /{route}/")))
            {
                versions.insert(route.to_owned(), lifecycle);
            } else {
                return Err(ConfigError::rule(
                    &format!("{key}.route"),
                    format!(
                        "{route:?} is neither an operation (\"GET /v1/products/{{id}}\") nor a version (\"v1\") of the API"
                    ),
                ));
            }
        }
        Ok(ReadDeprecations {
            operations,
            versions,
        })
    }
}

/// Deprecations read from configuration, before they have a clock and metrics.
#[derive(Debug)]
pub(crate) struct ReadDeprecations {
    operations: HashMap<String, Lifecycle>,
    versions: HashMap<String, Lifecycle>,
}

impl ReadDeprecations {
    /// Whether none is configured.
    pub(crate) fn is_empty(&self) -> bool {
        self.operations.is_empty() && self.versions.is_empty()
    }

    /// In force with the dates of `clock`, counting calls into `telemetry`.
    pub(crate) fn in_force(self, clock: Clock, telemetry: &Telemetry) -> Deprecations {
        let calls = Family::<CallLabels, Counter>::default();
        telemetry.register(
            "partner_deprecated_calls",
            "Calls to deprecated partner routes, by route and tenant: whom to tell before the sunset",
            calls.clone(),
        );
        Deprecations {
            inner: Arc::new(Inner {
                operations: self.operations,
                versions: self.versions,
                clock,
                calls,
            }),
        }
    }
}

/// Route middleware: the headers on a deprecated route's answers, its 410s,
/// and the count of its calls.
pub(crate) async fn lifecycle(
    State(deprecations): State<Deprecations>,
    request: Request,
    next: Next,
) -> Response {
    let inner = &deprecations.inner;
    let Some(route) = request.extensions().get::<MatchedPath>() else {
        return next.run(request).await;
    };
    let operation = format!("{} {}", request.method(), route.as_str());
    let version = route
        .as_str()
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    let Some(lifecycle) = inner
        .operations
        .get(&operation)
        .or_else(|| inner.versions.get(version))
    else {
        return next.run(request).await;
    };
    let tenant = request
        .extensions()
        .get::<Arc<VerifiedIdentity>>()
        .map_or_else(|| "-".to_owned(), |identity| identity.tenant.clone());
    inner
        .calls
        .get_or_create(&CallLabels {
            route: lifecycle.route,
            tenant,
        })
        .inc();
    let mut response = match lifecycle.refusal(inner.clock.now()) {
        Some(retired) => Error::from(retired).into_response(),
        None => next.run(request).await,
    };
    for (name, value) in &lifecycle.headers {
        response.headers_mut().insert(name, value.clone());
    }
    response
}

/// An RFC 3339 time in UTC: `2027-01-10T14:00:00Z`, seconds optional
/// (`2027-01-10T14:00Z`, as ISO 8601 intervals are often written).
/// Hand-written: humantime requires the seconds.
fn utc_time(text: &str) -> Option<SystemTime> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut date = date.splitn(3, '-').map(str::parse::<i64>);
    let (year, month, day) = (date.next()?.ok()?, date.next()?.ok()?, date.next()?.ok()?);
    let mut time = time.split(':').map(str::parse::<i64>);
    let (hour, minute) = (time.next()?.ok()?, time.next()?.ok()?);
    let second = time.next().transpose().ok()?.unwrap_or(0);
    if time.next().is_some()
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(0..24).contains(&hour)
        || !(0..60).contains(&minute)
        || !(0..60).contains(&second)
    {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// An ISO 8601 interval of a start and a duration: `2027-01-10T14:00Z/PT1H`
/// (durations of days, hours, minutes and seconds: `P1D`, `PT1H30M`).
fn interval(text: &str) -> Option<(SystemTime, SystemTime)> {
    let (start, duration) = text.split_once('/')?;
    let start = utc_time(start)?;
    let duration = duration.strip_prefix('P')?;
    let (days, time) = duration.split_once('T').unwrap_or((duration, ""));
    let mut seconds: u64 = 0;
    if !days.is_empty() {
        seconds += days.strip_suffix('D')?.parse::<u64>().ok()? * 86_400;
    }
    let mut number = String::new();
    for character in time.chars() {
        match character {
            '0'..='9' => number.push(character),
            'H' | 'M' | 'S' => {
                let value: u64 = std::mem::take(&mut number).parse().ok()?;
                seconds += value
                    * match character {
                        'H' => 3_600,
                        'M' => 60,
                        _ => 1,
                    };
            }
            _ => return None,
        }
    }
    if !number.is_empty() || seconds == 0 {
        return None;
    }
    Some((start, start + Duration::from_secs(seconds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        utc_time(text).expect("a time")
    }

    #[test]
    fn times_and_intervals_are_read_as_utc() {
        assert_eq!(
            at("2027-01-10T14:00Z"),
            UNIX_EPOCH + Duration::from_secs(1_799_589_600)
        );
        assert_eq!(at("2027-01-10T14:00:00Z"), at("2027-01-10T14:00Z"));
        assert_eq!(
            at("1970-01-01T00:00:01Z"),
            UNIX_EPOCH + Duration::from_secs(1)
        );
        assert_eq!(
            at("2024-02-29T00:00:00Z"),
            UNIX_EPOCH + Duration::from_secs(1_709_164_800)
        );
        for bad in [
            "2027-01-10 14:00Z",
            "2027-13-10T14:00Z",
            "2027-01-10T14:00",
            "2027-01-10T24:00Z",
        ] {
            assert_eq!(utc_time(bad), None, "{bad}");
        }
        assert_eq!(
            interval("2027-01-10T14:00Z/PT1H30M"),
            Some((at("2027-01-10T14:00Z"), at("2027-01-10T15:30Z")))
        );
        assert_eq!(
            interval("2027-01-10T14:00Z/P1DT2H"),
            Some((at("2027-01-10T14:00Z"), at("2027-01-11T16:00Z")))
        );
        for bad in [
            "2027-01-10T14:00Z/1H",
            "2027-01-10T14:00Z/PT",
            "2027-01-10T14:00Z/PT1X",
            "2027-01-10T14:00Z",
        ] {
            assert_eq!(interval(bad), None, "{bad}");
        }
    }

    fn config() -> DeprecationConfig {
        DeprecationConfig {
            route: "GET /v1/products/{id}".to_owned(),
            deprecated_at: "2026-06-01T00:00:00Z".to_owned(),
            sunset_at: Some("2027-03-01T00:00:00Z".to_owned()),
            successor: Some("https://partners.example.com/v2/products/{id}".to_owned()),
            docs: Some("https://partners.example.com/docs/migrate-v2".to_owned()),
            brownouts: vec!["2027-01-10T14:00Z/PT1H".to_owned()],
        }
    }

    #[test]
    fn a_lifecycle_has_its_headers_brownouts_and_sunset() {
        let lifecycle = Lifecycle::read(&config(), "partner.deprecations[0]").expect("valid");
        assert_eq!(lifecycle.headers[DEPRECATION], "@1780272000");
        assert_eq!(lifecycle.headers[SUNSET], "Mon, 01 Mar 2027 00:00:00 GMT");
        assert_eq!(
            lifecycle.headers[header::LINK],
            "<https://partners.example.com/v2/products/{id}>; rel=\"successor-version\", <https://partners.example.com/docs/migrate-v2>; rel=\"deprecation\""
        );
        assert!(lifecycle.refusal(at("2027-01-10T13:59:59Z")).is_none());
        assert!(matches!(
            lifecycle.refusal(at("2027-01-10T14:00Z")),
            Some(Retired::Brownout { .. })
        ));
        assert!(
            lifecycle.refusal(at("2027-01-10T15:00Z")).is_none(),
            "the window is over"
        );
        let sunset = lifecycle.refusal(at("2027-03-01T00:00Z")).expect("retired");
        assert_eq!(sunset.code(), "ROUTE_SUNSET");
        assert!(sunset.to_string().contains("/v2/products/{id}"), "{sunset}");
    }

    #[test]
    fn a_deprecation_must_name_an_operation_or_version_and_sane_dates() {
        let known = vec![
            "GET /v1/products/{id}".to_owned(),
            "POST /v1/orders".to_owned(),
        ];
        let read = |config: DeprecationConfig| Deprecations::read(&[config], &known);
        assert!(read(config()).is_ok());
        assert!(
            read(DeprecationConfig {
                route: "v1".to_owned(),
                ..config()
            })
            .is_ok()
        );
        for (wrong, named) in [
            (
                DeprecationConfig {
                    route: "GET /v1/nothing".to_owned(),
                    ..config()
                },
                "route",
            ),
            (
                DeprecationConfig {
                    route: "v9".to_owned(),
                    ..config()
                },
                "route",
            ),
            (
                DeprecationConfig {
                    sunset_at: Some("2026-01-01T00:00:00Z".to_owned()),
                    ..config()
                },
                "sunset_at",
            ),
            (
                DeprecationConfig {
                    deprecated_at: "June".to_owned(),
                    ..config()
                },
                "deprecated_at",
            ),
            (
                DeprecationConfig {
                    brownouts: vec!["tomorrow".to_owned()],
                    ..config()
                },
                "brownouts",
            ),
            (
                DeprecationConfig {
                    docs: Some("ftp://x".to_owned()),
                    ..config()
                },
                "docs",
            ),
        ] {
            let error = read(wrong).expect_err("refused").to_string();
            assert!(
                error.contains(&format!("partner.deprecations[0].{named}")),
                "{error}"
            );
        }
    }
}
