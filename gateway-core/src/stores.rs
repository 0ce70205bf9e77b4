//! Shared stores: state that must outlive one request and be seen by every
//! instance of a BFF.
//!
//! BFF instances are stateless; what the fleet must share (rate-limit
//! buckets, cached responses, later idempotency records, persisted queries)
//! lives in Redis, behind one multiplexed, auto-reconnecting connection per
//! process. [`SharedStores`] is where that connection is kept and how every
//! concern and every BFF reaches it: a BFF receives it in its parts
//! (`bff::BffParts::stores`), a concern takes it when it is built, so the
//! connection is opened once however many concerns use it.
//!
//! The connection is opened in the background: a Redis that is down when
//! the process starts delays nothing, and each concern decides what to do
//! without it (the rate limiter follows its outage policy). Once open, the
//! `redis` crate's connection manager reconnects by itself.
//!
//! With no Redis configured a process holds no store and needs none: the
//! one-machine default.

use std::{fmt, time::Duration};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use tokio::sync::watch;

use crate::{config::ConfigError, lifecycle::Shutdown};

/// First wait before reconnecting after a failed attempt; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Longest wait for one connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The shared stores of one process; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct SharedStores {
    redis: Option<RedisStore>,
}

impl SharedStores {
    /// The stores for `redis_url` (none when it is empty), connecting in the
    /// background until `shutdown`.
    pub fn open(redis_url: &str, shutdown: &Shutdown) -> Result<Self, ConfigError> {
        let redis = if redis_url.is_empty() {
            None
        } else {
            Some(RedisStore::connect(redis_url, shutdown)?)
        };
        Ok(Self { redis })
    }

    /// The Redis every instance shares, when one is configured.
    pub fn redis(&self) -> Option<&RedisStore> {
        self.redis.as_ref()
    }
}

/// The process's Redis connection; cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    /// Where it is, for logs (`host:port/db`, never a password).
    address: String,
    /// Opens the connections a multiplexed one cannot serve (pub/sub).
    client: redis::Client,
    connection: watch::Receiver<Option<ConnectionManager>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("address", &self.address)
            .field("connected", &self.connection.borrow().is_some())
            .finish()
    }
}

/// Where the process's Redis is: `redis://[:password@]host[:port][/db]`, or
/// empty for none. Checked as the `redis` crate reads it while loading; its
/// password never shows (`--check-config` prints `redis://:***@host`).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// Checks and wraps `url` (empty: no Redis).
    pub fn parse(url: &str) -> Result<Self, String> {
        if !url.is_empty() {
            check_redis_url(url)?;
        }
        Ok(Self(url.to_owned()))
    }

    /// Whether no Redis is named.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The URL itself, password included: for connecting only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password masked.
    fn masked(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut url) if url.password().is_some() => {
                // Only URLs that can carry a password reach here.
                let _ = url.set_password(Some("***"));
                url.to_string()
            }
            _ => self.0.clone(),
        }
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.masked(), f)
    }
}

impl Serialize for RedisUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.masked())
    }
}

impl<'de> Deserialize<'de> for RedisUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(|reason| {
            de::Error::invalid_value(
                de::Unexpected::Str("(the URL)"),
                &format!("a redis:// URL or nothing: {reason}").as_str(),
            )
        })
    }
}

/// The process's Redis (`[redis]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// Redis shared by every instance (`redis://host:6379`): rate-limit
    /// buckets, cached answers, idempotency records, introspection answers
    /// and persisted queries. Empty (the default): all in process, for one
    /// machine.
    pub url: RedisUrl,
}

/// Checks a Redis URL as the `redis` crate reads it.
pub(crate) fn check_redis_url(url: &str) -> Result<redis::Client, String> {
    redis::Client::open(url).map_err(|error| error.to_string())
}

impl RedisStore {
    /// Starts connecting to `url` in the background, until `shutdown`.
    fn connect(url: &str, shutdown: &Shutdown) -> Result<Self, ConfigError> {
        let client =
            check_redis_url(url).map_err(|reason| ConfigError::rule("redis.url", reason))?;
        let address = client.get_connection_info().addr.to_string();
        let (sender, connection) = watch::channel(None);
        let shutdown = shutdown.clone();
        let logged_address = address.clone();
        let connecting = client.clone();
        tokio::spawn(async move {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(CONNECT_TIMEOUT)
                .set_number_of_retries(2)
                .set_max_delay(MAX_BACKOFF.as_millis() as u64);
            let mut backoff = FIRST_BACKOFF;
            let mut attempts = 0u32;
            loop {
                let attempt =
                    ConnectionManager::new_with_config(connecting.clone(), config.clone());
                let result = tokio::select! {
                    result = attempt => result,
                    () = shutdown.triggered() => return,
                };
                match result {
                    Ok(manager) => {
                        tracing::info!(redis = %logged_address, "connected to Redis");
                        sender.send_replace(Some(manager));
                        return;
                    }
                    Err(error) => {
                        attempts += 1;
                        if attempts == 1 {
                            tracing::warn!(redis = %logged_address, %error, "cannot connect to Redis yet; retrying");
                        } else {
                            tracing::debug!(redis = %logged_address, %error, attempts, "cannot connect to Redis yet");
                        }
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.triggered() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        });
        Ok(Self {
            address,
            client,
            connection,
        })
    }

    /// Where it is, for logs.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The client, to open a connection of one's own (a pub/sub
    /// subscription, which cannot share the multiplexed connection).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The connection, once it was opened; a clone shares the multiplexed
    /// connection, so every caller takes its own.
    pub fn connection(&self) -> Option<ConnectionManager> {
        self.connection.borrow().clone()
    }

    /// Completes once the connection is open (at once if it is); never
    /// while it cannot be, so a caller bounds the wait.
    pub async fn connected(&self) {
        let mut connection = self.connection.clone();
        if connection.wait_for(Option::is_some).await.is_err() {
            // The connecting task ended without a connection (shutdown).
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_password_never_shows() {
        let url = RedisUrl::parse("redis://:hunter2@cache.internal:6380/2").expect("valid");
        assert_eq!(url.expose(), "redis://:hunter2@cache.internal:6380/2");
        let shown = serde_json::to_string(&url).expect("serialises");
        assert_eq!(shown, "\"redis://:***@cache.internal:6380/2\"");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert_eq!(
            serde_json::to_string(&RedisUrl::parse("redis://127.0.0.1:6379").expect("valid"))
                .expect("serialises"),
            "\"redis://127.0.0.1:6379\""
        );
    }

    #[test]
    fn a_redis_url_is_checked_while_loading() {
        assert!(serde_json::from_str::<RedisUrl>("\"http://cache:6379\"").is_err());
        assert!(serde_json::from_str::<RedisUrl>("\"redis://cache:6379/0\"").is_ok());
        let empty: RedisUrl = serde_json::from_str("\"\"").expect("empty is no Redis");
        assert_eq!(empty, RedisUrl::default());
    }
}
