//! JWT verification: cheap checks, then the key, then the signature.
//!
//! The order matters. Form, header and claims (expiry, issuer, audience) are
//! checked first, without any key, so a token that fails them never causes a
//! JWKS fetch. Then the key is chosen by `kid` alone and must be pinned to
//! the token's `alg`; only then is the signature checked. A wrong issuer or
//! audience is reported as such only when the signature verifies with a key
//! already loaded: before that, the caller learns nothing of the configuration. A verified token is
//! remembered in the [`TokenCache`] so the next request with the same token
//! costs a hash lookup and a clock check.

use std::{
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use crate::identity::VerifiedIdentity;

use super::{
    AuthError,
    cache::TokenCache,
    jwks::Jwks,
    keys::VerificationKey,
    token::{Algorithm, ClaimPolicy, Signer, UnverifiedToken, Validity},
};

/// The HS256 secret and the `kid` it answers to (`None`: tokens without a `kid`).
#[derive(Debug)]
pub(crate) struct SharedSecret {
    pub(crate) kid: Option<String>,
    pub(crate) key: Arc<VerificationKey>,
}

/// Verifies JWTs for one audience.
#[derive(Debug)]
pub(crate) struct JwtVerifier {
    pub(crate) issuer: String,
    pub(crate) audience: String,
    pub(crate) leeway: u64,
    pub(crate) signer: Signer,
    pub(crate) max_token_bytes: usize,
    pub(crate) hs256: Option<SharedSecret>,
    pub(crate) jwks: Option<Arc<Jwks>>,
    pub(crate) cache: Option<TokenCache>,
}

/// Whether a verification was answered from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheOutcome {
    /// Answered from the cache.
    Hit,
    /// Verified in full.
    Miss,
    /// No cache configured.
    Disabled,
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

impl JwtVerifier {
    fn policy(&self) -> ClaimPolicy<'_> {
        ClaimPolicy {
            issuer: &self.issuer,
            audience: &self.audience,
            leeway: self.leeway,
            signer: self.signer,
        }
    }

    fn epoch(&self) -> u64 {
        self.jwks.as_ref().map_or(0, |jwks| jwks.removal_epoch())
    }

    /// Verifies `token` at the current time.
    pub(crate) async fn verify(
        &self,
        token: &str,
    ) -> (Result<Arc<VerifiedIdentity>, AuthError>, CacheOutcome) {
        let now = unix_now();
        let Some(cache) = &self.cache else {
            return (
                self.verify_uncached(token, now)
                    .await
                    .map(|(identity, _)| identity),
                CacheOutcome::Disabled,
            );
        };
        let epoch = self.epoch();
        if let Some(identity) = cache.get(token, now, self.leeway, epoch) {
            return (Ok(identity), CacheOutcome::Hit);
        }
        let result = self
            .verify_uncached(token, now)
            .await
            .map(|(identity, validity)| {
                cache.insert(token, identity.clone(), validity, now, epoch);
                identity
            });
        (result, CacheOutcome::Miss)
    }

    async fn verify_uncached(
        &self,
        token: &str,
        now: u64,
    ) -> Result<(Arc<VerifiedIdentity>, Validity), AuthError> {
        if self.hs256.is_none() && self.jwks.is_none() {
            return Err(AuthError::MethodNotAccepted("bearer tokens"));
        }
        let parsed = UnverifiedToken::parse(token, self.max_token_bytes)?;
        let claims = match parsed.claims(&self.policy(), now) {
            Ok(claims) => claims,
            Err(error @ (AuthError::WrongIssuer | AuthError::WrongAudience)) => {
                // Told only to a caller whose signature verifies: unsigned
                // probes must not find out the configured issuer or audience.
                // Keys already loaded only, so this fetches nothing.
                let key = self.key_for(&parsed, KeySource::Loaded).await?;
                key.verify(&parsed)?;
                return Err(error);
            }
            Err(error) => return Err(error),
        };
        let key = self.key_for(&parsed, KeySource::MayFetch).await?;
        key.verify(&parsed)?;
        Ok((Arc::new(claims.identity), claims.validity))
    }

    /// The key named by the token's `kid`: the HS256 secret when it answers
    /// to that `kid` (or to none), else a JWKS key.
    async fn key_for(
        &self,
        token: &UnverifiedToken<'_>,
        source: KeySource,
    ) -> Result<Arc<VerificationKey>, AuthError> {
        let secret = self
            .hs256
            .as_ref()
            .filter(|secret| secret.kid.as_deref() == token.kid.as_deref());
        if let Some(secret) = secret {
            return Ok(secret.key.clone());
        }
        let Some(jwks) = &self.jwks else {
            return Err(match (token.algorithm, &self.hs256) {
                (Algorithm::Hs256, Some(_)) => AuthError::UnknownKey,
                (Algorithm::Hs256, None) => AuthError::MethodNotAccepted("HS256 tokens"),
                (Algorithm::Rs256 | Algorithm::Es256, _) => {
                    AuthError::MethodNotAccepted("RS256 and ES256 tokens")
                }
            });
        };
        match (&token.kid, source) {
            (Some(kid), KeySource::MayFetch) => jwks.key(kid).await,
            (Some(kid), KeySource::Loaded) => jwks.loaded_key(kid).await,
            (None, _) => Err(AuthError::UnknownKey),
        }
    }
}

/// Whether looking a key up may fetch the JWKS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeySource {
    /// An unknown `kid` triggers a (rate-limited) refetch.
    MayFetch,
    /// Only keys already loaded and fresh.
    Loaded,
}
