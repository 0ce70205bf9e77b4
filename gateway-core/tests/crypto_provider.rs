//! The process's TLS crypto provider is ring, installed by the first thing
//! that can build a client, so no client is ever built without it.
//!
//! One test in its own binary: the provider is process-wide state.

use gateway_core::{
    auth::{AuthConfig, Authenticator},
    lifecycle::{Readiness, Shutdown},
    observability::Telemetry,
    tls::ClientTls,
};
use rustls::crypto::CryptoProvider;

#[tokio::test]
async fn every_client_is_built_after_ring_is_installed() {
    assert!(
        CryptoProvider::get_default().is_none(),
        "nothing installs a provider before the gateway's TLS settings load"
    );
    // A client needs a `ClientTls`, and loading one installs the provider first.
    let tls = ClientTls::load(None).expect("the public roots");
    let installed = CryptoProvider::get_default().expect("installed by ClientTls::load");
    let ring = rustls::crypto::ring::default_provider();
    let suites = |provider: &CryptoProvider| {
        provider
            .cipher_suites
            .iter()
            .map(|suite| suite.suite())
            .collect::<Vec<_>>()
    };
    assert_eq!(suites(installed), suites(&ring), "the provider is ring");

    // Loading again (another BFF in the process, a service's own CA file) keeps it.
    let shutdown = Shutdown::new();
    Authenticator::start(
        &AuthConfig::for_audience("bff-test"),
        &ClientTls::load(None).expect("the public roots"),
        &Telemetry::new("bff-test"),
        &Readiness::default(),
        &shutdown,
        &gateway_core::stores::SharedStores::default(),
    )
    .expect("an authenticator");
    drop(tls);
    assert!(std::ptr::eq(
        CryptoProvider::get_default().expect("still installed"),
        installed
    ));
    shutdown.trigger();
}
