//! The Redis tier: entries every instance shares, tag sets to invalidate
//! them by, and the pub/sub channel that carries an invalidation to every
//! instance's in-process tier.
//!
//! An entry is one string key (`bffcache:v1:{key}`) expiring with the
//! entry, its value a small binary record (the encoding below is written by
//! hand: a fixed header and the body as it came, with no second copy of the
//! JSON). Each tag is a sorted set of the keys carrying it
//! (`bffcache:v1:tag:{tag}`), scored by when each expires: every write
//! trims the expired ones, so a tag holds its live entries only. A Redis
//! that is down or slow costs a lookup at most [`SHARED_TIMEOUT`], and a
//! write is dropped rather than queued past [`MAX_PENDING_WRITES`]: the
//! in-process tier and the service carry on without it. Invalidations are
//! published on a channel named after the Redis database, so deployments
//! sharing one server in different databases never drop each other's
//! entries.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use redis::Script;
use tokio::sync::Semaphore;

use super::{CacheError, Cached, Entry, Invalidated, policy::Lifetime};
use crate::{lifecycle::Shutdown, stores::RedisStore};

/// Longest wait for Redis on a lookup.
const SHARED_TIMEOUT: Duration = Duration::from_millis(100);
/// Longest wait for Redis to store an entry or invalidate a tag.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Most background writes under way; past it, entries are not shared.
const MAX_PENDING_WRITES: usize = 64;
/// Where invalidated tags are published, followed by the database number.
const CHANNEL_PREFIX: &str = "bffcache:v1:invalidate:";
/// The record format's version is in every key, so a new format never reads an old one.
const KEY_PREFIX: &str = "bffcache:v1:";
const TAG_PREFIX: &str = "bffcache:v1:tag:";
/// First wait before subscribing again after the subscription broke.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Stores an entry (ARGV: value, time to live, now, both in ms) and adds
/// its key to its tags' sets, scored by when it expires; drops the
/// members that expired, and keeps each set as long as its longest entry.
const STORE: &str = r"
local ttl = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], now + ttl, KEYS[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  if redis.call('PTTL', KEYS[i]) < ttl then
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return 1
";

/// Unlinks the entries of a tag, 500 at a time, and its set, then tells
/// every instance.
const INVALIDATE: &str = r"
local keys = redis.call('ZRANGE', KEYS[1], 0, -1)
local removed = 0
for i = 1, #keys, 500 do
  removed = removed + redis.call('UNLINK', unpack(keys, i, math.min(i + 499, #keys)))
end
redis.call('UNLINK', KEYS[1])
local notified = redis.call('PUBLISH', ARGV[1], ARGV[2])
return {removed, notified}
";

/// The Redis tier of one process.
#[derive(Debug)]
pub(super) struct SharedTier {
    redis: RedisStore,
    store: Script,
    invalidate: Script,
    channel: String,
    pending_writes: Arc<Semaphore>,
}

impl SharedTier {
    pub(super) fn new(redis: RedisStore) -> Self {
        let database = redis.client().get_connection_info().redis.db;
        Self {
            redis,
            store: Script::new(STORE),
            invalidate: Script::new(INVALIDATE),
            channel: format!("{CHANNEL_PREFIX}{database}"),
            pending_writes: Arc::new(Semaphore::new(MAX_PENDING_WRITES)),
        }
    }

    /// What `key` holds in Redis; `None` as well when Redis is down or slow.
    pub(super) async fn get(&self, key: &str) -> Option<Cached> {
        let mut connection = self.redis.connection()?;
        let mut command = redis::cmd("GET");
        command.arg(format!("{KEY_PREFIX}{key}"));
        let read = command.query_async::<Option<Vec<u8>>>(&mut connection);
        match tokio::time::timeout(SHARED_TIMEOUT, read).await {
            Ok(Ok(Some(value))) => decode(Bytes::from(value)),
            Ok(Ok(None)) => None,
            Ok(Err(error)) => {
                tracing::debug!(%error, "shared cache lookup failed");
                None
            }
            Err(_) => {
                tracing::debug!("shared cache lookup timed out");
                None
            }
        }
    }

    /// Writes `cached` under `key` in the background, unless too many
    /// writes are already under way.
    pub(super) fn put(&self, key: &str, cached: &Cached) {
        let Some(mut connection) = self.redis.connection() else {
            return;
        };
        let ttl = cached.remaining().as_millis();
        if ttl == 0 {
            return;
        }
        let Ok(pending) = self.pending_writes.clone().try_acquire_owned() else {
            tracing::debug!("shared cache write skipped: too many under way");
            return;
        };
        let mut keys = vec![format!("{KEY_PREFIX}{key}")];
        if let Cached::Answer(entry) = cached {
            keys.extend(entry.tags.iter().map(|tag| format!("{TAG_PREFIX}{tag}")));
        }
        let value = encode(cached);
        let script = self.store.clone();
        tokio::spawn(async move {
            let mut invocation = script.prepare_invoke();
            for key in &keys {
                invocation.key(key);
            }
            invocation
                .arg(value.as_ref())
                .arg(ttl as u64)
                .arg(millis_since_epoch(SystemTime::now()));
            let write = invocation.invoke_async::<i64>(&mut connection);
            match tokio::time::timeout(WRITE_TIMEOUT, write).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::debug!(%error, "shared cache write failed"),
                Err(_) => tracing::debug!("shared cache write timed out"),
            }
            drop(pending);
        });
    }

    /// Drops `key` in the background: the service no longer lets it be kept.
    pub(super) fn remove(&self, key: &str) {
        let Some(mut connection) = self.redis.connection() else {
            return;
        };
        let Ok(pending) = self.pending_writes.clone().try_acquire_owned() else {
            return;
        };
        let mut command = redis::cmd("UNLINK");
        command.arg(format!("{KEY_PREFIX}{key}"));
        tokio::spawn(async move {
            let removal = command.exec_async(&mut connection);
            if let Ok(Err(error)) = tokio::time::timeout(WRITE_TIMEOUT, removal).await {
                tracing::debug!(%error, "shared cache removal failed");
            }
            drop(pending);
        });
    }

    /// Drops `tag`'s entries from Redis and publishes it to every instance.
    pub(super) async fn invalidate(&self, tag: &str) -> Result<Invalidated, CacheError> {
        let mut connection = self.redis.connection().ok_or_else(|| {
            CacheError::Shared(format!("not connected to {}", self.redis.address()))
        })?;
        let mut invocation = self.invalidate.key(format!("{TAG_PREFIX}{tag}"));
        invocation.arg(&self.channel).arg(tag);
        let (shared_entries, instances_notified) = tokio::time::timeout(
            WRITE_TIMEOUT,
            invocation.invoke_async::<(u64, u64)>(&mut connection),
        )
        .await
        .map_err(|_| CacheError::Shared(format!("no answer within {WRITE_TIMEOUT:?}")))?
        .map_err(|error| CacheError::Shared(error.to_string()))?;
        Ok(Invalidated {
            shared_entries,
            instances_notified,
        })
    }

    /// Applies every tag published by any instance with `invalidate`, until
    /// `shutdown`, subscribing again whenever the subscription breaks; a
    /// subscription that broke may have missed tags, so `forget_all` drops
    /// the whole in-process tier once it is back.
    pub(super) fn listen(
        &self,
        invalidate: impl Fn(&str) + Send + 'static,
        forget_all: impl Fn() + Send + 'static,
        shutdown: Shutdown,
    ) {
        let client = self.redis.client().clone();
        let address = self.redis.address().to_owned();
        let channel = self.channel.clone();
        tokio::spawn(async move {
            let mut backoff = FIRST_BACKOFF;
            let mut lost = false;
            loop {
                let subscribed = async {
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.subscribe(&channel).await?;
                    Ok::<_, redis::RedisError>(pubsub)
                };
                let subscribed = tokio::select! {
                    subscribed = subscribed => subscribed,
                    () = shutdown.triggered() => return,
                };
                match subscribed {
                    Ok(mut pubsub) => {
                        tracing::info!(redis = %address, "listening for cache invalidations");
                        if lost {
                            forget_all();
                        }
                        let listening = std::time::Instant::now();
                        let mut messages = pubsub.on_message();
                        loop {
                            let message = tokio::select! {
                                message = messages.next() => message,
                                () = shutdown.triggered() => return,
                            };
                            let Some(message) = message else { break };
                            match message.get_payload::<String>() {
                                Ok(tag) => invalidate(&tag),
                                Err(error) => {
                                    tracing::warn!(%error, "unreadable cache invalidation")
                                }
                            }
                        }
                        tracing::warn!(redis = %address, "cache invalidation subscription lost; subscribing again");
                        lost = true;
                        // A subscription that breaks at once does not reset the backoff.
                        if listening.elapsed() > MAX_BACKOFF {
                            backoff = FIRST_BACKOFF;
                        }
                    }
                    Err(error) => {
                        tracing::debug!(redis = %address, %error, "cannot subscribe to cache invalidations yet");
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.triggered() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        });
    }
}

const ANSWER: u8 = b'A';
const PER_CALLER: u8 = b'P';
const UNCACHEABLE: u8 = b'U';

fn millis_since_epoch(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// `A`, stored-at, fresh, stale-while-revalidate and stale-if-error (ms,
/// big-endian u64), the tags (a count, then each with its length, one
/// byte each), the body; or `P` (per caller) or `U` (uncacheable) and the
/// marker's end (ms).
fn encode(cached: &Cached) -> Bytes {
    match cached {
        Cached::PerCaller { until } | Cached::Uncacheable { until } => {
            let mut value = BytesMut::with_capacity(9);
            value.put_u8(match cached {
                Cached::PerCaller { .. } => PER_CALLER,
                _ => UNCACHEABLE,
            });
            value.put_u64(millis_since_epoch(*until));
            value.freeze()
        }
        Cached::Answer(entry) => {
            let tags: usize = entry.tags.iter().map(|tag| tag.len() + 1).sum();
            let mut value = BytesMut::with_capacity(34 + tags + entry.body.len());
            value.put_u8(ANSWER);
            value.put_u64(millis_since_epoch(entry.stored_at));
            value.put_u64(entry.lifetime.fresh.as_millis() as u64);
            value.put_u64(entry.lifetime.stale_while_revalidate.as_millis() as u64);
            value.put_u64(entry.lifetime.stale_if_error.as_millis() as u64);
            value.put_u8(entry.tags.len() as u8);
            for tag in &entry.tags {
                value.put_u8(tag.len() as u8);
                value.put_slice(tag.as_bytes());
            }
            value.put_slice(&entry.body);
            value.freeze()
        }
    }
}

/// The entry `value` encodes; `None` when it is not one, or of no more use.
fn decode(mut value: Bytes) -> Option<Cached> {
    let millis = |value: &mut Bytes| value.try_get_u64().ok().map(Duration::from_millis);
    let cached = match value.try_get_u8().ok()? {
        PER_CALLER => Cached::PerCaller {
            until: UNIX_EPOCH + millis(&mut value)?,
        },
        UNCACHEABLE => Cached::Uncacheable {
            until: UNIX_EPOCH + millis(&mut value)?,
        },
        ANSWER => {
            let stored_at = UNIX_EPOCH + millis(&mut value)?;
            let lifetime = Lifetime {
                fresh: millis(&mut value)?,
                stale_while_revalidate: millis(&mut value)?,
                stale_if_error: millis(&mut value)?,
            };
            let count = value.try_get_u8().ok()?;
            let mut tags = Vec::with_capacity(count.into());
            for _ in 0..count {
                let length = usize::from(value.try_get_u8().ok()?);
                if value.len() < length {
                    return None;
                }
                let tag = value.split_to(length);
                tags.push(Box::from(std::str::from_utf8(&tag).ok()?));
            }
            Cached::Answer(std::sync::Arc::new(Entry::stored_at(
                stored_at,
                value,
                lifetime,
                tags.into(),
            )))
        }
        _ => return None,
    };
    (!cached.remaining().is_zero()).then_some(cached)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_comes_back_as_it_was_stored() {
        let lifetime = Lifetime {
            fresh: Duration::from_secs(60),
            stale_while_revalidate: Duration::from_secs(30),
            stale_if_error: Duration::from_secs(600),
        };
        let entry = Entry::new(
            Bytes::from_static(br#"{"id":42}"#),
            lifetime,
            vec![Box::from("product:42"), Box::from("catalog")].into(),
        );
        let stored_at = millis_since_epoch(entry.stored_at);
        let Some(Cached::Answer(back)) =
            decode(encode(&Cached::Answer(std::sync::Arc::new(entry))))
        else {
            panic!("an answer");
        };
        assert_eq!(back.body, Bytes::from_static(br#"{"id":42}"#));
        assert_eq!(back.lifetime, lifetime);
        assert_eq!(
            &*back.tags,
            &[Box::from("product:42"), Box::from("catalog")]
        );
        assert_eq!(millis_since_epoch(back.stored_at), stored_at);
    }

    #[test]
    fn a_marker_comes_back_and_what_is_of_no_use_does_not() {
        let until = SystemTime::now() + Duration::from_secs(60);
        let Some(Cached::PerCaller { until: back }) = decode(encode(&Cached::PerCaller { until }))
        else {
            panic!("a marker");
        };
        assert_eq!(millis_since_epoch(back), millis_since_epoch(until));
        let past = Cached::PerCaller {
            until: SystemTime::now() - Duration::from_secs(1),
        };
        assert!(decode(encode(&past)).is_none(), "expired");
        assert!(
            decode(Bytes::from_static(b"A\x00\x01")).is_none(),
            "truncated"
        );
        assert!(decode(Bytes::from_static(b"Z")).is_none(), "unknown kind");
    }
}
