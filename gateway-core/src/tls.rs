//! TLS for the gateway's own calls: the issuer's JWKS and downstream services.
//!
//! - **rustls with ring.** One crypto provider, chosen here and nowhere
//!   else: ring is already what signs and verifies tokens in this build, it
//!   needs no C toolchain beyond a compiler (aws-lc-rs wants cmake and adds
//!   minutes to every clean build) and covers the TLS 1.2/1.3 suites identity
//!   providers and services offer. [`ClientTls::load`] installs it as the
//!   process default before it builds anything, so no client can exist
//!   without it; installing is idempotent.
//! - **Trust: webpki-roots plus an optional CA file.** The Mozilla root
//!   program compiled into the binary, so trust is the same on a laptop, in
//!   a distroless image without `/etc/ssl` and in CI; private PKI inside a
//!   cluster adds its CA with `[client_tls] ca_file` (and a service can use
//!   its own with `[downstream.<name>] ca_file`). Nothing is ever accepted
//!   without verification: there is no "insecure" switch.
//! - `http` URLs stay allowed; `https` ones negotiate HTTP/1.1 over TLS
//!   (HTTP/2 for the gRPC trace export).

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::{ClientConfig, RootCertStore, crypto::CryptoProvider};
use rustls_pki_types::{CertificateDer, pem::PemObject};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Validate};

/// Extra trust for the gateway's TLS clients (`[client_tls]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTlsConfig {
    /// A PEM file of CA certificates trusted besides the public roots (a
    /// cluster's private PKI); `BFF_CLIENT_TLS__CA_FILE`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl Validate for ClientTlsConfig {
    /// Reads the CA file, so `--check-config` finds a bad one.
    fn validate(&self) -> Result<(), ConfigError> {
        ClientTls::load(self.ca_file.as_deref())
            .map(drop)
            .map_err(|error| ConfigError::rule("client_tls.ca_file", error.to_string()))
    }
}

/// The CA file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read or holds no PEM certificate.
    #[error("{}: {reason}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// A connector for `http` and verified `https` URLs ([`ClientTls::connector`]).
pub type WebConnector = HttpsConnector<HttpConnector>;

/// The TLS settings of the gateway's clients; cheap to clone.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

/// Installs ring as the process's rustls provider (once) and returns it.
pub fn install_crypto_provider() -> Arc<CryptoProvider> {
    if let Some(installed) = CryptoProvider::get_default() {
        return installed.clone();
    }
    // Losing a race to another thread installing the same provider is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    CryptoProvider::get_default()
        .expect("a provider was just installed")
        .clone()
}

impl ClientTls {
    /// Trusts the public roots plus the certificates of `ca_file`.
    pub fn load(ca_file: Option<&Path>) -> Result<Self, TlsError> {
        let provider = install_crypto_provider();
        let mut roots = RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = ca_file {
            let invalid = |reason: String| TlsError::CaFile {
                path: path.to_owned(),
                reason,
            };
            let certificates = CertificateDer::pem_file_iter(path)
                .map_err(|error| invalid(error.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| invalid(format!("not PEM certificates: {error}")))?;
            if certificates.is_empty() {
                return Err(invalid("no PEM certificate in the file".to_owned()));
            }
            for certificate in certificates {
                roots
                    .add(certificate)
                    .map_err(|error| invalid(format!("not a usable CA certificate: {error}")))?;
            }
        }
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// `http` over `connector`, `https` verified with these settings and
    /// offering HTTP/1.1: the connector of the gateway's clients, and of
    /// anything else that calls out over HTTP (demo-services' webhook
    /// deliveries).
    pub fn connector(&self, connector: HttpConnector) -> WebConnector {
        self.builder()
            .enable_http1()
            .wrap_connector(allow_https(connector))
    }

    /// Like [`ClientTls::connector`] for a client that speaks only HTTP/2
    /// (gRPC): over TLS it offers `h2` by ALPN, as gRPC servers require.
    pub(crate) fn http2_connector(
        &self,
        connector: HttpConnector,
    ) -> HttpsConnector<HttpConnector> {
        self.builder()
            .enable_http2()
            .wrap_connector(allow_https(connector))
    }

    fn builder(&self) -> HttpsConnectorBuilder<hyper_rustls::builderstates::WantsProtocols1> {
        HttpsConnectorBuilder::new()
            .with_tls_config((*self.config).clone())
            .https_or_http()
    }
}

/// The TLS connector needs the `https` URIs to reach it.
fn allow_https(mut connector: HttpConnector) -> HttpConnector {
    connector.enforce_http(false);
    connector
}

/// True when `error` or one of its causes is a TLS failure (an untrusted
/// certificate, a failed handshake).
pub(crate) fn is_tls_error(error: &(dyn std::error::Error + 'static)) -> bool {
    if error.is::<rustls::Error>() {
        return true;
    }
    // An `io::Error` wrapping another hides it from `source()`: look inside.
    let wrapped = error
        .downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::get_ref)
        .is_some_and(|inner| is_tls_error(inner));
    wrapped || error.source().is_some_and(is_tls_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_roots_are_trusted_without_a_ca_file() {
        assert!(ClientTls::load(None).is_ok());
        assert!(CryptoProvider::get_default().is_some(), "ring is installed");
    }

    #[test]
    fn a_bad_ca_file_is_a_clear_error() {
        let missing = ClientTls::load(Some(Path::new("/nonexistent/ca.pem")))
            .expect_err("missing file")
            .to_string();
        assert!(missing.starts_with("/nonexistent/ca.pem: "), "{missing}");
        let path = std::env::temp_dir().join(format!("not-a-ca-{}.pem", std::process::id()));
        std::fs::write(&path, "hello").expect("written");
        let empty = ClientTls::load(Some(&path))
            .expect_err("no certificate")
            .to_string();
        assert!(empty.contains("no PEM certificate"), "{empty}");
        let _ = std::fs::remove_file(path);
    }
}
