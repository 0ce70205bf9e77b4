//! Value types configuration is made of: durations, URLs, origins and secrets.
//!
//! Each type checks its own value while deserialising, so an invalid value is
//! reported by figment with the key and the source it came from.

use std::{fmt, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A non-zero duration written the human way: `"250ms"`, `"30s"`, `"5m"`.
///
/// Zero is refused because every duration in this configuration is a timeout,
/// an interval or a grace period, where zero means a misconfiguration rather
/// than "disabled".
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(Duration);

impl HumanDuration {
    /// A duration of `secs` seconds; `secs` must not be zero.
    pub const fn from_secs(secs: u64) -> Self {
        assert!(secs > 0, "configured durations are non-zero");
        Self(Duration::from_secs(secs))
    }

    /// A duration of `millis` milliseconds; `millis` must not be zero.
    pub const fn from_millis(millis: u64) -> Self {
        assert!(millis > 0, "configured durations are non-zero");
        Self(Duration::from_millis(millis))
    }

    /// The duration itself.
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl TryFrom<Duration> for HumanDuration {
    type Error = &'static str;

    fn try_from(value: Duration) -> Result<Self, Self::Error> {
        if value.is_zero() {
            Err("a duration must be non-zero")
        } else {
            Ok(Self(value))
        }
    }
}

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const EXPECTED: &str = "a non-zero duration such as \"250ms\" or \"30s\"";
        let text = String::deserialize(deserializer)?;
        let duration = humantime::parse_duration(text.trim())
            .map_err(|_| de::Error::invalid_value(de::Unexpected::Str(&text), &EXPECTED))?;
        Self::try_from(duration)
            .map_err(|_| de::Error::invalid_value(de::Unexpected::Str(&text), &EXPECTED))
    }
}

/// A duration written the human way where zero is meaningful (`"0s"`: no
/// wait), such as a delay before doing something.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Delay(Duration);

impl Delay {
    /// A delay of `secs` seconds (zero allowed).
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// The duration itself.
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl From<Duration> for Delay {
    fn from(value: Duration) -> Self {
        Self(value)
    }
}

impl fmt::Debug for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for Delay {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Delay {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const EXPECTED: &str = "a duration such as \"0s\", \"500ms\" or \"5s\"";
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(text.trim())
            .map(Self)
            .map_err(|_| de::Error::invalid_value(de::Unexpected::Str(&text), &EXPECTED))
    }
}

/// The base URL of a service: `http` or `https` (verified, see
/// [`crate::tls`]), with a host, and no query, fragment or credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceUrl(url::Url);

impl ServiceUrl {
    /// Parses and checks a base URL.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = url::Url::parse(text).map_err(|error| format!("not a URL ({error})"))?;
        match url.scheme() {
            "http" | "https" => {}
            other => return Err(format!("scheme must be http or https, not {other:?}")),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("the URL has no host".to_owned());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("a base URL takes no query or fragment".to_owned());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("credentials do not belong in a URL; use the secret settings".to_owned());
        }
        Ok(Self(url))
    }

    /// The URL as text, always ending with the path (at least `/`).
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The parsed URL.
    pub fn url(&self) -> &url::Url {
        &self.0
    }
}

impl fmt::Debug for ServiceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0.as_str(), f)
    }
}

impl fmt::Display for ServiceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl Serialize for ServiceUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for ServiceUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(|reason| {
            de::Error::invalid_value(
                de::Unexpected::Str(&text),
                &format!("an http base URL: {reason}").as_str(),
            )
        })
    }
}

/// A secret value (signing secret, API key, password).
///
/// It never shows: `Debug`, `Display` and `Serialize` all print `***`, so a
/// secret cannot leak through a log line or `--check-config`. Because
/// serialising masks it, secrets never appear in built-in defaults.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The secret of a setting that takes it either as `secret` or as a
    /// file holding it, `file` (its trailing newline ignored), never both
    /// and never neither: `key` names the setting in the error.
    pub fn from_setting_or_file(
        secret: Option<&Secret>,
        file: Option<&std::path::Path>,
        key: &str,
    ) -> Result<Secret, super::ConfigError> {
        match (secret, file) {
            (Some(secret), None) => Ok(secret.clone()),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|text| Secret::new(text.trim_end_matches(['\n', '\r'])))
                .map_err(|error| {
                    super::ConfigError::rule(
                        &format!("{key}_file"),
                        format!("cannot read {}: {error}", path.display()),
                    )
                }),
            _ => Err(super::ConfigError::rule(
                key,
                "set exactly one of the secret and its file",
            )),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        if value.is_empty() {
            return Err(de::Error::invalid_value(
                de::Unexpected::Str(""),
                &"a non-empty secret",
            ));
        }
        Ok(Self(value))
    }
}

