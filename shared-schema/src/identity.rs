//! The verified caller.

use serde::{Deserialize, Serialize};

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A signed JWT bearer token (or the web session cookie carrying one).
    Jwt,
    /// A partner API key.
    ApiKey,
    /// An opaque bearer token, explained by the issuer's introspection.
    Opaque,
}

/// Who is calling, as verified by the gateway.
///
/// Only the gateway builds an `Identity`, from a verified token or API key;
/// nothing a client sends in headers can set it. Services receive it as the
/// `X-Auth-*` headers the gateway writes itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    /// The caller: a user (`user-42`) or a partner client id.
    pub subject: String,
    /// The tenant every decision and every cache entry is namespaced by.
    pub tenant: String,
    /// Granted scopes, for example `orders:write`.
    pub scopes: Vec<String>,
    /// The client application or API key name the call came through, when known.
    pub client: Option<String>,
    /// How the caller authenticated.
    pub auth_method: AuthMethod,
}

impl Identity {
    /// Whether the caller was granted `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|granted| granted == scope)
    }
}
