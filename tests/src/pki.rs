//! Private PKI for tests: a certificate authority made for one test, and a
//! TLS front terminating its certificate in front of a plain listener, which
//! is what a service, an identity provider or a collector behind its own
//! certificate looks like to the gateway.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::{
    ServerConfig,
    pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer},
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::write_temp_file;

/// A certificate authority made for one test, and its certificate as a PEM file.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate, for `ca_file` settings.
    pub ca_file: PathBuf,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new CA named after `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a key"))
            .expect("a CA certificate");
        let ca_file = write_temp_file(&format!("{name}-ca.pem"), &issuer.pem());
        Self { issuer, ca_file }
    }

    /// A server configuration with a certificate for `127.0.0.1` signed by
    /// this CA, accepting the ALPN protocols `alpn` (none: no ALPN).
    pub fn server_config(&self, alpn: &[&str]) -> Arc<ServerConfig> {
        let key = KeyPair::generate().expect("a key");
        let certificate = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("params")
            .signed_by(&key, &self.issuer)
            .expect("a server certificate");
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("TLS 1.2 and 1.3")
                .with_no_client_auth()
                .with_single_cert(
                    vec![certificate.der().clone()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
                )
                .expect("a server configuration");
        config.alpn_protocols = alpn
            .iter()
            .map(|protocol| protocol.as_bytes().to_vec())
            .collect();
        Arc::new(config)
    }
}

impl TestCa {
    /// A new certificate for `127.0.0.1` signed by this CA, written with its
    /// key as PEM to `cert_file` and `key_file` (replacing what they held,
    /// as a certificate rotation does); returns the certificate's DER.
    pub fn write_certificate(
        &self,
        cert_file: &std::path::Path,
        key_file: &std::path::Path,
    ) -> Vec<u8> {
        let key = KeyPair::generate().expect("a key");
        let certificate = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("params")
            .signed_by(&key, &self.issuer)
            .expect("a server certificate");
        std::fs::write(cert_file, certificate.pem()).expect("certificate written");
        std::fs::write(key_file, key.serialize_pem()).expect("key written");
        certificate.der().to_vec()
    }

    /// A client configuration trusting this CA only, offering `alpn`.
    pub fn client_config(&self, alpn: &[&str]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.issuer.der().clone())
            .expect("the CA certificate");
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn
            .iter()
            .map(|protocol| protocol.as_bytes().to_vec())
            .collect();
        Arc::new(config)
    }
}

/// Terminates TLS with `config` on a free port and relays each connection
/// to `target`. A front whose configuration names ALPN protocols refuses a
/// client that offers none of them, as gRPC servers do.
pub async fn tls_front(target: SocketAddr, config: Arc<ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let addr = listener.local_addr().expect("bound");
    let requires_alpn = !config.alpn_protocols.is_empty();
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A refused handshake is what some tests expect: just close.
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                if requires_alpn && tls.get_ref().1.alpn_protocol().is_none() {
                    return;
                }
                let Ok(mut upstream) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    addr
}
