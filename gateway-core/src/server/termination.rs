//! TLS termination on the public listener (`[server.tls]`).
//!
//! rustls (with ring, as the gateway's own calls) serves TLS 1.2 and 1.3
//! only and offers ALPN `h2` then `http/1.1`; the connection code serves
//! HTTP/2 or HTTP/1.1 as the client chose.
//!
//! The certificate and key are read again every `reload_interval`: when
//! either file's bytes changed (cert-manager, or Kubernetes swapping a
//! Secret's symlink), the new pair is parsed and checked (the key must match
//! the certificate) and then used for every new handshake. Connections
//! already open keep the one they negotiated, so nothing is dropped. A new
//! pair that does not load is refused with one log line and
//! `tls_certificate_reloads_total{result="rejected"}`, and the old pair stays
//! in use. Polling reads two small files: it needs no file-watching
//! dependency and sees every way a file can be replaced.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};
use rustls::{
    ServerConfig,
    crypto::ring::default_provider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use serde::{Deserialize, Serialize};
use tokio_rustls::TlsAcceptor;

use crate::{
    config::{ConfigError, HumanDuration},
    lifecycle::Shutdown,
    observability::Telemetry,
};

/// ALPN protocols offered, preferred first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// TLS on the public listener (`[server.tls]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// The certificate chain, PEM, leaf first.
    pub cert_file: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// How often the files are checked for a new pair (default `10s`).
    #[serde(default = "ServerTlsConfig::default_reload_interval")]
    pub reload_interval: HumanDuration,
}

impl ServerTlsConfig {
    const fn default_reload_interval() -> HumanDuration {
        HumanDuration::from_secs(10)
    }

    /// Checks that the pair loads, as `--check-config` does before a start.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        let files =
            PairFiles::read(self).map_err(|reason| ConfigError::rule("server.tls", reason))?;
        files
            .certified_key()
            .map(drop)
            .map_err(|reason| ConfigError::rule("server.tls", reason))
    }
}

/// The bytes of the two files, as last read.
#[derive(Debug, PartialEq, Eq)]
struct PairFiles {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl PairFiles {
    fn read(config: &ServerTlsConfig) -> Result<Self, String> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display()))
        };
        Ok(Self {
            cert: read(&config.cert_file)?,
            key: read(&config.key_file)?,
        })
    }

    /// The pair ready to serve: the chain, and a signing key that matches it.
    fn certified_key(&self) -> Result<Arc<CertifiedKey>, String> {
        let chain = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| format!("cert_file is not PEM certificates: {error}"))?;
        if chain.is_empty() {
            return Err("cert_file holds no PEM certificate".to_owned());
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key)
            .map_err(|error| format!("key_file is not a PEM private key: {error}"))?;
        let certified = CertifiedKey::from_der(chain, key, &default_provider())
            .map_err(|error| format!("the key does not serve the certificate: {error}"))?;
        Ok(Arc::new(certified))
    }
}

/// The pair in use, swapped whole by a reload.
#[derive(Debug)]
struct CurrentPair(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentPair {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

/// TLS termination: the acceptor every public connection goes through,
/// with its certificate kept fresh; see the module docs.
#[derive(Clone)]
pub struct TlsTermination {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for TlsTermination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTermination").finish_non_exhaustive()
    }
}

impl TlsTermination {
    /// Loads the pair of `config` and starts checking its files for a new
    /// one until `shutdown`; reloads are counted in `telemetry`.
    pub fn start(
        config: &ServerTlsConfig,
        telemetry: &Telemetry,
        shutdown: &Shutdown,
    ) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::rule("server.tls", reason);
        let files = PairFiles::read(config).map_err(invalid)?;
        let current = Arc::new(CurrentPair(RwLock::new(
            files.certified_key().map_err(invalid)?,
        )));
        let mut server = ServerConfig::builder_with_provider(Arc::new(default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        server.alpn_protocols = ALPN.iter().map(|protocol| protocol.to_vec()).collect();
        let reloads = Family::<ReloadLabels, Counter>::default();
        telemetry.register(
            "tls_certificate_reloads",
            "Certificate and key pairs read again after their files changed, by result (applied, rejected)",
            reloads.clone(),
        );
        tokio::spawn(keep_fresh(
            config.clone(),
            files,
            current,
            reloads,
            shutdown.clone(),
        ));
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
        })
    }

    /// The acceptor for a new connection.
    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

/// Reads the files every `reload_interval` and swaps in a changed pair
/// that loads, until `shutdown`.
async fn keep_fresh(
    config: ServerTlsConfig,
    mut last: PairFiles,
    current: Arc<CurrentPair>,
    reloads: Family<ReloadLabels, Counter>,
    shutdown: Shutdown,
) {
    let mut ticks = tokio::time::interval(config.reload_interval.get());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.triggered() => return,
        }
        let files = match PairFiles::read(&config) {
            Ok(files) if files == last => continue,
            Ok(files) => files,
            Err(reason) => {
                // A rotation in progress may briefly remove a file: checked again next time.
                tracing::debug!(%reason, "TLS files not readable");
                continue;
            }
        };
        match files.certified_key() {
            Ok(pair) => {
                *current
                    .0
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = pair;
                reloads
                    .get_or_create(&ReloadLabels { result: "applied" })
                    .inc();
                tracing::info!(cert_file = %config.cert_file.display(), "TLS certificate reloaded: new connections get the new pair");
            }
            Err(reason) => {
                reloads
                    .get_or_create(&ReloadLabels { result: "rejected" })
                    .inc();
                tracing::error!(cert_file = %config.cert_file.display(), %reason, "TLS certificate files changed but do not load: still serving the previous pair");
            }
        }
        last = files;
    }
}