/// A web origin as a browser sends it in `Origin`: `scheme://host[:port]`,
/// http or https, without a path, query or credentials.
///
/// `*` is refused: the origins listed are trusted with the user's cookie.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Origin(http::HeaderValue);

impl Origin {
    /// Parses `text`, or says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let refuse = || {
            format!(
                "{text:?} is not an origin: write scheme://host[:port], http or https, \
                 without a path; \"*\" is refused because the listed origins are trusted \
                 with the session cookie"
            )
        };
        let uri = text.parse::<http::Uri>().map_err(|_| refuse())?;
        let is_origin = matches!(uri.scheme_str(), Some("http" | "https"))
            && uri
                .authority()
                .is_some_and(|authority| !authority.as_str().contains('@'))
            && uri.path() == "/"
            && uri.query().is_none()
            && !text.ends_with('/');
        if !is_origin {
            return Err(refuse());
        }
        http::HeaderValue::from_str(text)
            .map(Self)
            .map_err(|_| refuse())
    }

    /// The origin as the header value a browser sends.
    pub fn header_value(&self) -> &http::HeaderValue {
        &self.0
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.to_str().unwrap_or_default())
    }
}

impl Serialize for Origin {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.to_str().unwrap_or_default())
    }
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_written_as_browsers_send_them() {
        assert!(Origin::parse("https://shop.example.com").is_ok());
        assert!(Origin::parse("http://localhost:3000").is_ok());
        for refused in [
            "*",
            "https://shop.example.com/",
            "https://shop.example.com/app",
            "https://shop.example.com?x=1",
            "shop.example.com",
            "ftp://shop.example.com",
            "https://user@shop.example.com",
        ] {
            let reason = Origin::parse(refused).expect_err(refused);
            assert!(reason.contains("is not an origin"), "{refused}: {reason}");
        }
    }

    #[test]
    fn durations_round_trip_through_text() {
        let parsed: HumanDuration = serde_json::from_str("\"1m 30s\"").expect("parses");
        assert_eq!(parsed.get(), Duration::from_secs(90));
        assert_eq!(
            serde_json::to_string(&parsed).expect("serialises"),
            "\"1m 30s\""
        );
    }

    #[test]
    fn a_delay_may_be_zero() {
        let zero: Delay = serde_json::from_str("\"0s\"").expect("parses");
        assert_eq!(zero.get(), Duration::ZERO);
        assert_eq!(serde_json::to_string(&zero).expect("serialises"), "\"0s\"");
        let five: Delay = serde_json::from_str("\"5s\"").expect("parses");
        assert_eq!(five, Delay::from_secs(5));
        assert!(serde_json::from_str::<Delay>("\"soon\"").is_err());
    }

    #[test]
    fn numbers_are_not_durations() {
        assert!(serde_json::from_str::<HumanDuration>("30").is_err());
    }

    #[test]
    fn urls_need_a_host_and_no_query() {
        assert!(ServiceUrl::parse("http://:80").is_err());
        assert!(ServiceUrl::parse("http://svc:80/?x=1").is_err());
        assert!(ServiceUrl::parse("http://user:pw@svc").is_err());
        assert!(ServiceUrl::parse("http://svc.internal:8443/base").is_ok());
        assert!(ServiceUrl::parse("https://svc.internal:8443/base").is_ok());
        assert!(
            ServiceUrl::parse("ftp://svc.internal/base")
                .is_err_and(|reason| reason.contains("http or https"))
        );
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("s3cr3t");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(
            serde_json::to_string(&secret).expect("serialises"),
            "\"***\""
        );
    }
}
