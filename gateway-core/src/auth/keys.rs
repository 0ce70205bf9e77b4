//! Verification keys, each pinned to one algorithm.
//!
//! A key's algorithm comes from the key (the JWK's `alg`, else its `kty` and
//! `crv`; the configured secret is HS256), never from the token: a token
//! whose `alg` differs from its key's is rejected before any signature math,
//! which closes the classic algorithm-confusion attacks (an RS256 public key
//! used as an HS256 secret, `alg: none`).

use std::{collections::HashMap, sync::Arc};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::DecodingKey;
use serde::Deserialize;

use super::{
    AuthError,
    token::{Algorithm, UnverifiedToken},
};

/// Smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// A public key (or the HMAC secret) and the one algorithm it verifies.
pub(crate) struct VerificationKey {
    algorithm: Algorithm,
    key: DecodingKey,
    /// The public components as published (`n.e`, `x.y`), to tell a key
    /// whose material changed under the same `kid`; empty for the secret.
    material: String,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl VerificationKey {
    /// The HS256 key of a shared secret.
    pub(crate) fn hs256(secret: &[u8]) -> Self {
        Self {
            algorithm: Algorithm::Hs256,
            key: DecodingKey::from_secret(secret),
            material: String::new(),
        }
    }

    /// Whether `other` is the same public key: the same algorithm and components.
    pub(crate) fn same_material(&self, other: &Self) -> bool {
        self.algorithm == other.algorithm && self.material == other.material
    }

    /// Checks `token`'s signature with this key, refusing any algorithm but the key's own.
    pub(crate) fn verify(&self, token: &UnverifiedToken<'_>) -> Result<(), AuthError> {
        if token.algorithm != self.algorithm {
            return Err(AuthError::AlgorithmRejected);
        }
        match jsonwebtoken::crypto::verify(
            token.signature,
            token.signing_input.as_bytes(),
            &self.key,
            self.algorithm.to_jsonwebtoken(),
        ) {
            Ok(true) => Ok(()),
            Ok(false) | Err(_) => Err(AuthError::BadSignature),
        }
    }
}

#[derive(Debug, Deserialize)]
struct JwkSet {
    keys: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

/// Why a JWK was left out of the key set.
fn unusable(kid: &str, reason: &str) -> Option<(String, Arc<VerificationKey>)> {
    tracing::debug!(kid, reason, "JWKS key skipped");
    None
}

impl Jwk {
    /// The key, when it is a signing key this gateway can use.
    fn into_key(self) -> Option<(String, Arc<VerificationKey>)> {
        let kid = self.kid?;
        if self.usage.as_deref().is_some_and(|usage| usage != "sig") {
            return unusable(&kid, "not a signing key");
        }
        let (algorithm, key, material) = match (self.kty.as_str(), self.alg.as_deref()) {
            ("RSA", None | Some("RS256")) => {
                let (Some(n), Some(e)) = (self.n, self.e) else {
                    return unusable(&kid, "RSA key without n or e");
                };
                let modulus_len = URL_SAFE_NO_PAD
                    .decode(&n)
                    .map_or(0, |modulus| modulus.len());
                if modulus_len < MIN_RSA_MODULUS_BYTES {
                    return unusable(&kid, "RSA modulus shorter than 2048 bits");
                }
                (
                    Algorithm::Rs256,
                    DecodingKey::from_rsa_components(&n, &e).ok()?,
                    format!("{n}.{e}"),
                )
            }
            ("EC", None | Some("ES256")) if self.crv.as_deref() == Some("P-256") => {
                let (Some(x), Some(y)) = (self.x, self.y) else {
                    return unusable(&kid, "EC key without x or y");
                };
                let coordinate_ok = |c: &str| {
                    URL_SAFE_NO_PAD
                        .decode(c)
                        .is_ok_and(|bytes| bytes.len() == 32)
                };
                if !coordinate_ok(&x) || !coordinate_ok(&y) {
                    return unusable(&kid, "EC coordinates are not 32 bytes");
                }
                (
                    Algorithm::Es256,
                    DecodingKey::from_ec_components(&x, &y).ok()?,
                    format!("{x}.{y}"),
                )
            }
            // Symmetric (`oct`) keys are never taken from a JWKS, and other
            // algorithms are not accepted.
            _ => return unusable(&kid, "unsupported key type or algorithm"),
        };
        Some((
            kid,
            Arc::new(VerificationKey {
                algorithm,
                key,
                material,
            }),
        ))
    }
}

/// Parses a JWKS document into its usable keys by `kid`. Keys this gateway
/// cannot use are skipped; a document that is not a JWKS is an error.
pub(crate) fn parse_jwks(
    body: &[u8],
) -> Result<HashMap<String, Arc<VerificationKey>>, serde_json::Error> {
    let set: JwkSet = serde_json::from_slice(body)?;
    let mut keys = HashMap::with_capacity(set.keys.len());
    for value in set.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        if let Some((kid, key)) = jwk.into_key() {
            keys.entry(kid).or_insert(key);
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn usable_keys_are_pinned_and_the_rest_skipped() {
        let document = json!({ "keys": [
            { "kty": "RSA", "kid": "rsa", "alg": "RS256", "use": "sig", "n": b64(&[0xC5; 256]), "e": "AQAB" },
            { "kty": "RSA", "kid": "rsa-no-alg", "n": b64(&[0xC5; 256]), "e": "AQAB" },
            { "kty": "EC", "kid": "ec", "crv": "P-256", "x": b64(&[1; 32]), "y": b64(&[2; 32]) },
            { "kty": "RSA", "kid": "short", "n": b64(&[0xC5; 128]), "e": "AQAB" },
            { "kty": "RSA", "kid": "ps", "alg": "PS256", "n": b64(&[0xC5; 256]), "e": "AQAB" },
            { "kty": "RSA", "kid": "enc", "use": "enc", "n": b64(&[0xC5; 256]), "e": "AQAB" },
            { "kty": "EC", "kid": "p384", "crv": "P-384", "x": b64(&[1; 48]), "y": b64(&[2; 48]) },
            { "kty": "oct", "kid": "secret", "k": "c2VjcmV0" },
            { "kty": "RSA", "n": b64(&[0xC5; 256]), "e": "AQAB" },
            "not an object"
        ]});
        let keys = parse_jwks(document.to_string().as_bytes()).expect("a JWKS");
        let mut kids: Vec<&str> = keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        assert_eq!(kids, vec!["ec", "rsa", "rsa-no-alg"]);
        assert_eq!(keys["rsa"].algorithm, Algorithm::Rs256);
        assert_eq!(keys["rsa-no-alg"].algorithm, Algorithm::Rs256);
        assert_eq!(keys["ec"].algorithm, Algorithm::Es256);
    }

    #[test]
    fn new_material_under_the_same_kid_is_a_different_key() {
        let set = |n: &[u8]| {
            let document =
                json!({ "keys": [{ "kty": "RSA", "kid": "k", "n": b64(n), "e": "AQAB" }] });
            parse_jwks(document.to_string().as_bytes()).expect("a JWKS")
        };
        let (old, again, rotated) = (set(&[0xC5; 256]), set(&[0xC5; 256]), set(&[0xC7; 256]));
        assert!(old["k"].same_material(&again["k"]));
        assert!(!old["k"].same_material(&rotated["k"]));
    }

    #[test]
    fn a_document_that_is_not_a_jwks_is_an_error() {
        assert!(parse_jwks(b"{}").is_err());
        assert!(parse_jwks(b"<html>").is_err());
    }
}
