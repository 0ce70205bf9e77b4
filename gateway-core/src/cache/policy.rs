//! What may be stored, for whom and for how long: the service's
//! `Cache-Control`, `Vary` and `Cache-Tag`, read with the service's
//! `[downstream.<name>.cache]` overrides.
//!
//! Every downstream call carries the caller's identity (`X-Auth-*`), so an
//! answer is treated as RFC 9111 treats one to an authenticated
//! request: shared between callers only when the service says so
//! (`public` or `s-maxage`), and kept per tenant and subject otherwise
//! (always for `private`, or a `Vary` on anything but `Accept` and
//! `Accept-Encoding`, which every call sends the same).

use std::time::Duration;

use http::{HeaderMap, HeaderName, header};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Delay, HumanDuration};

/// `Cache-Tag: product:42, catalog`: the tags an answer is invalidated by.
pub const CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");

/// Most tags kept per answer, and the longest tag; more are ignored.
const MAX_TAGS: usize = 16;
const MAX_TAG_BYTES: usize = 128;

/// How the answers of one service are cached (`[downstream.<name>.cache]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceCacheConfig {
    /// Whether answers of the service are cached at all (default `true`:
    /// as the service's `Cache-Control` says).
    pub enabled: bool,
    /// How long an answer without `max-age` stays fresh (default `0s`: an
    /// answer the service says nothing about is not cached).
    pub default_ttl: Delay,
    /// The longest an answer stays fresh, whatever the service says (default `1h`).
    pub max_ttl: HumanDuration,
    /// The longest an answer is served stale, after `max_ttl` or its own
    /// freshness, whatever the service or the overrides say (default `1d`).
    pub max_stale: HumanDuration,
    /// Replaces the service's `stale-while-revalidate` when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_while_revalidate: Option<Delay>,
    /// Replaces the service's `stale-if-error` when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_if_error: Option<Delay>,
}

impl Default for ServiceCacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            default_ttl: Delay::default(),
            max_ttl: HumanDuration::from_secs(3600),
            max_stale: HumanDuration::from_secs(86_400),
            stale_while_revalidate: None,
            stale_if_error: None,
        }
    }
}

impl ServiceCacheConfig {
    /// Checks the settings of the service named `service`.
    pub fn validate(&self, service: &str) -> Result<(), ConfigError> {
        if self.default_ttl.get() > self.max_ttl.get() {
            return Err(ConfigError::rule(
                &format!("downstream.{service}.cache.default_ttl"),
                "must not exceed max_ttl",
            ));
        }
        Ok(())
    }

    /// What may be done with an answer the service sent with `headers`.
    pub(crate) fn storage(&self, headers: &HeaderMap) -> Storage {
        let directives = Directives::read(headers);
        let vary = Vary::read(headers);
        if directives.no_store || directives.no_cache || vary == Vary::Anything {
            return Storage::Never;
        }
        let per_caller = directives.private
            || vary == Vary::OnCaller
            || !(directives.public || directives.s_maxage.is_some());
        let fresh = match per_caller {
            true => directives.max_age,
            false => directives.s_maxage.or(directives.max_age),
        }
        .unwrap_or(self.default_ttl.get())
        .min(self.max_ttl.get());
        let stale =
            |directive: Duration, overridden: Option<Delay>| match directives.must_revalidate {
                // The service forbids stale answers, whatever the overrides say.
                true => Duration::ZERO,
                false => overridden
                    .map_or(directive, Delay::get)
                    .min(self.max_stale.get()),
            };
        let lifetime = Lifetime {
            fresh,
            stale_while_revalidate: stale(
                directives.stale_while_revalidate,
                self.stale_while_revalidate,
            ),
            stale_if_error: stale(directives.stale_if_error, self.stale_if_error),
        };
        if lifetime.total().is_zero() {
            return Storage::Never;
        }
        Storage::Keep {
            per_caller,
            lifetime,
        }
    }
}

/// What may be done with an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Storage {
    /// Not stored (`no-store`, `no-cache`, `Vary: *`, or no lifetime).
    Never,
    /// Stored for `lifetime`, per tenant and subject when `per_caller`.
    Keep {
        per_caller: bool,
        lifetime: Lifetime,
    },
}

/// How long a stored answer is served, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Lifetime {
    /// Served as it is.
    pub(crate) fresh: Duration,
    /// After that, served while it is refreshed in the background.
    pub(crate) stale_while_revalidate: Duration,
    /// After `fresh`, served when the service fails.
    pub(crate) stale_if_error: Duration,
}

