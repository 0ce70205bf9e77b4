//! Pagination cursors the client cannot forge.
//!
//! A cursor a BFF hands out wraps a service's own cursor (an offset, say)
//! with an HMAC-SHA256 tag over it and the list it belongs to (a category
//! and order, a user's orders), so a cursor that was altered, or taken from
//! another list, is refused instead of reaching the service. The key is the
//! BFF's `cursor_secret`, shared by every instance; without one each
//! process makes its own, and a cursor only works on the instance that
//! issued it.

use crate::config::{ConfigError, Secret};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ring::{
    hmac,
    rand::{SecureRandom, SystemRandom},
};

/// Shortest `cursor_secret` accepted.
const MIN_SECRET_LEN: usize = 32;

/// Signs and checks cursors; see the module docs.
#[derive(Clone)]
pub struct CursorSigner {
    key: hmac::Key,
}

impl std::fmt::Debug for CursorSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorSigner")
    }
}

impl CursorSigner {
    /// Signs with `secret`, or with a key of this process when there is
    /// none (`setting` names the missing setting in the warning).
    pub fn new(secret: Option<&str>, setting: &str) -> Self {
        let key = match secret {
            Some(secret) => hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
            None => {
                let mut bytes = [0; 32];
                SystemRandom::new()
                    .fill(&mut bytes)
                    .expect("the system's random generator works");
                tracing::warn!(
                    "{setting} is not set: cursors work only on the instance that issued them"
                );
                hmac::Key::new(hmac::HMAC_SHA256, &bytes)
            }
        };
        Self { key }
    }

    /// Refuses a configured `key` (a BFF's `cursor_secret`) too short to
    /// be a secret.
    pub fn check_secret(key: &str, secret: Option<&Secret>) -> Result<(), ConfigError> {
        if secret.is_some_and(|secret| secret.expose().len() < MIN_SECRET_LEN) {
            return Err(ConfigError::rule(
                key,
                format!("must be at least {MIN_SECRET_LEN} characters"),
            ));
        }
        Ok(())
    }

    /// The cursor of the service's `cursor` in `listing`.
    pub fn sign(&self, listing: &str, cursor: &str) -> String {
        let tag = hmac::sign(&self.key, &Self::message(listing, cursor));
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(cursor),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    /// The service's cursor inside `signed`, if `signed` was issued for `listing`.
    pub fn open(&self, listing: &str, signed: &str) -> Option<String> {
        let (cursor, tag) = signed.split_once('.')?;
        let cursor = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        // In constant time, as every check of a secret-derived value.
        hmac::verify(&self.key, &Self::message(listing, &cursor), &tag).ok()?;
        Some(cursor)
    }

    fn message(listing: &str, cursor: &str) -> Vec<u8> {
        [listing.as_bytes(), b"\n", cursor.as_bytes()].concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_opens_only_unaltered_and_in_its_own_listing() {
        let signer = CursorSigner::new(Some("a shared secret"), "cursor_secret");
        let cursor = signer.sign("audio price_asc", "24");
        assert_eq!(
            signer.open("audio price_asc", &cursor).as_deref(),
            Some("24")
        );
        assert_eq!(
            signer.open("audio newest", &cursor),
            None,
            "another listing"
        );
        assert_eq!(signer.open("kitchen price_asc", &cursor), None);
        let (_, tag) = cursor.split_once('.').expect("two parts");
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode("4800"));
        assert_eq!(
            signer.open("audio price_asc", &forged),
            None,
            "another offset"
        );
        for garbage in ["", "24", "MjQ", "MjQ.", ".abc", "MjQ.!!!", "MjQ.YWJj"] {
            assert_eq!(signer.open("audio price_asc", garbage), None, "{garbage:?}");
        }
        let other_instance = CursorSigner::new(Some("a shared secret"), "cursor_secret");
        assert_eq!(
            other_instance.open("audio price_asc", &cursor).as_deref(),
            Some("24"),
            "every instance with the secret opens it"
        );
        assert_eq!(
            CursorSigner::new(None, "cursor_secret").open("audio price_asc", &cursor),
            None
        );
    }
}
