//! The dev token issuer: signing keys, the JWKS, `POST /token`, key rotation.
//!
//! At start it generates an RS256 (RSA 2048) and an ES256 (P-256) key pair,
//! or loads them from PKCS#8 PEM files, and publishes their public halves at
//! `/.well-known/jwks.json` with RFC 7638 thumbprints as `kid`s. Rotation
//! replaces both keys with new ones; the old public keys stay in the JWKS for
//! the configured grace period so tokens already issued keep verifying.
//!
//! Tokens are short-lived and carry `iss`, `sub`, `aud`, `tid`, `scope`,
//! `iat`, `nbf` and `exp`. Demo users are `user-{id}` (tenant from the user
//! record); partners are the client ids of [`PARTNERS`].

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use gateway_core::{
    auth::{Es256Key, Es256KeyError, jwk_thumbprint, pem},
    config::{HumanDuration, Secret},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::{
    RsaPrivateKey,
    pkcs1::EncodeRsaPrivateKey,
    pkcs8::{DecodePrivateKey, EncodePublicKey},
    traits::PublicKeyParts,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::data::Catalog;

/// The audiences tokens can be issued for: one per BFF.
pub const AUDIENCES: [&str; 3] = ["bff-web", "bff-mobile", "bff-partner"];

/// Partner clients: client id, tenant, scopes.
pub const PARTNERS: [(&str, &str, &str); 2] = [
    (
        "partner-acme",
        "acme",
        "products:read orders:read orders:write webhooks:manage",
    ),
    (
        "partner-globex",
        "globex",
        "products:read orders:read orders:write webhooks:manage",
    ),
];

/// Scopes of a demo user's token unless the request narrows them.
pub const USER_SCOPES: &str = "products:read orders:read orders:write profile:read";

/// Longest lifetime a token can be asked for.
const MAX_TTL: Duration = Duration::from_secs(3600);

/// Issuer settings (`[issuer]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IssuerConfig {
    /// The `iss` claim of every token (default `https://auth.demo.bff`).
    pub issuer: String,
    /// Default token lifetime (default `15m`, at most 1 hour).
    pub token_ttl: HumanDuration,
    /// `Cache-Control: max-age` of the JWKS (default `5m`).
    pub jwks_max_age: HumanDuration,
    /// How long a rotated-out key stays in the JWKS (default `10m`).
    pub rotation_grace: HumanDuration,
    /// PKCS#8 PEM file of the RSA signing key; generated when absent.
    pub rsa_key_file: Option<PathBuf>,
    /// PKCS#8 PEM file of the P-256 signing key; generated when absent.
    pub ec_key_file: Option<PathBuf>,
    /// Secret for HS256 tokens; HS256 is refused when absent.
    pub hs256_secret: Option<Secret>,
    /// The client secret of every BFF's introspection client (`bff-web`,
    /// `bff-mobile`, `bff-partner`, HTTP Basic at `POST /introspect` and
    /// `POST /revoke`); unset, [`DEV_INTROSPECTION_SECRET`], for local runs
    /// only.
    pub introspection_secret: Option<Secret>,
}

/// The BFFs' introspection client secret when `[issuer]
/// introspection_secret` is unset: for local runs only. (An unset setting
/// rather than a default value: a `Secret` is written masked, so a default
/// one would not survive the configuration's loading.)
pub const DEV_INTROSPECTION_SECRET: &str = "dev-introspection-secret";

impl Default for IssuerConfig {
    fn default() -> Self {
        Self {
            issuer: "https://auth.demo.bff".to_owned(),
            token_ttl: HumanDuration::from_secs(15 * 60),
            jwks_max_age: HumanDuration::from_secs(5 * 60),
            rotation_grace: HumanDuration::from_secs(10 * 60),
            rsa_key_file: None,
            ec_key_file: None,
            hs256_secret: None,
            introspection_secret: None,
        }
    }
}

/// A key could not be generated or loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be read.
    #[error("cannot read key file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key is not a usable key of its type.
    #[error("invalid {what} key: {reason}")]
    Invalid {
        /// `RSA` or `EC`.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// One signing key with its public JWK.
struct SigningKey {
    kid: String,
    algorithm: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
    /// The public key as SubjectPublicKeyInfo DER (RSA keys only), for
    /// testing that a gateway refuses it as an HS256 secret.
    public_der: Option<Vec<u8>>,
}

impl SigningKey {
    fn rsa(private: &RsaPrivateKey) -> Result<Self, KeyError> {
        let invalid = |reason: String| KeyError::Invalid {
            what: "RSA",
            reason,
        };
        let der = private
            .to_pkcs1_der()
            .map_err(|error| invalid(error.to_string()))?;
        let n = URL_SAFE_NO_PAD.encode(private.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(private.e().to_bytes_be());
        // RFC 7638: the thumbprint hashes the required members in lexical order.
        let kid = jwk_thumbprint(&format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#));
        let public_der = private
            .to_public_key()
            .to_public_key_der()
            .map_err(|error| invalid(error.to_string()))?;
        Ok(Self {
            jwk: json!({ "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e }),
            kid,
            algorithm: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            public_der: Some(public_der.into_vec()),
        })
    }

    fn ec(key: Es256Key) -> Self {
        Self {
            jwk: key.jwk().clone(),
            kid: key.kid().to_owned(),
            algorithm: Algorithm::ES256,
            encoding: key.encoding_key().clone(),
            public_der: None,
        }
    }

    fn generate_rsa() -> Result<Self, KeyError> {
        let private = RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).map_err(|error| {
            KeyError::Invalid {
                what: "RSA",
                reason: error.to_string(),
            }
        })?;
        Self::rsa(&private)
    }

    fn generate_ec() -> Result<Self, KeyError> {
        Ok(Self::ec(Es256Key::generate().map_err(ec_error)?))
    }

    fn load_rsa(path: &Path) -> Result<Self, KeyError> {
        let pem = read(path)?;
        let private = RsaPrivateKey::from_pkcs8_pem(&pem).map_err(|error| KeyError::Invalid {
            what: "RSA",
            reason: error.to_string(),
        })?;
        Self::rsa(&private)
    }

    fn load_ec(path: &Path) -> Result<Self, KeyError> {
        Ok(Self::ec(Es256Key::load(path).map_err(ec_error)?))
    }
}

fn read(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn ec_error(error: Es256KeyError) -> KeyError {
    KeyError::Invalid {
        what: "EC",
        reason: error.to_string(),
    }
}

/// The keys in use and those rotated out but still published.
struct KeyRing {
    rsa: SigningKey,
    ec: SigningKey,
    retired: Vec<(SigningKey, Instant)>,
}

impl KeyRing {
    /// The active key for `alg`.
    fn signing_key(&self, alg: &str) -> Result<&SigningKey, TokenError> {
        match alg {
            "RS256" => Ok(&self.rsa),
            "ES256" => Ok(&self.ec),
            other => Err(TokenError::UnsupportedAlgorithm(other.to_owned())),
        }
    }
}

/// A request for a token (`POST /token`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// `user-{id}` or a partner client id.
    pub subject: String,
    /// The BFF the token is for: `bff-web`, `bff-mobile` or `bff-partner`.
    pub audience: String,
    /// `RS256` (default), `ES256`, or `HS256` when a secret is configured.
    #[serde(default)]
    pub alg: Option<String>,
    /// Narrower scopes than the subject's (space separated).
    #[serde(default)]
    pub scope: Option<String>,
    /// Lifetime, at most 1 hour (default from config).
    #[serde(default)]
    pub ttl: Option<HumanDuration>,
    /// `jwt` (default), or `opaque`: a random token that means nothing
    /// without `POST /introspect`.
    #[serde(default)]
    pub format: Option<String>,
}

/// An issued token (the body of the `POST /token` answer).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The JWT.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// Granted scopes.
    pub scope: String,
}

/// A token request that cannot be granted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The subject is neither a demo user nor a partner.
    #[error("unknown subject {0:?}")]
    UnknownSubject(String),
    /// The audience is not one of the BFFs.
    #[error("unknown audience {0:?}; expected one of {AUDIENCES:?}")]
    UnknownAudience(String),
    /// The algorithm is not offered.
    #[error("unsupported alg {0:?}")]
    UnsupportedAlgorithm(String),
    /// Asked for scopes the subject does not have.
    #[error("scope {0:?} is not granted to this subject")]
    ScopeNotGranted(String),
    /// The format is neither `jwt` nor `opaque`.
    #[error("unknown format {0:?}; expected jwt or opaque")]
    UnknownFormat(String),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    tid: &'a str,
    scope: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
}

/// What an opaque token stands for, kept by the issuer until it expires
/// or is revoked.
#[derive(Debug, Clone)]
struct OpaqueGrant {
    subject: String,
    audience: String,
    tenant: String,
    scope: String,
    expires_at: u64,
}

/// The dev token issuer.
pub struct Issuer {
    config: IssuerConfig,
    keys: RwLock<KeyRing>,
    /// When each JWKS fetch arrived.
    jwks_fetches: Mutex<Vec<Instant>>,
    /// The live opaque tokens, by token.
    opaque: Mutex<HashMap<String, OpaqueGrant>>,
    /// `POST /introspect` calls answered, authenticated or not.
    introspections: AtomicU64,
}

/// Why `POST /introspect` or `POST /revoke` was refused.
#[derive(Debug, thiserror::Error)]
pub enum IntrospectionError {
    /// The client is not a BFF, or its secret is wrong.
    #[error("the client credentials are not a BFF's")]
    Unauthorized,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

impl Issuer {
    /// Loads or generates the signing keys.
    pub fn new(config: IssuerConfig) -> Result<Self, KeyError> {
        let rsa = match &config.rsa_key_file {
            Some(path) => SigningKey::load_rsa(path)?,
            None => SigningKey::generate_rsa()?,
        };
        let ec = match &config.ec_key_file {
            Some(path) => SigningKey::load_ec(path)?,
            None => SigningKey::generate_ec()?,
        };
        Ok(Self {
            config,
            keys: RwLock::new(KeyRing {
                rsa,
                ec,
                retired: Vec::new(),
            }),
            jwks_fetches: Mutex::new(Vec::new()),
            opaque: Mutex::new(HashMap::new()),
            introspections: AtomicU64::new(0),
        })
    }

    /// How many introspections were asked for.
    pub fn introspections(&self) -> u64 {
        self.introspections.load(Ordering::Relaxed)
    }

    /// Checks a BFF's introspection client credentials.
    fn client(&self, client_id: &str, secret: &str) -> Result<(), IntrospectionError> {
        let known = AUDIENCES.contains(&client_id);
        // Their digests are compared, so the time a comparison takes tells
        // nothing about the secret.
        let digest = |text: &[u8]| ring::digest::digest(&ring::digest::SHA256, text);
        let expected = self
            .config
            .introspection_secret
            .as_ref()
            .map_or(DEV_INTROSPECTION_SECRET, Secret::expose);
        let matches = digest(expected.as_bytes()).as_ref() == digest(secret.as_bytes()).as_ref();
        if known && matches {
            Ok(())
        } else {
            Err(IntrospectionError::Unauthorized)
        }
    }

    /// RFC 7662: what `token` stands for, asked by BFF `client_id`
    /// authenticated with `secret`. An unknown, expired or revoked token
    /// is `{"active": false}` and nothing more.
    pub fn introspect(
        &self,
        client_id: &str,
        secret: &str,
        token: &str,
    ) -> Result<Value, IntrospectionError> {
        self.introspections.fetch_add(1, Ordering::Relaxed);
        self.client(client_id, secret)?;
        let grants = self
            .opaque
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = now();
        Ok(
            match grants.get(token).filter(|grant| grant.expires_at > now) {
                None => json!({ "active": false }),
                Some(grant) => json!({
                    "active": true,
                    "iss": self.config.issuer,
                    "sub": grant.subject,
                    "aud": grant.audience,
                    "tid": grant.tenant,
                    "scope": grant.scope,
                    "client_id": grant.subject,
                    "token_type": "Bearer",
                    "exp": grant.expires_at,
                }),
            },
        )
    }

    /// RFC 7009: `token` means nothing from now on (unknown tokens too:
    /// the answer does not tell whether it existed).
    pub fn revoke(
        &self,
        client_id: &str,
        secret: &str,
        token: &str,
    ) -> Result<(), IntrospectionError> {
        self.client(client_id, secret)?;
        self.opaque
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(token);
        Ok(())
    }

    /// The `iss` of issued tokens.
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// `Cache-Control: max-age` of the JWKS.
    pub fn jwks_max_age(&self) -> Duration {
        self.config.jwks_max_age.get()
    }

    /// The public keys, counting the fetch.
    pub fn jwks(&self) -> Value {
        self.jwks_fetches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Instant::now());
        let mut ring = self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        ring.retired.retain(|(_, until)| *until > now);
        let mut keys = vec![ring.rsa.jwk.clone(), ring.ec.jwk.clone()];
        keys.extend(ring.retired.iter().map(|(key, _)| key.jwk.clone()));
        json!({ "keys": keys })
    }

    /// How many times the JWKS has been fetched.
    pub fn jwks_fetches(&self) -> u64 {
        self.jwks_fetch_times().len() as u64
    }

    /// When each JWKS fetch arrived, oldest first.
    pub fn jwks_fetch_times(&self) -> Vec<Instant> {
        self.jwks_fetches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The `kid`s of the signing keys in use: RSA, then EC.
    pub fn active_kids(&self) -> (String, String) {
        let ring = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (ring.rsa.kid.clone(), ring.ec.kid.clone())
    }

    /// Replaces both signing keys; the old ones stay published for the grace period.
    pub fn rotate(&self) -> Result<(String, String), KeyError> {
        let (rsa, ec) = (SigningKey::generate_rsa()?, SigningKey::generate_ec()?);
        let mut ring = self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let until = Instant::now() + self.config.rotation_grace.get();
        let old_rsa = std::mem::replace(&mut ring.rsa, rsa);
        let old_ec = std::mem::replace(&mut ring.ec, ec);
        ring.retired.push((old_rsa, until));
        ring.retired.push((old_ec, until));
        Ok((ring.rsa.kid.clone(), ring.ec.kid.clone()))
    }

    /// Replaces both signing keys' material but keeps their `kid`s, and
    /// publishes only the new material: what an issuer that reuses a `kid`
    /// does, for testing that a gateway treats it as a new key.
    pub fn rekey_keeping_kids(&self) -> Result<(), KeyError> {
        let (mut rsa, mut ec) = (SigningKey::generate_rsa()?, SigningKey::generate_ec()?);
        let mut ring = self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (new, old) in [(&mut rsa, &ring.rsa), (&mut ec, &ring.ec)] {
            new.kid.clone_from(&old.kid);
            new.jwk["kid"] = Value::from(old.kid.clone());
        }
        ring.rsa = rsa;
        ring.ec = ec;
        Ok(())
    }

    /// The RSA signing key's public half: SubjectPublicKeyInfo DER and PEM.
    pub fn rsa_public_key(&self) -> (Vec<u8>, String) {
        let ring = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let der = ring.rsa.public_der.clone().unwrap_or_default();
        let pem = pem("PUBLIC KEY", &der);
        (der, pem)
    }

    /// Signs any header and claims with the active key of `alg` (`RS256` or
    /// `ES256`), for testing what a gateway accepts. The header gets `alg`
    /// and the key's `kid` unless `header` sets them (a `null` removes one).
    pub fn sign_raw(
        &self,
        alg: &str,
        header: &Value,
        claims: &Value,
    ) -> Result<String, TokenError> {
        let ring = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = ring.signing_key(alg)?;
        let mut full = json!({ "alg": alg, "kid": key.kid });
        if let (Some(full), Some(extra)) = (full.as_object_mut(), header.as_object()) {
            for (name, value) in extra {
                if value.is_null() {
                    full.remove(name);
                } else {
                    full.insert(name.clone(), value.clone());
                }
            }
        }
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(full.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &key.encoding, key.algorithm)?;
        Ok(format!("{message}.{signature}"))
    }

    /// Issues a token for `request`, looking demo users up in `catalog`.
    pub fn issue(
        &self,
        request: &TokenRequest,
        catalog: &Catalog,
    ) -> Result<TokenResponse, TokenError> {
        if !AUDIENCES.contains(&request.audience.as_str()) {
            return Err(TokenError::UnknownAudience(request.audience.clone()));
        }
        let (tenant, granted) = self.subject(&request.subject, catalog)?;
        let scope = match &request.scope {
            Some(asked) => {
                if let Some(missing) = asked
                    .split_whitespace()
                    .find(|scope| !granted.split_whitespace().any(|g| g == *scope))
                {
                    return Err(TokenError::ScopeNotGranted(missing.to_owned()));
                }
                asked.split_whitespace().collect::<Vec<_>>().join(" ")
            }
            None => granted.to_owned(),
        };
        let ttl = request
            .ttl
            .map_or(self.config.token_ttl.get(), HumanDuration::get)
            .min(MAX_TTL);
        let iat = now();
        match request.format.as_deref().unwrap_or("jwt") {
            "jwt" => {}
            "opaque" => {
                let access_token =
                    format!("opq_{}", URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()));
                let mut grants = self
                    .opaque
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                grants.retain(|_, grant| grant.expires_at > iat);
                grants.insert(
                    access_token.clone(),
                    OpaqueGrant {
                        subject: request.subject.clone(),
                        audience: request.audience.clone(),
                        tenant,
                        scope: scope.clone(),
                        expires_at: iat + ttl.as_secs(),
                    },
                );
                return Ok(TokenResponse {
                    access_token,
                    token_type: "Bearer".to_owned(),
                    expires_in: ttl.as_secs(),
                    scope,
                });
            }
            other => return Err(TokenError::UnknownFormat(other.to_owned())),
        }
        let claims = Claims {
            iss: &self.config.issuer,
            sub: &request.subject,
            aud: &request.audience,
            tid: &tenant,
            scope: &scope,
            iat,
            nbf: iat,
            exp: iat + ttl.as_secs(),
        };
        let access_token = self.sign(request.alg.as_deref().unwrap_or("RS256"), &claims)?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer".to_owned(),
            expires_in: ttl.as_secs(),
            scope,
        })
    }

    fn subject<'a>(
        &self,
        subject: &str,
        catalog: &Catalog,
    ) -> Result<(String, &'a str), TokenError> {
        if let Some((_, tenant, scopes)) = PARTNERS.iter().find(|(client, _, _)| *client == subject)
        {
            return Ok(((*tenant).to_owned(), scopes));
        }
        subject
            .strip_prefix("user-")
            .and_then(|id| id.parse::<u64>().ok())
            .and_then(|id| catalog.user(id))
            .map(|user| (user.tenant, USER_SCOPES))
            .ok_or_else(|| TokenError::UnknownSubject(subject.to_owned()))
    }

    fn sign(&self, alg: &str, claims: &Claims<'_>) -> Result<String, TokenError> {
        if alg == "HS256" {
            let secret = self
                .config
                .hs256_secret
                .as_ref()
                .ok_or_else(|| TokenError::UnsupportedAlgorithm(alg.to_owned()))?;
            let header = Header::new(Algorithm::HS256);
            return Ok(jsonwebtoken::encode(
                &header,
                claims,
                &EncodingKey::from_secret(secret.expose().as_bytes()),
            )?);
        }
        let ring = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = ring.signing_key(alg)?;
        let mut header = Header::new(key.algorithm);
        header.kid = Some(key.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &key.encoding)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::DataConfig;

    fn request(subject: &str, audience: &str, alg: &str) -> TokenRequest {
        TokenRequest {
            subject: subject.to_owned(),
            audience: audience.to_owned(),
            alg: Some(alg.to_owned()),
            scope: None,
            ttl: None,
            format: None,
        }
    }

    #[test]
    fn the_dev_introspection_secret_survives_the_configurations_loading() {
        // The binary's configuration is the defaults written and read back
        // (then the file and the environment): a default secret would come
        // back masked.
        let loaded: crate::DemoConfig =
            gateway_core::config::load(None).expect("the defaults load");
        let issuer = Issuer::new(loaded.issuer).expect("keys");
        assert!(
            issuer
                .introspect("bff-web", DEV_INTROSPECTION_SECRET, "opq_none")
                .is_ok()
        );
        assert!(issuer.introspect("bff-web", "***", "opq_none").is_err());
    }

    #[test]
    fn opaque_tokens_are_introspected_by_bffs_and_revoked() {
        let catalog = Catalog::new(DataConfig::default());
        let issuer = Issuer::new(IssuerConfig::default()).expect("keys");
        let token = issuer
            .issue(
                &TokenRequest {
                    format: Some("opaque".to_owned()),
                    ..request("partner-acme", "bff-partner", "RS256")
                },
                &catalog,
            )
            .expect("issued")
            .access_token;
        assert!(
            token.starts_with("opq_") && token.split('.').count() == 1,
            "{token}"
        );
        let secret = "dev-introspection-secret";
        let answer = issuer
            .introspect("bff-partner", secret, &token)
            .expect("a BFF");
        assert_eq!(answer["active"], true);
        assert_eq!(answer["sub"], "partner-acme");
        assert_eq!(answer["tid"], "acme");
        assert_eq!(answer["aud"], "bff-partner");
        assert!(answer["exp"].as_u64().is_some_and(|exp| exp > now()));
        assert!(matches!(
            issuer.introspect("bff-partner", "guess", &token),
            Err(IntrospectionError::Unauthorized)
        ));
        assert!(matches!(
            issuer.introspect("someone", secret, &token),
            Err(IntrospectionError::Unauthorized)
        ));
        assert_eq!(
            issuer
                .introspect("bff-web", secret, "opq_nothing")
                .expect("a BFF"),
            json!({"active": false})
        );
        issuer.revoke("bff-web", secret, &token).expect("a BFF");
        assert_eq!(
            issuer
                .introspect("bff-partner", secret, &token)
                .expect("a BFF"),
            json!({"active": false})
        );
        assert_eq!(issuer.introspections(), 5);
    }

    fn decode_segment(token: &str, index: usize) -> Value {
        let segment = token.split('.').nth(index).expect("segment");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).expect("base64url")).expect("json")
    }

    #[test]
    fn issues_tokens_signed_by_a_published_key() {
        let issuer = Issuer::new(IssuerConfig::default()).expect("keys");
        let catalog = Catalog::new(DataConfig::default());
        let jwks = issuer.jwks();
        for alg in ["RS256", "ES256"] {
            let token = issuer
                .issue(&request("user-1", "bff-web", alg), &catalog)
                .expect("issued");
            let header = decode_segment(&token.access_token, 0);
            assert_eq!(header["alg"], alg);
            let kid = header["kid"].as_str().expect("kid");
            assert!(
                jwks["keys"]
                    .as_array()
                    .expect("keys")
                    .iter()
                    .any(|key| key["kid"] == kid && key["alg"] == alg)
            );
            let claims = decode_segment(&token.access_token, 1);
            assert_eq!(claims["sub"], "user-1");
            assert_eq!(claims["aud"], "bff-web");
            assert_eq!(claims["tid"], catalog.user(1).expect("user").tenant);
            assert_eq!(claims["iss"], "https://auth.demo.bff");
        }
    }

    #[test]
    fn partners_get_their_tenant_and_scopes() {
        let issuer = Issuer::new(IssuerConfig::default()).expect("keys");
        let catalog = Catalog::new(DataConfig::default());
        let token = issuer
            .issue(&request("partner-acme", "bff-partner", "ES256"), &catalog)
            .expect("issued");
        let claims = decode_segment(&token.access_token, 1);
        assert_eq!(claims["tid"], "acme");
        assert_eq!(
            claims["scope"],
            "products:read orders:read orders:write webhooks:manage"
        );
    }

    #[test]
    fn refuses_unknown_subjects_audiences_scopes_and_algorithms() {
        let issuer = Issuer::new(IssuerConfig::default()).expect("keys");
        let catalog = Catalog::new(DataConfig::default());
        assert!(matches!(
            issuer.issue(&request("mallory", "bff-web", "RS256"), &catalog),
            Err(TokenError::UnknownSubject(_))
        ));
        assert!(matches!(
            issuer.issue(&request("user-1", "bff-admin", "RS256"), &catalog),
            Err(TokenError::UnknownAudience(_))
        ));
        assert!(matches!(
            issuer.issue(&request("user-1", "bff-web", "HS256"), &catalog),
            Err(TokenError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            issuer.issue(&request("user-1", "bff-web", "none"), &catalog),
            Err(TokenError::UnsupportedAlgorithm(_))
        ));
        let greedy = TokenRequest {
            scope: Some("admin".to_owned()),
            ..request("partner-globex", "bff-partner", "RS256")
        };
        assert!(matches!(
            issuer.issue(&greedy, &catalog),
            Err(TokenError::ScopeNotGranted(_))
        ));
    }

    #[test]
    fn raw_tokens_carry_any_header_and_claims() {
        let issuer = Issuer::new(IssuerConfig::default()).expect("keys");
        let token = issuer
            .sign_raw(
                "ES256",
                &json!({ "kid": null, "crit": ["x"] }),
                &json!({ "sub": "x" }),
            )
            .expect("signed");
        let header = decode_segment(&token, 0);
        assert_eq!(header, json!({ "alg": "ES256", "crit": ["x"] }));
        assert_eq!(decode_segment(&token, 1), json!({ "sub": "x" }));
        let (der, pem) = issuer.rsa_public_key();
        assert!(der.len() > 256);
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    }

    #[test]
    fn rotation_keeps_old_keys_published() {
        let issuer = Issuer::new(IssuerConfig::default()).expect("keys");
        let (old_rsa, old_ec) = issuer.active_kids();
        let (new_rsa, new_ec) = issuer.rotate().expect("rotated");
        assert_ne!(old_rsa, new_rsa);
        assert_ne!(old_ec, new_ec);
        let jwks = issuer.jwks();
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .filter_map(|key| key["kid"].as_str())
            .collect();
        for kid in [&old_rsa, &old_ec, &new_rsa, &new_ec] {
            assert!(kids.contains(&kid.as_str()), "{kid} in {kids:?}");
        }
        assert_eq!(issuer.jwks_fetches(), 1);
    }
}
