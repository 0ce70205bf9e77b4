//! Where idempotency records live: Redis, shared by every instance, or this
//! process, bounded.
//!
//! A record is either a claim (a request with the key is under way, with
//! its fingerprint and a token naming the claimant) or a kept answer. In
//! Redis each step is one script, so two instances never both claim a key:
//! the claim sets the record only where there is none (and answers the
//! existing one otherwise), and completing or releasing changes it only
//! while it is still the same claim.

use std::{
    sync::{Arc, LazyLock},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use moka::{Expiry, ops::compute::Op, sync::Cache};
use redis::Script;
use serde::{Deserialize, Serialize};

use super::IdempotencyConfig;
use crate::stores::{RedisStore, SharedStores};

/// Longest wait for one Redis step.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// KEYS[1]: the record. ARGV: the claim, its lifetime in ms. Sets the claim
/// where there is no record and returns nothing; else returns the record.
const CLAIM_SCRIPT: &str = r"
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

/// KEYS[1]: the record. ARGV: the claim, the answer, its lifetime in ms.
/// Replaces the claim with the answer, if the claim is still there.
const COMPLETE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

/// KEYS[1]: the record. ARGV: the claim. Deletes the claim, if it is still there.
const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// The scripts, hashed once.
static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(CLAIM_SCRIPT));
static COMPLETE: LazyLock<Script> = LazyLock::new(|| Script::new(COMPLETE_SCRIPT));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE_SCRIPT));

/// An answer kept for retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Kept {
    /// The fingerprint of the request it answered.
    pub(super) fingerprint: String,
    /// Its status.
    pub(super) status: u16,
    /// The headers a replay repeats.
    pub(super) headers: Vec<(String, String)>,
    /// Its body.
    #[serde(with = "base64_bytes")]
    pub(super) body: Vec<u8>,
}

mod base64_bytes {
    use super::{Engine, STANDARD};
    use serde::{Deserialize, Deserializer, Serializer, de};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        STANDARD
            .decode(String::deserialize(deserializer)?)
            .map_err(de::Error::custom)
    }
}

/// What is kept under a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(super) enum Record {
    /// A request with the key is under way.
    InFlight {
        /// Its fingerprint.
        fingerprint: String,
        /// Names the claimant, so only it completes or releases the claim.
        token: String,
    },
    /// Its answer.
    Kept(Kept),
}

/// What claiming a key found.
#[derive(Debug)]
pub(super) enum Claim {
    /// The key is this request's: carry it out, then complete or release.
    Claimed(ClaimToken),
    /// An answer is kept under the key.
    Kept(Kept),
    /// Another request with the key is under way; `same` when it is the
    /// same request (the same fingerprint).
    InFlight {
        /// Whether it has this request's fingerprint.
        same: bool,
    },
}

/// A claim held by this request. Dropped without [`IdempotencyStore::complete`]
/// or [`IdempotencyStore::release`] (the client went away), it is released.
#[derive(Debug)]
pub(super) struct ClaimToken {
    key: String,
    /// The claim as stored (Redis compares it byte for byte).
    claim: String,
    record: Record,
    /// Where to release it from if it is dropped.
    store: Option<Arc<IdempotencyStore>>,
}

impl Drop for ClaimToken {
    fn drop(&mut self) {
        if let Some(store) = self.store.take() {
            let released = ClaimToken {
                key: std::mem::take(&mut self.key),
                claim: std::mem::take(&mut self.claim),
                record: self.record.clone(),
                store: None,
            };
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { store.release(released).await });
            }
        }
    }
}

/// A store that did not answer.
#[derive(Debug, thiserror::Error)]
pub(super) enum StoreError {
    /// Redis failed, timed out or is not connected.
    #[error("Redis: {0}")]
    Redis(String),
    /// A record that is not one of ours.
    #[error("an unreadable record: {0}")]
    Corrupt(String),
}

/// Idempotency records; see the module docs.
#[derive(Debug)]
pub(super) enum IdempotencyStore {
    /// In this process.
    Local {
        /// The records, each expiring as its kind says.
        records: Cache<String, Record>,
    },
    /// In Redis, shared.
    Redis {
        /// The process's connection.
        store: RedisStore,
        /// How long an answer is kept, in ms.
        ttl_ms: u64,
        /// How long a claim holds, in ms.
        in_flight_ms: u64,
    },
}

