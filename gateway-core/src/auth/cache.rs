//! A bounded cache of verified tokens.
//!
//! RS256 and ES256 verification costs tens of microseconds; a client sends
//! the same token with every request until it expires. Entries are found by
//! a hash of the token's last [`HASHED_TAIL`] bytes, the end of its
//! signature, and a hit compares the whole token, so only the exact bytes
//! that were verified can hit. A hit re-checks `exp` and `nbf` against the current
//! time, so an entry never outlives its token, and is ignored once a key has
//! left the JWKS since it was cached (the `epoch`).

use std::{
    collections::HashMap,
    hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState},
    sync::{Arc, Mutex},
};

use super::token::Validity;
use crate::identity::VerifiedIdentity;

/// Independent shards, so concurrent requests rarely contend on one lock.
const SHARDS: usize = 16;

/// How much of a token's end is hashed: within its signature, which differs
/// between any two tokens an issuer signs (an RS256 token is about 700
/// bytes; hashing it all was a twentieth of a forwarded request's work).
/// Tokens sharing a tail only share a slot: the whole token is compared.
pub(crate) const HASHED_TAIL: usize = 32;

struct Entry {
    token: Box<str>,
    identity: Arc<VerifiedIdentity>,
    validity: Validity,
    epoch: u64,
}

/// The map is keyed by the token's hash, already computed: hashing it again
/// would double the cost of a hit.
#[derive(Default)]
struct PrehashedKey(u64);

impl Hasher for PrehashedKey {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is ever called for a `u64` key; fold anything else.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

type Shard = HashMap<u64, Entry, BuildHasherDefault<PrehashedKey>>;

/// Verified tokens by their exact text.
pub(crate) struct TokenCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    /// Keyed per process, so nobody can aim tokens at one shard or bucket.
    hasher: RandomState,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("capacity", &(self.per_shard * SHARDS))
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// A cache of about `capacity` tokens (at least one per shard).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            hasher: RandomState::new(),
        }
    }

    fn locate(&self, token: &str) -> (u64, &Mutex<Shard>) {
        let tail = &token.as_bytes()[token.len().saturating_sub(HASHED_TAIL)..];
        let hash = self.hasher.hash_one(tail);
        (hash, &self.shards[(hash % SHARDS as u64) as usize])
    }

    /// The identity of `token` if it was verified, is still current at `now`
    /// and no key has been withdrawn since (`epoch`).
    pub(crate) fn get(
        &self,
        token: &str,
        now: u64,
        leeway: u64,
        epoch: u64,
    ) -> Option<Arc<VerifiedIdentity>> {
        let (hash, shard) = self.locate(token);
        let shard = shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = shard.get(&hash)?;
        let current = entry.validity.is_current(now, leeway) && entry.epoch == epoch;
        (current && *entry.token == *token).then(|| entry.identity.clone())
    }

    /// Remembers that `token` verified as `identity`, usable within `validity`.
    pub(crate) fn insert(
        &self,
        token: &str,
        identity: Arc<VerifiedIdentity>,
        validity: Validity,
        now: u64,
        epoch: u64,
    ) {
        let (hash, shard) = self.locate(token);
        let mut shard = shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if shard.len() >= self.per_shard && !shard.contains_key(&hash) {
            shard.retain(|_, entry| entry.validity.expires_at > now && entry.epoch == epoch);
            let victim = (shard.len() >= self.per_shard)
                .then(|| shard.keys().next().copied())
                .flatten();
            if let Some(victim) = victim {
                shard.remove(&victim);
            }
        }
        shard.insert(
            hash,
            Entry {
                token: token.into(),
                identity,
                validity,
                epoch,
            },
        );
    }

    /// Entries held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_schema::{AuthMethod, Identity};

    const NOW: u64 = 1_800_000_000;

    fn identity(subject: &str) -> Arc<VerifiedIdentity> {
        Arc::new(
            VerifiedIdentity::new(Identity {
                subject: subject.to_owned(),
                tenant: "acme".to_owned(),
                scopes: vec![],
                client: None,
                auth_method: AuthMethod::Jwt,
            })
            .expect("a valid identity"),
        )
    }

    fn validity(expires_at: u64, not_before: Option<u64>) -> Validity {
        Validity {
            expires_at,
            not_before,
        }
    }

    #[test]
    fn hits_only_the_exact_token_while_it_is_current() {
        let cache = TokenCache::new(100);
        cache.insert(
            "a.b.c",
            identity("user-1"),
            validity(NOW + 60, Some(NOW)),
            NOW,
            0,
        );
        assert_eq!(
            cache
                .get("a.b.c", NOW, 0, 0)
                .map(|id| id.subject.clone())
                .as_deref(),
            Some("user-1")
        );
        assert!(
            cache.get("a.b.d", NOW, 0, 0).is_none(),
            "another signature misses"
        );
        assert!(
            cache.get("a.b.c", NOW + 61, 0, 0).is_none(),
            "never outlives exp"
        );
        assert!(
            cache.get("a.b.c", NOW + 61, 30, 0).is_some(),
            "within the leeway"
        );
        assert!(
            cache.get("a.b.c", NOW, 0, 1).is_none(),
            "a key was withdrawn since"
        );
    }

    #[test]
    fn tokens_sharing_a_hashed_tail_never_answer_for_each_other() {
        let cache = TokenCache::new(100);
        let tail = "s".repeat(HASHED_TAIL);
        let (first, second) = (format!("first.{tail}"), format!("second.{tail}"));
        let subject_of = |token: &str| cache.get(token, NOW, 0, 0).map(|id| id.subject.clone());
        cache.insert(&first, identity("user-1"), validity(NOW + 60, None), NOW, 0);
        assert_eq!(subject_of(&first).as_deref(), Some("user-1"));
        assert_eq!(subject_of(&second), None, "the same tail, another token");
        cache.insert(
            &second,
            identity("user-2"),
            validity(NOW + 60, None),
            NOW,
            0,
        );
        assert_eq!(subject_of(&second).as_deref(), Some("user-2"));
        assert_ne!(subject_of(&first).as_deref(), Some("user-2"));
    }

    #[test]
    fn not_before_is_rechecked() {
        let cache = TokenCache::new(100);
        cache.insert(
            "t",
            identity("user-1"),
            validity(NOW + 600, Some(NOW + 100)),
            NOW,
            0,
        );
        assert!(cache.get("t", NOW, 30, 0).is_none());
        assert!(cache.get("t", NOW + 100, 30, 0).is_some());
    }

    #[test]
    fn stays_bounded() {
        let cache = TokenCache::new(64);
        for index in 0..10_000 {
            cache.insert(
                &format!("token-{index}"),
                identity("user"),
                validity(NOW + 60, None),
                NOW,
                0,
            );
        }
        assert!(cache.len() <= 64, "{}", cache.len());
        assert!(
            cache.get("token-9999", NOW, 0, 0).is_some(),
            "the newest entry is kept"
        );
    }
}
