//! TLS to identity providers and services: the JWKS and a downstream service
//! served over https with a certificate from a CA made for the test, trusted
//! only through `ca_file`. Without it the certificate is refused, visibly.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

use demo_services::ServiceName;
use gateway_core::{
    bff::{self, Bff, BffConfig},
    config::ServiceUrl,
    lifecycle::Shutdown,
    server::Running,
};
use platform_tests::{
    bff_config, eventually,
    pki::{TestCa, tls_front},
    send, start_demo, wait_until_ready, web_product_page,
};
use serde_json::Value;

fn https(addr: SocketAddr, path: &str) -> ServiceUrl {
    ServiceUrl::parse(&format!("https://{addr}{path}")).expect("a valid URL")
}

async fn start<B: Bff>(config: BffConfig<B>, shutdown: &Shutdown) -> Running {
    bff::start(config, shutdown.clone())
        .await
        .expect("the BFF starts")
}

async fn metrics(running: &Running) -> String {
    reqwest::get(format!("http://{}/metrics", running.admin_addr()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

#[tokio::test]
async fn a_jwks_over_https_is_trusted_through_the_ca_file_and_refused_without_it() {
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let ca = TestCa::new("jwks");
    let issuer = tls_front(demo.addr(ServiceName::Auth), ca.server_config(&[])).await;
    let jwks_url = https(issuer, "/.well-known/jwks.json");

    let mut trusted = bff_config::<bff_web::Web>(&demo, &Default::default());
    trusted.auth.jwks.url = jwks_url.clone();
    trusted.client_tls.ca_file = Some(ca.ca_file.clone());
    let web = start(trusted, &shutdown).await;
    wait_until_ready(&web).await;
    let page = web_product_page(&web, &demo).await;
    assert_eq!(page.status, 200, "{}", page.body);

    let mut untrusted = bff_config::<bff_web::Web>(&demo, &Default::default());
    untrusted.auth.jwks.url = jwks_url;
    let refused = start(untrusted, &shutdown).await;
    eventually("a fetch failed on the certificate", async || {
        metrics(&refused).await.lines().any(|line| {
            line.starts_with("auth_jwks_fetches_total")
                && line.contains("outcome=\"tls_error\"")
                && !line.ends_with(" 0")
        })
    })
    .await;
    let readyz =
        send(reqwest::Client::new().get(format!("http://{}/readyz", refused.admin_addr()))).await;
    assert_eq!(readyz.status, 503, "never loaded, never ready");
    assert_eq!(readyz.body["waiting_for"], serde_json::json!(["jwks"]));
    web_product_page(&refused, &demo).await.assert_problem(
        503,
        "AUTH_KEYS_UNAVAILABLE",
        "keys from an untrusted JWKS",
    );
    assert_eq!(
        metrics(&refused)
            .await
            .lines()
            .filter(|line| line.starts_with("auth_jwks_fetches_total")
                && line.contains("outcome=\"ok\""))
            .count(),
        0,
        "no fetch ever succeeded"
    );
    shutdown.trigger();
}

#[tokio::test]
async fn an_https_service_is_verified_with_its_own_or_the_shared_ca_file() {
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let ca = TestCa::new("products");
    let products = tls_front(demo.addr(ServiceName::Products), ca.server_config(&[])).await;
    let configure = |service_ca: Option<PathBuf>, shared_ca: Option<PathBuf>| {
        let mut config = bff_config::<bff_web::Web>(&demo, &Default::default());
        // Only the product itself comes from products.
        config.own = platform_tests::web_without_related_products();
        let downstream = config
            .downstream
            .get_mut("products")
            .expect("bff-web calls products");
        downstream.url = https(products, "");
        downstream.ca_file = service_ca;
        config.client_tls.ca_file = shared_ca;
        config
    };

    for (context, config) in [
        (
            "the service's own CA file",
            configure(Some(ca.ca_file.clone()), None),
        ),
        (
            "the shared CA file",
            configure(None, Some(ca.ca_file.clone())),
        ),
    ] {
        let web = start(config, &shutdown).await;
        wait_until_ready(&web).await;
        let page = web_product_page(&web, &demo).await;
        assert_eq!(page.status, 200, "{context}: {}", page.body);
        let product: Value = page.body["product"].clone();
        assert_eq!(product["id"], 1, "{context}: {}", page.body);
    }

    let web = start(configure(None, None), &shutdown).await;
    wait_until_ready(&web).await;
    web_product_page(&web, &demo).await.assert_problem(
        502,
        "DOWNSTREAM_UNAVAILABLE",
        "a certificate from an unknown CA",
    );
    shutdown.trigger();
}