impl Lifetime {
    /// How long the answer is of any use.
    pub(crate) fn total(&self) -> Duration {
        self.fresh
            .saturating_add(self.stale_while_revalidate.max(self.stale_if_error))
    }

    /// What an answer `age` old may be used for.
    pub(crate) fn at(&self, age: Duration) -> Age {
        match age.checked_sub(self.fresh) {
            None => Age::Fresh,
            Some(stale) if stale < self.stale_while_revalidate => Age::Revalidate,
            Some(stale) if stale < self.stale_if_error => Age::OnErrorOnly,
            Some(_) => Age::Expired,
        }
    }
}

/// What a stored answer may be used for at its age.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Age {
    /// Served as it is.
    Fresh,
    /// Served at once, and refreshed in the background.
    Revalidate,
    /// Served only instead of an error.
    OnErrorOnly,
    /// Of no use.
    Expired,
}

/// The `Cache-Control` directives that matter here.
#[derive(Debug, Default)]
struct Directives {
    no_store: bool,
    no_cache: bool,
    private: bool,
    public: bool,
    must_revalidate: bool,
    max_age: Option<Duration>,
    s_maxage: Option<Duration>,
    stale_while_revalidate: Duration,
    stale_if_error: Duration,
}

impl Directives {
    /// Reads every `Cache-Control` header; an unreadable one means `no-store`.
    fn read(headers: &HeaderMap) -> Self {
        let mut directives = Self::default();
        for value in headers.get_all(header::CACHE_CONTROL) {
            let Ok(value) = value.to_str() else {
                directives.no_store = true;
                continue;
            };
            for directive in value.split(',') {
                let (name, argument) = match directive.split_once('=') {
                    Some((name, argument)) => {
                        (name.trim(), Some(argument.trim().trim_matches('"')))
                    }
                    None => (directive.trim(), None),
                };
                let seconds = || {
                    argument
                        .and_then(|argument| argument.parse::<u64>().ok())
                        .map(Duration::from_secs)
                };
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => directives.no_store = true,
                    // `no-cache="field"` only forbids sending those fields unchecked.
                    "no-cache" if argument.is_none() => directives.no_cache = true,
                    "private" => directives.private = true,
                    "public" => directives.public = true,
                    "must-revalidate" | "proxy-revalidate" => directives.must_revalidate = true,
                    // An unreadable age is no freshness at all, as RFC 9111 says.
                    "max-age" => directives.max_age = Some(seconds().unwrap_or_default()),
                    "s-maxage" => directives.s_maxage = Some(seconds().unwrap_or_default()),
                    "stale-while-revalidate" => {
                        directives.stale_while_revalidate = seconds().unwrap_or_default();
                    }
                    "stale-if-error" => directives.stale_if_error = seconds().unwrap_or_default(),
                    _ => {}
                }
            }
        }
        directives
    }
}

/// What the answer's `Vary` says about the calls it may answer.
#[derive(Debug, PartialEq, Eq)]
enum Vary {
    /// Nothing that differs between calls of the same path.
    Nothing,
    /// A header that may differ between callers (`X-Auth-Tenant`).
    OnCaller,
    /// `Vary: *`: no stored answer can be reused.
    Anything,
}

impl Vary {
    fn read(headers: &HeaderMap) -> Self {
        let mut vary = Self::Nothing;
        for value in headers.get_all(header::VARY) {
            let Ok(value) = value.to_str() else {
                return Self::Anything;
            };
            for name in value
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
            {
                if name == "*" {
                    return Self::Anything;
                }
                // Every call sends the same Accept and no Accept-Encoding.
                if !name.eq_ignore_ascii_case("accept")
                    && !name.eq_ignore_ascii_case("accept-encoding")
                {
                    vary = Self::OnCaller;
                }
            }
        }
        vary
    }
}

