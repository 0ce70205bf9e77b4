//! The verified caller, and the headers that carry it to services.
//!
//! Authentication turns a credential into a [`VerifiedIdentity`]: the
//! [`Identity`] itself plus the `X-Auth-*` headers every downstream call
//! sends, rendered once when the credential is verified. The verified-token
//! cache and the API-key table hold it behind an `Arc`, so the thousands of
//! requests made with one token share one rendering instead of formatting
//! the headers again for each downstream call.
//!
//! Only the gateway writes these headers: the server strips every inbound
//! header starting with [`IDENTITY_HEADER_PREFIX`] before anything else sees
//! the request. A [`VerifiedIdentity`] exists only for an identity every
//! header can carry (a non-empty tenant, header-safe subject and scopes), so
//! a service never receives a request without its verified tenant: a token
//! whose claims break these rules is refused, and an API key that breaks
//! them is a configuration error.

use std::ops::Deref;

use http::{HeaderName, HeaderValue};
use shared_schema::Identity;

/// Every identity header starts with this; inbound ones are always removed.
pub const IDENTITY_HEADER_PREFIX: &str = "x-auth-";
/// Header carrying the verified subject to services.
pub const AUTH_SUBJECT: HeaderName = HeaderName::from_static("x-auth-subject");
/// Header carrying the verified tenant to services.
pub const AUTH_TENANT: HeaderName = HeaderName::from_static("x-auth-tenant");
/// Header carrying the granted scopes (space separated) to services.
pub const AUTH_SCOPES: HeaderName = HeaderName::from_static("x-auth-scopes");
/// Header carrying the gateway's signed statement of the caller to
/// services (`[auth.internal_token]`): an identity header too, so no
/// client can send one.
pub const AUTH_TOKEN: HeaderName = HeaderName::from_static("x-auth-token");

/// Longest subject (a token's `sub`, an API key's name) accepted.
pub(crate) const MAX_SUBJECT_LEN: usize = 256;
/// Longest tenant accepted.
pub(crate) const MAX_TENANT_LEN: usize = 64;
/// Most scopes one identity carries.
pub(crate) const MAX_SCOPES: usize = 64;

/// The part of an identity that no header can carry as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidIdentity {
    /// The subject is empty, too long or not visible ASCII.
    #[error("the subject must be 1 to {MAX_SUBJECT_LEN} visible ASCII characters")]
    Subject,
    /// The tenant is empty, too long or has characters other than `A-Z a-z 0-9 - _ .`.
    #[error(
        "the tenant must be 1 to {MAX_TENANT_LEN} characters of A-Z, a-z, 0-9, '-', '_' and '.'"
    )]
    Tenant,
    /// Too many scopes, or a scope with characters RFC 6749 does not allow.
    #[error("at most {MAX_SCOPES} scopes, each visible ASCII without '\"' or '\\'")]
    Scopes,
    /// The client is too long or not visible ASCII.
    #[error("the client must be at most {MAX_SUBJECT_LEN} visible ASCII characters")]
    Client,
}

fn is_visible_ascii(byte: u8) -> bool {
    (0x21..=0x7e).contains(&byte)
}

/// Checks every part of `identity` against the rules of [`InvalidIdentity`].
fn check(identity: &Identity) -> Result<(), InvalidIdentity> {
    let subject = &identity.subject;
    if subject.is_empty()
        || subject.len() > MAX_SUBJECT_LEN
        || !subject.bytes().all(is_visible_ascii)
    {
        return Err(InvalidIdentity::Subject);
    }
    let tenant = &identity.tenant;
    if tenant.is_empty()
        || tenant.len() > MAX_TENANT_LEN
        || !tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(InvalidIdentity::Tenant);
    }
    // RFC 6749 §3.3 scope-token characters.
    let scope_ok = |scope: &String| {
        !scope.is_empty()
            && scope
                .bytes()
                .all(|b| is_visible_ascii(b) && b != b'"' && b != b'\\')
    };
    if identity.scopes.len() > MAX_SCOPES || !identity.scopes.iter().all(scope_ok) {
        return Err(InvalidIdentity::Scopes);
    }
    if identity.client.as_ref().is_some_and(|client| {
        client.len() > MAX_SUBJECT_LEN || !client.bytes().all(is_visible_ascii)
    }) {
        return Err(InvalidIdentity::Client);
    }
    Ok(())
}

