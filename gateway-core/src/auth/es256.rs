//! ES256 (ECDSA P-256) signing keys with their public JWK.
//!
//! The gateway signs its internal tokens with one ([`super::internal_token`])
//! and the demo issuer signs ES256 tokens with another, so the key handling
//! lives here once: ring checks or generates the PKCS#8 key, jsonwebtoken
//! signs with it, and the JWK is published with its RFC 7638 thumbprint as
//! the `kid`, so the same key always has the same `kid` on every instance.

use std::path::{Path, PathBuf};

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use jsonwebtoken::{EncodingKey, Header};
use ring::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair},
};
use rustls_pki_types::{PrivatePkcs8KeyDer, pem::PemObject};
use serde::Serialize;
use serde_json::{Value, json};

/// An ES256 key could not be read, parsed or generated.
#[derive(Debug, thiserror::Error)]
pub enum Es256KeyError {
    /// The file is missing, unreadable, or holds no PEM `PRIVATE KEY`.
    #[error("{path}: not a readable PEM PKCS#8 private key ({reason})")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The PKCS#8 document is not a P-256 private key.
    #[error("not a P-256 (ES256) private key: {0}")]
    NotP256(String),
    /// The system's random source failed.
    #[error("cannot generate a P-256 key: the random source failed")]
    Generate,
}

/// A P-256 private key, ready to sign, with its public JWK.
pub struct Es256Key {
    pkcs8: Vec<u8>,
    kid: String,
    jwk: Value,
    encoding: EncodingKey,
}

impl std::fmt::Debug for Es256Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Es256Key")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Es256Key {
    /// A new random key.
    pub fn generate() -> Result<Self, Es256KeyError> {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| Es256KeyError::Generate)?;
        Self::from_pkcs8(pkcs8.as_ref())
    }

    /// The key in a PKCS#8 DER document.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, Es256KeyError> {
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &SystemRandom::new(),
        )
        .map_err(|error| Es256KeyError::NotP256(error.to_string()))?;
        // An uncompressed P-256 point: 0x04, then x and y, 32 bytes each.
        let point = pair.public_key().as_ref();
        let (x, y) = (
            URL_SAFE_NO_PAD.encode(&point[1..33]),
            URL_SAFE_NO_PAD.encode(&point[33..65]),
        );
        let kid = jwk_thumbprint(&format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#
        ));
        Ok(Self {
            jwk: json!({ "kty": "EC", "use": "sig", "alg": "ES256", "crv": "P-256", "kid": kid, "x": x, "y": y }),
            kid,
            encoding: EncodingKey::from_ec_der(pkcs8),
            pkcs8: pkcs8.to_vec(),
        })
    }

    /// The key in the PEM file at `path` (`-----BEGIN PRIVATE KEY-----`,
    /// as `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` writes it).
    pub fn load(path: &Path) -> Result<Self, Es256KeyError> {
        let der = PrivatePkcs8KeyDer::from_pem_file(path).map_err(|error| Es256KeyError::File {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })?;
        Self::from_pkcs8(der.secret_pkcs8_der())
    }

    /// The key as a PEM PKCS#8 document, as [`Self::load`] reads it.
    pub fn to_pkcs8_pem(&self) -> String {
        pem("PRIVATE KEY", &self.pkcs8)
    }

    /// The `kid`: the RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK (`kty`, `crv`, `x`, `y`, `alg`, `use`, `kid`).
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// The key as jsonwebtoken signs with it.
    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    /// `claims` as a compact JWT: `alg` ES256, `typ` JWT and this key's `kid`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
    }
}

/// The RFC 7638 thumbprint of a JWK given in its canonical form (the
/// required members only, in lexical order, without whitespace).
pub fn jwk_thumbprint(canonical_jwk: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        canonical_jwk.as_bytes(),
    ))
}

/// `der` as a PEM document with `label` (`PRIVATE KEY`, `PUBLIC KEY`),
/// base64 in lines of 64 characters.
pub fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_written_as_pem_loads_back_with_the_same_kid() {
        let key = Es256Key::generate().expect("a key");
        let path = std::env::temp_dir().join(format!("es256-{}.pem", std::process::id()));
        std::fs::write(&path, key.to_pkcs8_pem()).expect("written");
        let loaded = Es256Key::load(&path).expect("loads");
        std::fs::remove_file(&path).expect("removed");
        assert_eq!(loaded.kid(), key.kid());
        assert_eq!(loaded.jwk(), key.jwk());
        assert_eq!(key.jwk()["kid"], key.kid());
        assert_eq!(key.kid().len(), 43, "a base64url SHA-256");
    }

    #[test]
    fn what_is_not_a_p256_pkcs8_key_is_refused_with_its_reason() {
        let path = std::env::temp_dir().join(format!("not-es256-{}.pem", std::process::id()));
        std::fs::write(
            &path,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .expect("written");
        let error = Es256Key::load(&path).expect_err("not a key").to_string();
        std::fs::remove_file(&path).expect("removed");
        assert!(
            error.starts_with("not a P-256 (ES256) private key"),
            "{error}"
        );
        let missing = Es256Key::load(Path::new("/nonexistent/key.pem"))
            .expect_err("no file")
            .to_string();
        assert!(
            missing.starts_with("/nonexistent/key.pem: not a readable PEM PKCS#8 private key"),
            "{missing}"
        );
    }
}
