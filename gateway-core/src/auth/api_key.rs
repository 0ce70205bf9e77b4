//! API keys for partners (`X-Api-Key`).
//!
//! Configuration holds only the SHA-256 of each key, never the key, with the
//! tenant, plan and scopes it grants. A presented key is hashed and compared
//! with every configured hash in constant time, without stopping at a match,
//! so timing tells nothing about which keys exist. A key is revoked by
//! setting `revoked = true` (or removing it) and restarting or reloading.
//! Each key's name, tenant and scopes are checked at load like a token's
//! claims: a key whose identity cannot be forwarded to services whole (no
//! tenant, characters no header can carry) is a configuration error.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shared_schema::{AuthMethod, Identity};

use super::AuthError;
use crate::{
    config::ConfigError,
    identity::{InvalidIdentity, VerifiedIdentity},
};

/// Longest API key accepted.
const MAX_KEY_LEN: usize = 256;

/// One API key (`[[auth.api_keys]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// A name for logs and the identity's `client` (`acme-erp-prod`).
    pub name: String,
    /// Lower-case hex SHA-256 of the key: `printf %s "$KEY" | sha256sum`.
    pub sha256: String,
    /// The tenant the key acts for.
    pub tenant: String,
    /// The partner's plan (rate-limit tier).
    pub plan: String,
    /// Scopes the key grants.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// A revoked key is refused like an unknown one.
    #[serde(default)]
    pub revoked: bool,
}

struct Entry {
    digest: [u8; 32],
    identity: Arc<VerifiedIdentity>,
    revoked: bool,
}

/// The configured API keys.
pub(crate) struct ApiKeys {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("count", &self.entries.len())
            .finish()
    }
}

fn decode_hex_digest(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let nibble = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    let mut digest = [0u8; 32];
    for (index, pair) in bytes.chunks_exact(2).enumerate() {
        digest[index] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(digest)
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

impl ApiKeys {
    /// Checks and indexes the configured keys.
    pub(crate) fn new(configs: &[ApiKeyConfig]) -> Result<Self, ConfigError> {
        let mut entries = Vec::with_capacity(configs.len());
        for (index, config) in configs.iter().enumerate() {
            let digest = decode_hex_digest(&config.sha256).ok_or_else(|| {
                ConfigError::rule(
                    &format!("auth.api_keys[{index}].sha256"),
                    "must be 64 lower-case hex digits (the SHA-256 of the key)",
                )
            })?;
            if entries.iter().any(|entry: &Entry| entry.digest == digest) {
                return Err(ConfigError::rule(
                    &format!("auth.api_keys[{index}].sha256"),
                    "duplicate key",
                ));
            }
            let identity = VerifiedIdentity::new(Identity {
                subject: config.name.clone(),
                tenant: config.tenant.clone(),
                scopes: config.scopes.clone(),
                client: Some(config.name.clone()),
                auth_method: AuthMethod::ApiKey,
            })
            .map_err(|invalid| {
                let field = match invalid {
                    InvalidIdentity::Subject | InvalidIdentity::Client => "name",
                    InvalidIdentity::Tenant => "tenant",
                    InvalidIdentity::Scopes => "scopes",
                };
                ConfigError::rule(
                    &format!("auth.api_keys[{index}].{field}"),
                    invalid.to_string(),
                )
            })?;
            if config.plan.is_empty() {
                return Err(ConfigError::rule(
                    &format!("auth.api_keys[{index}].plan"),
                    "must name a plan",
                ));
            }
            entries.push(Entry {
                digest,
                identity: Arc::new(identity.with_plan(config.plan.clone())),
                revoked: config.revoked,
            });
        }
        Ok(Self { entries })
    }

    /// Whether an unrevoked key is configured; without one, `X-Api-Key` is not accepted.
    pub(crate) fn is_enabled(&self) -> bool {
        self.entries.iter().any(|entry| !entry.revoked)
    }

    /// The identity of `presented`, if it is a configured, unrevoked key.
    pub(crate) fn authenticate(&self, presented: &str) -> Result<Arc<VerifiedIdentity>, AuthError> {
        if presented.is_empty() || presented.len() > MAX_KEY_LEN {
            return Err(AuthError::InvalidApiKey);
        }
        let digest: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, presented.as_bytes())
            .as_ref()
            .try_into()
            .expect("SHA-256 digests are 32 bytes");
        let mut found = None;
        for entry in &self.entries {
            if constant_time_eq(&entry.digest, &digest) && !entry.revoked {
                found = Some(entry.identity.clone());
            }
        }
        found.ok_or(AuthError::InvalidApiKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256_hex(key: &str) -> String {
        ring::digest::digest(&ring::digest::SHA256, key.as_bytes())
            .as_ref()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    fn config(name: &str, key: &str, revoked: bool) -> ApiKeyConfig {
        ApiKeyConfig {
            name: name.to_owned(),
            sha256: sha256_hex(key),
            tenant: "acme".to_owned(),
            plan: "gold".to_owned(),
            scopes: vec!["products:read".to_owned()],
            revoked,
        }
    }

    #[test]
    fn configured_keys_map_to_their_tenant_and_scopes() {
        let keys = ApiKeys::new(&[
            config("acme-erp", "k-live", false),
            config("old", "k-old", true),
        ])
        .expect("valid");
        let identity = keys.authenticate("k-live").expect("known key");
        assert_eq!(identity.tenant, "acme");
        assert_eq!(identity.client.as_deref(), Some("acme-erp"));
        assert_eq!(identity.auth_method, AuthMethod::ApiKey);
        assert_eq!(
            keys.authenticate("k-old").err(),
            Some(AuthError::InvalidApiKey),
            "revoked"
        );
        assert_eq!(
            keys.authenticate("k-unknown").err(),
            Some(AuthError::InvalidApiKey)
        );
        assert_eq!(keys.authenticate("").err(), Some(AuthError::InvalidApiKey));
    }

    #[test]
    fn malformed_or_duplicate_hashes_are_configuration_errors() {
        let mut bad = config("x", "k", false);
        bad.sha256 = "ABC".to_owned();
        assert!(ApiKeys::new(&[bad]).is_err());
        assert!(ApiKeys::new(&[config("a", "same", false), config("b", "same", false)]).is_err());
    }

    #[test]
    fn identities_that_cannot_be_forwarded_are_configuration_errors() {
        let refused = |change: fn(&mut ApiKeyConfig)| {
            let mut key = config("acme-erp", "k", false);
            change(&mut key);
            ApiKeys::new(&[key]).err().map(|error| error.to_string())
        };
        let tenantless = refused(|key| key.tenant.clear()).expect("refused");
        assert!(
            tenantless.starts_with("auth.api_keys[0].tenant: "),
            "{tenantless}"
        );
        let spaced = refused(|key| key.tenant = "acme corp".into()).expect("refused");
        assert!(spaced.starts_with("auth.api_keys[0].tenant: "), "{spaced}");
        let name =
            refused(|key| key.name = "acme\r\nx-auth-tenant: other".into()).expect("refused");
        assert!(name.starts_with("auth.api_keys[0].name: "), "{name}");
        let scope = refused(|key| key.scopes = vec!["a\"b".into()]).expect("refused");
        assert!(scope.starts_with("auth.api_keys[0].scopes: "), "{scope}");
        let plan = refused(|key| key.plan.clear()).expect("refused");
        assert!(plan.starts_with("auth.api_keys[0].plan: "), "{plan}");
        assert_eq!(refused(|_| {}), None);
    }
}