/// A claim expires after `in_flight`, an answer after `kept`.
struct RecordExpiry {
    in_flight: Duration,
    kept: Duration,
}

impl Expiry<String, Record> for RecordExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        record: &Record,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(self.lifetime(record))
    }

    fn expire_after_update(
        &self,
        _key: &String,
        record: &Record,
        _updated_at: std::time::Instant,
        _remaining: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.lifetime(record))
    }
}

impl RecordExpiry {
    fn lifetime(&self, record: &Record) -> Duration {
        match record {
            Record::InFlight { .. } => self.in_flight,
            Record::Kept(_) => self.kept,
        }
    }
}

impl IdempotencyStore {
    /// In the Redis of `stores` if it has one, else in process.
    pub(super) fn new(config: &IdempotencyConfig, stores: &SharedStores) -> Self {
        match stores.redis() {
            Some(store) => Self::Redis {
                store: store.clone(),
                ttl_ms: millis(config.ttl.get()),
                in_flight_ms: millis(config.in_flight_timeout.get()),
            },
            None => Self::Local {
                records: Cache::builder()
                    .max_capacity(config.max_local_records.get())
                    .expire_after(RecordExpiry {
                        in_flight: config.in_flight_timeout.get(),
                        kept: config.ttl.get(),
                    })
                    .build(),
            },
        }
    }

    /// Claims `key` for a request of `fingerprint`, or says what holds it.
    pub(super) async fn claim(
        self: &Arc<Self>,
        key: &str,
        fingerprint: &str,
    ) -> Result<Claim, StoreError> {
        let record = Record::InFlight {
            fingerprint: fingerprint.to_owned(),
            token: format!("{:032x}", fastrand::u128(..)),
        };
        let claim = serde_json::to_string(&record).expect("a record serialises");
        let existing = match self.as_ref() {
            Self::Local { records } => {
                let entry = records
                    .entry(key.to_owned())
                    .or_insert_with(|| record.clone());
                (!entry.is_fresh()).then(|| entry.into_value())
            }
            Self::Redis {
                store,
                in_flight_ms,
                ..
            } => {
                let mut invocation = CLAIM.key(key);
                invocation.arg(&claim).arg(*in_flight_ms);
                let found: Option<String> = redis_step(store, |mut connection| async move {
                    invocation.invoke_async(&mut connection).await
                })
                .await?;
                found
                    .map(|found| serde_json::from_str(&found))
                    .transpose()
                    .map_err(|error| StoreError::Corrupt(error.to_string()))?
            }
        };
        Ok(match existing {
            None => Claim::Claimed(ClaimToken {
                key: key.to_owned(),
                claim,
                record,
                store: Some(self.clone()),
            }),
            Some(Record::Kept(kept)) => Claim::Kept(kept),
            Some(Record::InFlight {
                fingerprint: theirs,
                ..
            }) => Claim::InFlight {
                same: theirs == fingerprint,
            },
        })
    }

    /// Keeps `kept` under the claimed key, if the claim still holds.
    pub(super) async fn complete(&self, mut claim: ClaimToken, kept: &Kept) {
        claim.store = None;
        let kept = Record::Kept(kept.clone());
        match self {
            Self::Local { records } => {
                records
                    .entry(claim.key.clone())
                    .and_compute_with(|existing| match existing {
                        Some(entry) if *entry.value() == claim.record => Op::Put(kept),
                        _ => Op::Nop,
                    });
            }
            Self::Redis { store, ttl_ms, .. } => {
                let answer = serde_json::to_string(&kept).expect("a record serialises");
                let mut invocation = COMPLETE.key(&claim.key);
                invocation.arg(&claim.claim).arg(answer).arg(*ttl_ms);
                let completed: Result<u32, _> = redis_step(store, |mut connection| async move {
                    invocation.invoke_async(&mut connection).await
                })
                .await;
                if !matches!(completed, Ok(1)) {
                    tracing::warn!(
                        outcome = ?completed,
                        "an idempotent answer could not be kept; a retry will run again"
                    );
                }
            }
        }
    }

