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
//! the request.

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
    /// Renders the headers of `identity`. Its values were checked when the
    /// credential was verified; one that is still not a valid header value is
    /// left out rather than sent mangled.
    pub fn new(identity: Identity) -> Self {
        let scopes = identity.scopes.join(" ");
        let forwarded = [
            (AUTH_SUBJECT, identity.subject.as_str()),
            (AUTH_TENANT, identity.tenant.as_str()),
            (AUTH_SCOPES, scopes.as_str()),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, HeaderValue::try_from(value).ok()?)))
        .collect();
        Self {
            identity,
            forwarded,
            plan: None,
        }
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
        let verified = VerifiedIdentity::new(identity("user-7"));
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
    fn a_value_that_is_no_header_is_left_out() {
        let verified = VerifiedIdentity::new(identity("bad\nsubject"));
        assert!(
            verified
                .forwarded_headers()
                .iter()
                .all(|(name, _)| *name != AUTH_SUBJECT)
        );
        assert_eq!(verified.forwarded_headers().len(), 2);
    }
}
