//! Persisted queries: an app sends a query's SHA-256 instead of its text.
//!
//! `[mobile] persisted_queries` chooses how:
//! - `automatic` (the default; Apollo's automatic persisted queries): a
//!   request with `extensions.persistedQuery.sha256Hash` and no query runs
//!   the text registered under that hash, or gets `PERSISTED_QUERY_NOT_FOUND`
//!   and sends the text with the hash once; the text is registered only if
//!   its SHA-256 is the hash (`PERSISTED_QUERY_HASH_MISMATCH` otherwise) and
//!   it is within the text limits. Texts are kept per tenant, so no tenant
//!   learns what another's apps send, in Redis when the process has one
//!   (every instance knows every text, for `persisted_query_ttl`) or else in process,
//!   bounded by their bytes.
//! - `safelist`: only the operations of `[mobile] safelist_file` (a JSON
//!   object of hash → document, loaded at start, each hash checked) run;
//!   anything else gets `PERSISTED_QUERY_REQUIRED`.
//!
//! `persisted_query_ttl` (24 h) and `persisted_query_cache_bytes` (4 MiB)
//! bound what is kept.
//! - `off`: a hash is `PERSISTED_QUERY_NOT_SUPPORTED`.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_graphql::Value;
use gateway_core::{config::ConfigError, stores::SharedStores};
use moka::future::Cache;
use serde::{Deserialize, Serialize};

use crate::{MobileSettings, limits::refusal};

/// How persisted queries are served (`[mobile] persisted_queries`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PersistedQueryMode {
    /// A hash is refused.
    Off,
    /// Apollo's automatic persisted queries.
    #[default]
    Automatic,
    /// Only the operations of the safelist run.
    Safelist,
}

/// The safelist of `file` (a JSON object of SHA-256 in hex → document),
/// read and checked: every hash is its document's SHA-256. `key` names the
/// setting in errors.
pub(crate) fn load_safelist(
    key: &str,
    file: &std::path::Path,
) -> Result<HashMap<String, Arc<str>>, ConfigError> {
    let text = std::fs::read_to_string(file)
        .map_err(|error| ConfigError::rule(key, format!("{}: {error}", file.display())))?;
    let list: HashMap<String, String> = serde_json::from_str(&text).map_err(|error| {
        ConfigError::rule(
            key,
            format!(
                "{}: not a JSON object of hash to document: {error}",
                file.display()
            ),
        )
    })?;
    let mut safelist = HashMap::with_capacity(list.len());
    for (hash, document) in list {
        let hash = hash.to_ascii_lowercase();
        if sha256_hex(&document) != hash {
            return Err(ConfigError::rule(
                key,
                format!("{hash} is not the SHA-256 of its document"),
            ));
        }
        safelist.insert(hash, Arc::from(document));
    }
    Ok(safelist)
}

/// The SHA-256 of `text`, in lowercase hex.
fn sha256_hex(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Why a persisted query was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    NotFound,
    HashMismatch,
    Required,
    NotSupported,
}

impl Refused {
    /// The stable code in `extensions.code`.
    fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "PERSISTED_QUERY_NOT_FOUND",
            Self::HashMismatch => "PERSISTED_QUERY_HASH_MISMATCH",
            Self::Required => "PERSISTED_QUERY_REQUIRED",
            Self::NotSupported => "PERSISTED_QUERY_NOT_SUPPORTED",
        }
    }

    /// The refusal as a GraphQL response. `PersistedQueryNotFound` is the
    /// message Apollo's clients look for before sending the text.
    pub(crate) fn response(self) -> async_graphql::Response {
        let message = match self {
            Self::NotFound => "PersistedQueryNotFound",
            Self::HashMismatch => "the query's SHA-256 is not the hash sent with it",
            Self::Required => "only the operations of the safelist run, by their hash",
            Self::NotSupported => "persisted queries are not supported here",
        };
        refusal(self.code(), message)
    }
}

/// Where registered texts are kept.
#[derive(Clone)]
enum Store {
    Local(Cache<String, Arc<str>>),
    Redis { stores: SharedStores, ttl: Duration },
}

/// Persisted queries as configured; cheap to clone.
#[derive(Clone)]
pub(crate) struct PersistedQueries {
    mode: PersistedQueryMode,
    safelist: Arc<HashMap<String, Arc<str>>>,
    store: Store,
}

/// What a request asks: its hash, if it sent one.
fn requested_hash(request: &async_graphql::Request) -> Option<String> {
    let Value::Object(persisted) = request.extensions.get("persistedQuery")? else {
        return None;
    };
    match persisted.get("sha256Hash") {
        Some(Value::String(hash)) => Some(hash.to_ascii_lowercase()),
        _ => None,
    }
}