    /// Frees the claimed key, if the claim still holds.
    pub(super) async fn release(&self, mut claim: ClaimToken) {
        claim.store = None;
        match self {
            Self::Local { records } => {
                records
                    .entry(claim.key.clone())
                    .and_compute_with(|existing| match existing {
                        Some(entry) if *entry.value() == claim.record => Op::Remove,
                        _ => Op::Nop,
                    });
            }
            Self::Redis { store, .. } => {
                let mut invocation = RELEASE.key(&claim.key);
                invocation.arg(&claim.claim);
                let released: Result<u32, _> = redis_step(store, |mut connection| async move {
                    invocation.invoke_async(&mut connection).await
                })
                .await;
                if let Err(error) = released {
                    tracing::warn!(%error, "an idempotency claim could not be released; it expires by itself");
                }
            }
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Runs one Redis step on the process's connection, within [`REDIS_TIMEOUT`].
async fn redis_step<T, F, Fut>(store: &RedisStore, step: F) -> Result<T, StoreError>
where
    F: FnOnce(redis::aio::ConnectionManager) -> Fut,
    Fut: Future<Output = redis::RedisResult<T>>,
{
    let connection = store
        .connection()
        .ok_or_else(|| StoreError::Redis("not connected".to_owned()))?;
    tokio::time::timeout(REDIS_TIMEOUT, step(connection))
        .await
        .map_err(|_| StoreError::Redis(format!("no answer within {REDIS_TIMEOUT:?}")))?
        .map_err(|error| StoreError::Redis(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> Arc<IdempotencyStore> {
        Arc::new(IdempotencyStore::new(
            &IdempotencyConfig::default(),
            &SharedStores::default(),
        ))
    }

    fn kept(fingerprint: &str) -> Kept {
        Kept {
            fingerprint: fingerprint.to_owned(),
            status: 201,
            headers: vec![("location".to_owned(), "/orders/7".to_owned())],
            body: b"{\"id\":7}".to_vec(),
        }
    }

    #[tokio::test]
    async fn a_key_is_claimed_once_then_answers_with_what_was_kept() {
        let store = local();
        let Claim::Claimed(claim) = store.claim("k", "f1").await.expect("answers") else {
            panic!("the first request claims the key");
        };
        assert!(matches!(
            store.claim("k", "f1").await.expect("answers"),
            Claim::InFlight { same: true }
        ));
        assert!(matches!(
            store.claim("k", "f2").await.expect("answers"),
            Claim::InFlight { same: false }
        ));
        store.complete(claim, &kept("f1")).await;
        match store.claim("k", "f1").await.expect("answers") {
            Claim::Kept(answer) => assert_eq!(answer, kept("f1")),
            other => panic!("the kept answer, not {other:?}"),
        }
        assert!(matches!(
            store.claim("other", "f1").await.expect("answers"),
            Claim::Claimed(_)
        ));
    }

    #[tokio::test]
    async fn a_released_or_abandoned_claim_frees_the_key() {
        let store = local();
        let Claim::Claimed(claim) = store.claim("k", "f").await.expect("answers") else {
            panic!("claimed");
        };
        store.release(claim).await;
        let Claim::Claimed(abandoned) = store.claim("k", "f").await.expect("answers") else {
            panic!("free again after a release");
        };
        drop(abandoned);
        // The drop releases in the background.
        let freed = async {
            loop {
                if let Claim::Claimed(claim) = store.claim("k", "f").await.expect("answers") {
                    return claim;
                }
                tokio::task::yield_now().await;
            }
        };
        let claim = tokio::time::timeout(Duration::from_secs(5), freed)
            .await
            .expect("free again after a drop");
        // Released again, the key is free once more.
        store.release(claim).await;
        let Claim::Claimed(_newer) = store.claim("k", "f").await.expect("answers") else {
            panic!("claimed");
        };
    }

    #[test]
    fn records_round_trip_through_json() {
        let record = Record::Kept(kept("f"));
        let text = serde_json::to_string(&record).expect("serialises");
        assert!(text.contains("\"state\":\"kept\""), "{text}");
        assert_eq!(
            serde_json::from_str::<Record>(&text).expect("parses"),
            record
        );
    }
}
