//! JWT verification: cheap checks, then the key, then the signature.
//!
//! The order matters. Form, header and claims (expiry, issuer, audience) are
//! checked first, without any key, so a token that fails them never causes a
//! JWKS fetch. Then the key is chosen by `kid` alone and must be pinned to
//! the token's `alg`; only then is the signature checked. A verified token is
//! remembered in the [`TokenCache`] so the next request with the same token
//! costs a hash lookup and a clock check.

use std::{
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use shared_schema::{AuthMethod, Identity};

use crate::identity::VerifiedIdentity;

use super::{
    AuthError,
    cache::TokenCache,
    jwks::Jwks,
    keys::VerificationKey,
    token::{ClaimPolicy, UnverifiedToken},
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
            .map(|(identity, claims)| {
                cache.insert(token, identity.clone(), claims.validity, now, epoch);
                identity
            });
        (result, CacheOutcome::Miss)
    }

    async fn verify_uncached(
        &self,
        token: &str,
        now: u64,
    ) -> Result<(Arc<VerifiedIdentity>, super::token::Claims), AuthError> {
        let parsed = UnverifiedToken::parse(token, self.max_token_bytes)?;
        let claims = parsed.claims(&self.policy(), now)?;
        let key = self.key_for(&parsed).await?;
        key.verify(&parsed)?;
        let identity = Arc::new(VerifiedIdentity::new(Identity {
            subject: claims.subject.clone(),
            tenant: claims.tenant.clone(),
            scopes: claims.scopes.clone(),
            client: claims.client.clone(),
            auth_method: AuthMethod::Jwt,
        }));
        Ok((identity, claims))
    }

    /// The key named by the token's `kid`: the HS256 secret when it answers
    /// to that `kid` (or to none), else a JWKS key.
    async fn key_for(
        &self,
        token: &UnverifiedToken<'_>,
    ) -> Result<Arc<VerificationKey>, AuthError> {
        let secret = self
            .hs256
            .as_ref()
            .filter(|secret| secret.kid.as_deref() == token.kid.as_deref());
        if let Some(secret) = secret {
            return Ok(secret.key.clone());
        }
        match (&token.kid, &self.jwks) {
            (Some(kid), Some(jwks)) => jwks.key(kid).await,
            _ => Err(AuthError::UnknownKey),
        }
    }
}