impl PersistedQueries {
    /// The persisted queries of `settings`, kept in `stores`' Redis if it
    /// has one. The safelist was checked with the configuration; if its file
    /// no longer reads, nothing is safelisted (every hash is refused).
    pub(crate) fn new(settings: &MobileSettings, stores: &SharedStores) -> Self {
        let safelist = match (&settings.safelist_file, settings.persisted_queries) {
            (Some(file), PersistedQueryMode::Safelist) => load_safelist("safelist_file", file)
                .unwrap_or_else(|error| {
                    tracing::error!(%error, "the safelist no longer reads: no operation runs");
                    HashMap::new()
                }),
            _ => HashMap::new(),
        };
        let store = match stores.redis() {
            Some(_) => Store::Redis {
                stores: stores.clone(),
                ttl: settings.persisted_query_ttl.get(),
            },
            None => Store::Local(
                Cache::builder()
                    .max_capacity(settings.persisted_query_cache_bytes)
                    .weigher(|key: &String, text: &Arc<str>| {
                        u32::try_from(key.len() + text.len()).unwrap_or(u32::MAX)
                    })
                    .build(),
            ),
        };
        Self {
            mode: settings.persisted_queries,
            safelist: Arc::new(safelist),
            store,
        }
    }

    /// Gives `request` its text: the one registered or safelisted under its
    /// hash. `register` is then whether the text it sent must be registered
    /// once it passed the text limits ([`Self::register`]).
    pub(crate) async fn resolve(
        &self,
        request: &mut async_graphql::Request,
        tenant: &str,
    ) -> Result<Option<String>, Refused> {
        let hash = requested_hash(request);
        match (self.mode, hash) {
            (PersistedQueryMode::Off, None) | (PersistedQueryMode::Automatic, None) => Ok(None),
            (PersistedQueryMode::Off, Some(_)) => Err(Refused::NotSupported),
            (PersistedQueryMode::Safelist, hash) => {
                let document = hash
                    .and_then(|hash| self.safelist.get(&hash).cloned())
                    .ok_or(Refused::Required)?;
                if !request.query.is_empty() && request.query != *document {
                    return Err(Refused::Required);
                }
                request.query = document.to_string();
                Ok(None)
            }
            (PersistedQueryMode::Automatic, Some(hash)) => {
                if request.query.is_empty() {
                    request.query = self
                        .lookup(tenant, &hash)
                        .await
                        .ok_or(Refused::NotFound)?
                        .to_string();
                    Ok(None)
                } else if sha256_hex(&request.query) == hash {
                    Ok(Some(hash))
                } else {
                    Err(Refused::HashMismatch)
                }
            }
        }
    }

    /// Keeps `text` under `hash` for `tenant`.
    pub(crate) async fn register(&self, tenant: &str, hash: String, text: &str) {
        match &self.store {
            Store::Local(cache) => {
                cache
                    .insert(local_key(tenant, &hash), Arc::from(text))
                    .await
            }
            Store::Redis { stores, ttl } => {
                let Some(mut connection) = stores.redis().and_then(|redis| redis.connection())
                else {
                    return;
                };
                let stored: redis::RedisResult<()> = redis::cmd("SET")
                    .arg(redis_key(tenant, &hash))
                    .arg(text)
                    .arg("EX")
                    .arg(ttl.as_secs().max(1))
                    .query_async(&mut connection)
                    .await;
                if let Err(error) = stored {
                    tracing::warn!(%error, "a persisted query could not be registered in Redis");
                }
            }
        }
    }

    async fn lookup(&self, tenant: &str, hash: &str) -> Option<Arc<str>> {
        match &self.store {
            Store::Local(cache) => cache.get(&local_key(tenant, hash)).await,
            Store::Redis { stores, .. } => {
                let mut connection = stores.redis()?.connection()?;
                let found: redis::RedisResult<Option<String>> = redis::cmd("GET")
                    .arg(redis_key(tenant, hash))
                    .query_async(&mut connection)
                    .await;
                // Without Redis the client is told to send the text again.
                found
                    .inspect_err(|error| {
                        tracing::warn!(%error, "a persisted query could not be read from Redis");
                    })
                    .ok()
                    .flatten()
                    .map(Arc::from)
            }
        }
    }
}

fn local_key(tenant: &str, hash: &str) -> String {
    format!("{tenant}\n{hash}")
}

fn redis_key(tenant: &str, hash: &str) -> String {
    format!("bff-mobile:apq:{tenant}:{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_the_lowercase_hex_sha256_of_the_text() {
        assert_eq!(sha256_hex("{ product(id: 42) { name } }").len(), 64);
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn a_safelist_entry_must_be_its_documents_hash() {
        let path = std::env::temp_dir().join(format!("safelist-{}.json", std::process::id()));
        let query = "{ product(id: 42) { name } }";
        std::fs::write(
            &path,
            serde_json::json!({ sha256_hex(query): query }).to_string(),
        )
        .expect("written");
        assert_eq!(
            load_safelist("safelist_file", &path).expect("valid").len(),
            1
        );
        std::fs::write(
            &path,
            serde_json::json!({ sha256_hex("{ a }"): query }).to_string(),
        )
        .expect("written");
        assert!(load_safelist("safelist_file", &path).is_err());
        std::fs::remove_file(&path).expect("removed");
        assert!(
            load_safelist("safelist_file", &path).is_err(),
            "a missing file"
        );
    }
}