/// The answer's tags (`Cache-Tag`, comma-separated), at most [`MAX_TAGS`].
pub(crate) fn tags(headers: &HeaderMap) -> Box<[Box<str>]> {
    headers
        .get_all(CACHE_TAG)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|tag| !tag.is_empty() && tag.len() <= MAX_TAG_BYTES)
        .take(MAX_TAGS)
        .map(Box::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn storage(pairs: &[(&str, &str)]) -> Storage {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::try_from(*name).expect("name"),
                HeaderValue::try_from(*value).expect("value"),
            );
        }
        ServiceCacheConfig::default().storage(&headers)
    }

    fn kept(per_caller: bool, fresh: u64, swr: u64, sie: u64) -> Storage {
        Storage::Keep {
            per_caller,
            lifetime: Lifetime {
                fresh: Duration::from_secs(fresh),
                stale_while_revalidate: Duration::from_secs(swr),
                stale_if_error: Duration::from_secs(sie),
            },
        }
    }

    #[test]
    fn public_answers_are_shared_and_others_kept_per_caller() {
        assert_eq!(
            storage(&[(
                "cache-control",
                "public, max-age=60, stale-while-revalidate=30, stale-if-error=600"
            )]),
            kept(false, 60, 30, 600)
        );
        assert_eq!(
            storage(&[("cache-control", "max-age=60")]),
            kept(true, 60, 0, 0)
        );
        assert_eq!(
            storage(&[("cache-control", "private, max-age=60")]),
            kept(true, 60, 0, 0)
        );
        assert_eq!(
            storage(&[("cache-control", "public, max-age=60, private")]),
            kept(true, 60, 0, 0),
            "private wins"
        );
        assert_eq!(
            storage(&[("cache-control", "s-maxage=20, max-age=5")]),
            kept(false, 20, 0, 0)
        );
        assert_eq!(
            storage(&[
                ("cache-control", "public, max-age=60"),
                ("vary", "Accept, X-Auth-Tenant")
            ]),
            kept(true, 60, 0, 0)
        );
        assert_eq!(
            storage(&[
                ("cache-control", "public, max-age=60"),
                ("vary", "accept-encoding")
            ]),
            kept(false, 60, 0, 0)
        );
    }

    #[test]
    fn stale_windows_are_capped_and_huge_ages_do_not_overflow() {
        assert_eq!(
            storage(&[(
                "cache-control",
                "public, max-age=18446744073709551615, stale-if-error=18446744073709551615"
            )]),
            kept(false, 3600, 0, 86_400)
        );
    }

    #[test]
    fn what_must_not_be_kept_is_not() {
        for forbidden in [
            "no-store, max-age=60",
            "public, no-cache, max-age=60",
            "public",
            "public, max-age=0",
            "public, max-age=soon",
        ] {
            assert_eq!(
                storage(&[("cache-control", forbidden)]),
                Storage::Never,
                "{forbidden}"
            );
        }
        assert_eq!(
            storage(&[]),
            Storage::Never,
            "no Cache-Control and no default_ttl"
        );
        assert_eq!(
            storage(&[("cache-control", "public, max-age=60"), ("vary", "*")]),
            Storage::Never
        );
        assert_eq!(
            storage(&[(
                "cache-control",
                "public, max-age=60, stale-if-error=60, must-revalidate"
            )]),
            kept(false, 60, 0, 0)
        );
    }

    #[test]
    fn the_service_settings_override_and_cap_the_answer() {
        let config = ServiceCacheConfig {
            default_ttl: Delay::from_secs(10),
            max_ttl: HumanDuration::from_secs(30),
            stale_if_error: Some(Delay::from_secs(300)),
            ..ServiceCacheConfig::default()
        };
        let mut headers = HeaderMap::new();
        assert_eq!(config.storage(&headers), kept(true, 10, 0, 300));
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=20, must-revalidate"),
        );
        assert_eq!(
            config.storage(&headers),
            kept(true, 20, 0, 0),
            "must-revalidate wins over the overrides"
        );
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        );
        assert_eq!(config.storage(&headers), kept(false, 30, 0, 300));
    }

    #[test]
    fn an_answer_ages_from_fresh_to_expired() {
        let lifetime = Lifetime {
            fresh: Duration::from_secs(10),
            stale_while_revalidate: Duration::from_secs(5),
            stale_if_error: Duration::from_secs(60),
        };
        assert_eq!(lifetime.at(Duration::from_secs(9)), Age::Fresh);
        assert_eq!(lifetime.at(Duration::from_secs(12)), Age::Revalidate);
        assert_eq!(lifetime.at(Duration::from_secs(30)), Age::OnErrorOnly);
        assert_eq!(lifetime.at(Duration::from_secs(70)), Age::Expired);
        assert_eq!(lifetime.total(), Duration::from_secs(70));
    }

    #[test]
    fn tags_are_split_trimmed_and_bounded() {
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_TAG, HeaderValue::from_static("product:42, catalog,,"));
        headers.append(CACHE_TAG, HeaderValue::from_static("brand:7"));
        let tags = tags(&headers);
        assert_eq!(
            &*tags,
            &["product:42".into(), "catalog".into(), "brand:7".into()] as &[Box<str>]
        );
    }
}