/// An [`Identity`] the gateway verified, with its downstream headers.
///
/// It dereferences to the [`Identity`], so `identity.tenant` reads as usual.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIdentity {
    identity: Identity,
    /// The `X-Auth-*` headers, rendered once at verification.
    forwarded: Vec<(HeaderName, HeaderValue)>,
    /// The rate-limit plan the credential carries (an API key's `plan`).
    plan: Option<String>,
}

impl VerifiedIdentity {
    /// Checks `identity` and renders its headers; an identity a header
    /// cannot carry whole is refused, never sent mangled or in part.
    pub fn new(identity: Identity) -> Result<Self, InvalidIdentity> {
        check(&identity)?;
        let header =
            |value: &str| HeaderValue::try_from(value).expect("checked values are visible ASCII");
        let forwarded = vec![
            (AUTH_SUBJECT, header(&identity.subject)),
            (AUTH_TENANT, header(&identity.tenant)),
            (AUTH_SCOPES, header(&identity.scopes.join(" "))),
        ];
        Ok(Self {
            identity,
            forwarded,
            plan: None,
        })
    }

    /// The same identity, carrying the rate-limit plan its credential names.
    pub fn with_plan(self, plan: impl Into<String>) -> Self {
        Self {
            plan: Some(plan.into()),
            ..self
        }
    }

    /// The rate-limit plan its credential names, if any.
    pub fn plan(&self) -> Option<&str> {
        self.plan.as_deref()
    }

    /// The identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The headers that carry it to services, in a fixed order.
    pub fn forwarded_headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.forwarded
    }
}

impl Deref for VerifiedIdentity {
    type Target = Identity;

    fn deref(&self) -> &Identity {
        &self.identity
    }
}

#[cfg(test)]
mod tests {
    use shared_schema::AuthMethod;

    use super::*;

    fn identity(subject: &str) -> Identity {
        Identity {
            subject: subject.to_owned(),
            tenant: "acme".to_owned(),
            scopes: vec!["products:read".to_owned(), "orders:write".to_owned()],
            client: None,
            auth_method: AuthMethod::Jwt,
        }
    }

    #[test]
    fn headers_are_rendered_once_with_every_part() {
        let verified = VerifiedIdentity::new(identity("user-7")).expect("valid");
        let headers: Vec<(&str, &str)> = verified
            .forwarded_headers()
            .iter()
            .map(|(name, value)| (name.as_str(), value.to_str().expect("ascii")))
            .collect();
        assert_eq!(
            headers,
            [
                ("x-auth-subject", "user-7"),
                ("x-auth-tenant", "acme"),
                ("x-auth-scopes", "products:read orders:write"),
            ]
        );
        assert_eq!(verified.tenant, "acme");
    }

    #[test]
    fn an_identity_no_header_can_carry_is_refused() {
        let refused = |change: fn(&mut Identity)| {
            let mut candidate = identity("user-7");
            change(&mut candidate);
            VerifiedIdentity::new(candidate).err()
        };
        assert_eq!(
            refused(|id| id.subject = "bad\nsubject".into()),
            Some(InvalidIdentity::Subject)
        );
        assert_eq!(
            refused(|id| id.subject.clear()),
            Some(InvalidIdentity::Subject)
        );
        assert_eq!(
            refused(|id| id.tenant.clear()),
            Some(InvalidIdentity::Tenant)
        );
        assert_eq!(
            refused(|id| id.tenant = "acme corp".into()),
            Some(InvalidIdentity::Tenant)
        );
        assert_eq!(
            refused(|id| id.tenant = "t".repeat(MAX_TENANT_LEN + 1)),
            Some(InvalidIdentity::Tenant)
        );
        assert_eq!(
            refused(|id| id.scopes.push("say \"hi\"".into())),
            Some(InvalidIdentity::Scopes)
        );
        assert_eq!(
            refused(|id| id.scopes = vec!["s".into(); MAX_SCOPES + 1]),
            Some(InvalidIdentity::Scopes)
        );
        assert_eq!(
            refused(|id| id.client = Some("é".into())),
            Some(InvalidIdentity::Client)
        );
        assert_eq!(refused(|_| {}), None);
    }
}
