//! Layered configuration: built-in defaults < a TOML file < `BFF_` environment.
//!
//! Every binary loads its whole configuration once, at start, through
//! [`load`]. This module only loads: each concern owns its configuration
//! type (`server::ServerConfig`, `auth::AuthConfig`...) next to the code it
//! configures, built from the value types here ([`HumanDuration`],
//! [`Delay`], [`ServiceUrl`], [`Secret`]) and checked by its [`Validate`] impl. The order is fixed (later wins):
//!
//! 1. the binary's built-in defaults (its config type's [`Default`]), which run
//!    the platform on one machine with no Redis;
//! 2. a TOML file, from `--config PATH` or the [`CONFIG_FILE_ENV`] variable;
//! 3. environment variables prefixed with [`ENV_PREFIX`], `__` between levels:
//!    `BFF_SERVER__REQUEST_TIMEOUT=5s` sets `server.request_timeout`.
//!
//! Config structs deny unknown fields, so a typo fails the start instead of
//! silently leaving a limit at its default. Errors name the key the way the
//! operator wrote it (`server.listen` in a file, `BFF_SERVER__LISTEN` in the
//! environment) and where it came from.
//!
//! # Example
//!
//! ```
//! use gateway_core::config::{self, ConfigError, HumanDuration, Validate};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! #[serde(deny_unknown_fields, default)]
//! struct Config {
//!     timeout: HumanDuration,
//!     retries: u32,
//! }
//! impl Default for Config {
//!     fn default() -> Self {
//!         Self { timeout: HumanDuration::from_secs(2), retries: 1 }
//!     }
//! }
//! impl Validate for Config {
//!     fn validate(&self) -> Result<(), ConfigError> {
//!         if self.retries > 5 {
//!             return Err(ConfigError::rule("retries", "must be at most 5"));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let config: Config = config::load(None).expect("defaults are valid");
//! assert_eq!(config.retries, 1);
//! ```

mod values;

pub use values::{Delay, HumanDuration, Origin, Secret, ServiceUrl};

use std::path::{Path, PathBuf};

use figment::{
    Figment, Metadata, Profile, Provider,
    providers::{Format, Serialized, Toml},
    value::{Dict, Map, Value},
};
use serde::{Serialize, de::DeserializeOwned};

/// Prefix of every configuration environment variable.
pub const ENV_PREFIX: &str = "BFF_";

/// Environment variable naming the TOML file when `--config` is not given.
pub const CONFIG_FILE_ENV: &str = "BFF_CONFIG";

/// Checks a configuration once, after loading, before anything is built
/// from it.
///
/// Single values are checked by their types while deserialising (a
/// [`HumanDuration`] is never zero); `validate` checks what spans several
/// fields or needs more than the value (a secret file that must be readable).
/// Errors name the key as the operator writes it (`server.admin_listen`).
pub trait Validate {
    /// Fails with the first rule the configuration breaks.
    fn validate(&self) -> Result<(), ConfigError>;
}

/// A configuration that cannot be used, with the key and source to blame.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value could not be read or does not fit its key.
    #[error("{key}{source_note}: {reason}")]
    Invalid {
        /// The key as the operator wrote it (`server.listen`, `BFF_SERVER__LISTEN`).
        key: String,
        /// ` (in /etc/bff.toml)` or empty when the source is unknown.
        source_note: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The configuration file named on the command line or in `BFF_CONFIG` is unreadable.
    #[error("cannot read config file {path}: {reason}")]
    File {
        /// The file that was asked for.
        path: PathBuf,
        /// Why it could not be read.
        reason: String,
    },
}

impl ConfigError {
    /// The same error for a key one level down, in `section`: a BFF's own
    /// section validates its keys as `product_page_reviews`, the operator
    /// reads `web.product_page_reviews`.
    pub fn within(self, section: &str) -> Self {
        match self {
            Self::Invalid {
                key,
                source_note,
                reason,
            } => Self::Invalid {
                key: format!("{section}.{key}"),
                source_note,
                reason,
            },
            file @ Self::File { .. } => file,
        }
    }

    /// A rule broken by an otherwise well-formed value, found by [`Validate::validate`].
    pub fn rule(key: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.to_owned(),
            source_note: String::new(),
            reason: reason.into(),
        }
    }
}

/// Where a process's configuration comes from: the file (if any) and the
/// environment, read again on a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSource {
    file: Option<PathBuf>,
}

impl ConfigSource {
    /// The TOML `file` if given, else the one [`CONFIG_FILE_ENV`] names, if any.
    pub fn new(file: Option<&Path>) -> Self {
        let from_env = std::env::var_os(CONFIG_FILE_ENV).map(PathBuf::from);
        Self {
            file: file.map(Path::to_path_buf).or(from_env),
        }
    }

    /// The configuration file, if there is one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Loads and validates `C` from the defaults, the file and the environment.
    pub fn load<C>(&self) -> Result<C, ConfigError>
    where
        C: Serialize + DeserializeOwned + Default + Validate,
    {
        load(self.file())
    }
}

/// Loads `C` from its defaults, the optional TOML `file` (falling back to the
/// file named by [`CONFIG_FILE_ENV`]), and the `BFF_` environment, then
/// validates it.
pub fn load<C>(file: Option<&Path>) -> Result<C, ConfigError>
where
    C: Serialize + DeserializeOwned + Default + Validate,
{
    let from_env = std::env::var_os(CONFIG_FILE_ENV).map(PathBuf::from);
    let file = file.map(Path::to_path_buf).or(from_env);
    let mut figment = Figment::from(Serialized::defaults(C::default()));
    if let Some(path) = &file {
        if let Err(error) = std::fs::metadata(path) {
            return Err(ConfigError::File {
                path: path.clone(),
                reason: error.to_string(),
            });
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(Environment);
    // Lossy: a string stands for the number or boolean a key wants, so
    // environment values can stay the strings they were written as.
    let config: C = figment.extract_lossy().map_err(describe)?;
    config.validate()?;
    Ok(config)
}

/// The `BFF_*` environment variables, `__` between levels.
///
/// Hand-written because figment's own `Env` reads every value as the type
/// it looks like: `BFF_AUTH__AUDIENCE=12345` would be a number and fail to
/// load as the string it is, and a secret or `kid` of digits would lose its
/// leading zeros. Here a value is the string as written, read as a number or
/// a boolean only where the key wants one; only a value in brackets
/// (`[10.0.0.0/8, 192.168.0.0/16]`, `{...}`) is structured data.
struct Environment;

impl Provider for Environment {
    fn metadata(&self) -> Metadata {
        Metadata::named("`BFF_` environment variable(s)")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let file_variable = &CONFIG_FILE_ENV[ENV_PREFIX.len()..];
        let mut dict = Dict::new();
        for (name, value) in std::env::vars_os() {
            let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
                continue;
            };
            let Some(key) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if key.is_empty() || key == file_variable {
                continue;
            }
            let value = if value.trim_start().starts_with(['[', '{']) {
                value
                    .parse()
                    .expect("parsing a figment value is infallible")
            } else {
                Value::from(value.to_owned())
            };
            let path: Vec<String> = key.split("__").map(str::to_ascii_lowercase).collect();
            insert(&mut dict, &path, value);
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// Puts `value` at `path` in `dict`, creating the tables on the way.
fn insert(dict: &mut Dict, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry(first.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            if !matches!(entry, Value::Dict(..)) {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

/// Renders a configuration as TOML with every [`Secret`] masked, for `--check-config`.
pub fn render_masked<C: Serialize>(config: &C) -> String {
    toml::to_string_pretty(config)
        .unwrap_or_else(|error| format!("# cannot render the configuration: {error}\n"))
}

/// Turns figment's error into one line naming the key as the operator wrote it.
fn describe(error: figment::Error) -> ConfigError {
    let path = &error.path;
    let from_env = error
        .metadata
        .as_ref()
        .is_some_and(|metadata| metadata.name.contains("environment"));
    let key = if from_env {
        format!("{ENV_PREFIX}{}", path.join("__").to_ascii_uppercase())
    } else if path.is_empty() {
        "configuration".to_owned()
    } else {
        path.join(".")
    };
    let source_note = match error.metadata.as_ref() {
        Some(metadata) => match &metadata.source {
            Some(figment::Source::File(file)) => format!(" (in {})", file.display()),
            _ if from_env => " (environment variable)".to_owned(),
            _ => String::new(),
        },
        None => String::new(),
    };
    ConfigError::Invalid {
        key,
        source_note,
        reason: error.kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Logging {
        log_level: String,
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Sample {
        observability: Logging,
        timeout: HumanDuration,
        upstream: ServiceUrl,
        token: Option<Secret>,
    }

    impl Default for Sample {
        fn default() -> Self {
            Self {
                observability: Logging::default(),
                timeout: HumanDuration::from_millis(250),
                upstream: ServiceUrl::parse("http://127.0.0.1:7001").expect("valid url"),
                token: None,
            }
        }
    }

    impl Validate for Sample {
        fn validate(&self) -> Result<(), ConfigError> {
            if self.observability.log_level == "loud" {
                return Err(ConfigError::rule("observability.log_level", "not a level"));
            }
            Ok(())
        }
    }

    fn write_temp(name: &str, contents: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gateway-core-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("write temp config");
        path
    }

    #[test]
    fn defaults_load_without_a_file() {
        let config: Sample = load(None).expect("defaults load");
        assert_eq!(config, Sample::default());
    }

    #[test]
    fn file_values_override_defaults() {
        let path = write_temp(
            "override.toml",
            "timeout = \"2s\"\nupstream = \"http://pricing:7003\"\n",
        );
        let config: Sample = load(Some(&path)).expect("file loads");
        assert_eq!(config.timeout.get(), std::time::Duration::from_secs(2));
        assert_eq!(config.upstream.as_str(), "http://pricing:7003/");
    }

    #[test]
    fn unknown_key_names_the_key_and_the_file() {
        let path = write_temp("unknown.toml", "[observability]\nlog_levle = \"debug\"\n");
        let error = load::<Sample>(Some(&path))
            .expect_err("unknown key is rejected")
            .to_string();
        assert!(error.starts_with("observability.log_levle (in "), "{error}");
        assert!(error.contains("unknown.toml"), "{error}");
        assert!(!error.contains('\n'), "one line: {error}");
    }

    #[test]
    fn zero_duration_is_rejected_with_its_key() {
        let path = write_temp("zero.toml", "timeout = \"0s\"\n");
        let error = load::<Sample>(Some(&path))
            .expect_err("zero is rejected")
            .to_string();
        assert!(error.starts_with("timeout (in "), "{error}");
        assert!(error.contains("non-zero"), "{error}");
    }

    #[test]
    fn negative_duration_is_rejected() {
        let path = write_temp("negative.toml", "timeout = \"-5s\"\n");
        let error = load::<Sample>(Some(&path))
            .expect_err("negative is rejected")
            .to_string();
        assert!(error.starts_with("timeout"), "{error}");
    }

    #[test]
    fn bad_url_is_rejected_with_its_key() {
        let path = write_temp("url.toml", "upstream = \"ftp://example.com\"\n");
        let error = load::<Sample>(Some(&path))
            .expect_err("ftp is rejected")
            .to_string();
        assert!(error.starts_with("upstream (in "), "{error}");
        assert!(error.contains("http"), "{error}");
    }

    #[test]
    fn validation_runs_after_loading() {
        let path = write_temp("rule.toml", "[observability]\nlog_level = \"loud\"\n");
        let error = load::<Sample>(Some(&path))
            .expect_err("the rule is checked")
            .to_string();
        assert_eq!(error, "observability.log_level: not a level");
    }

    #[test]
    fn missing_file_is_an_error() {
        let error =
            load::<Sample>(Some(Path::new("/nonexistent/bff.toml"))).expect_err("missing file");
        assert!(error.to_string().contains("/nonexistent/bff.toml"));
    }

    #[test]
    fn secrets_are_masked_when_rendered() {
        let sample = Sample {
            token: Some(Secret::new("hunter2")),
            ..Sample::default()
        };
        let rendered = render_masked(&sample);
        assert!(!rendered.contains("hunter2"), "{rendered}");
        assert!(rendered.contains("token = \"***\""), "{rendered}");
        assert!(rendered.contains("timeout = \"250ms\""), "{rendered}");
    }
}
