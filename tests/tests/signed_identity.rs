//! Signed identity end to end: with `[auth.internal_token]` on, bff-web's
//! downstream calls carry an ES256 JWT stating the verified caller, minted
//! once per caller per reuse window; services started with
//! `[services] require_gateway_token` verify it with the keys the gateway
//! serves on its admin listener, refuse calls without one or with a bad one
//! (a request forged straight to a service included), and take the caller
//! from the token rather than from the headers that come with it.
//!
//! Services start before the BFF that calls them, so they fetch the keys
//! from another instance of the same fleet (same `key_file`), as services
//! behind a real fleet fetch them from any instance.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use demo_services::{DemoConfig, DemoServices, Ports, ServiceName, ServicesConfig, TokenRequest};
use gateway_core::{
    auth::{Es256Key, InternalTokenConfig},
    config::{HumanDuration, ServiceUrl},
    lifecycle::Shutdown,
    server::Running,
};
use platform_tests::{
    Answer, base_url, eventually_within, get_with_token, issue_token, metric, send, start_bff,
    start_demo, test_issuer, test_webhooks, web_product_page, write_temp_file,
};
use serde_json::{Value, json};

/// A new P-256 key in a PEM file named `name`.
fn key_file(name: &str) -> (Es256Key, PathBuf) {
    let key = Es256Key::generate().expect("a key");
    let path = write_temp_file(name, &key.to_pkcs8_pem());
    (key, path)
}

/// Internal tokens signed with `key_file`.
fn signing_with(key_file: &Path) -> InternalTokenConfig {
    InternalTokenConfig {
        enabled: true,
        key_file: Some(key_file.to_path_buf()),
        ..InternalTokenConfig::default()
    }
}

fn jwks_url(instance: &Running) -> String {
    format!("http://{}/.well-known/jwks.json", instance.admin_addr())
}

/// The services of a fleet: bff-web `web`, signing with the key of
/// `publisher`, whose calls go to services that verify with the keys
/// `publisher` (another instance) serves.
struct VerifiedFleet {
    /// The services, requiring the gateway's token.
    demo: DemoServices,
    /// The instance whose calls the tests follow.
    web: Running,
    /// The instance the services fetch the keys from.
    publisher: Running,
    /// The services the publisher calls (no requirement).
    _publisher_demo: DemoServices,
    shutdown: Shutdown,
}

async fn verified_fleet(publisher_tokens: InternalTokenConfig, web_key: &Path) -> VerifiedFleet {
    let (publisher_demo, shutdown) = start_demo(Default::default()).await;
    let publisher = start_bff::<bff_web::Web>(&publisher_demo, &shutdown, |config| {
        config.auth.internal_token = publisher_tokens;
    })
    .await;
    let demo = DemoServices::start(
        DemoConfig {
            ports: Ports::ephemeral(),
            issuer: test_issuer(),
            webhooks: test_webhooks(),
            services: ServicesConfig {
                require_gateway_token: true,
                gateway_jwks_url: Some(
                    ServiceUrl::parse(&jwks_url(&publisher)).expect("a valid URL"),
                ),
                ..ServicesConfig::default()
            },
            ..DemoConfig::default()
        },
        shutdown.clone(),
    )
    .await
    .expect("the services start");
    let web = start_bff::<bff_web::Web>(&demo, &shutdown, |config| {
        config.auth.internal_token = signing_with(web_key);
    })
    .await;
    VerifiedFleet {
        demo,
        web,
        publisher,
        _publisher_demo: publisher_demo,
        shutdown,
    }
}

/// A new RS256 token of `subject` for bff-web, unlike any issued before
/// in this process (each lives a second longer than the one before).
fn client_token(demo: &DemoServices, subject: &str) -> String {
    static ISSUED: AtomicU64 = AtomicU64::new(0);
    let ttl = 600 + ISSUED.fetch_add(1, Ordering::Relaxed);
    demo.token(&TokenRequest {
        subject: subject.to_owned(),
        audience: "bff-web".to_owned(),
        alg: Some("RS256".to_owned()),
        scope: None,
        ttl: Some(HumanDuration::from_secs(ttl)),
        format: None,
    })
    .expect("a token")
    .access_token
}

/// The claims of a compact JWT, unverified.
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
        .expect("JSON claims")
}

/// The header of the last request `service` received.
fn received(demo: &DemoServices, service: ServiceName, header: &str) -> String {
    let request = demo.last_request(service).expect("the service was called");
    match request.header_values(header)[..] {
        [value] => value.to_owned(),
        ref values => panic!("{header} sent {} times: {values:?}", values.len()),
    }
}

/// `GET` straight to `service` at `path`, with `headers`.
async fn call_service(
    demo: &DemoServices,
    service: ServiceName,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut request = reqwest::Client::new().get(format!("{}{path}", demo.url(service)));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(request).await
}

#[track_caller]
fn assert_refused(answer: &Answer, status: u16, code: &str, context: &str) {
    assert_eq!(answer.status, status, "{context}: {}", answer.body);
    assert_eq!(
        answer.content_type(),
        "application/problem+json",
        "{context}"
    );
    assert_eq!(answer.code(), code, "{context}: {}", answer.body);
}

const FORGED_IDENTITY: [(&str, &str); 3] = [
    ("x-auth-subject", "user-1"),
    ("x-auth-tenant", "acme"),
    ("x-auth-scopes", "products:read orders:read"),
];

#[tokio::test]
async fn a_call_through_the_gateway_carries_a_token_that_states_the_caller_and_never_reaches_the_client()
 {
    let (_, key) = key_file("fleet-key.pem");
    let fleet = verified_fleet(signing_with(&key), &key).await;
    let page = web_product_page(&fleet.web, &fleet.demo).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.headers
            .keys()
            .all(|name| !name.as_str().starts_with("x-auth-")),
        "no identity header reaches the client: {:?}",
        page.headers
    );

    let token = received(&fleet.demo, ServiceName::Products, "x-auth-token");
    let claims = claims_of(&token);
    let client_token = issue_token(&fleet.demo, "user-1", "bff-web", "RS256");
    let client_claims = claims_of(&client_token);
    assert_eq!(claims["iss"], "bff-gateway");
    assert_eq!(claims["aud"], "internal");
    assert_eq!(claims["sub"], "user-1");
    assert_eq!(claims["tid"], client_claims["tid"]);
    assert_eq!(claims["scope"], client_claims["scope"]);
    assert_eq!(claims["auth_method"], "jwt");
    assert_eq!(
        claims["request_id"],
        received(&fleet.demo, ServiceName::Products, "x-request-id"),
        "minted during this request"
    );
    let lifetime = claims["exp"].as_u64().expect("exp") - claims["iat"].as_u64().expect("iat");
    assert_eq!(lifetime, 60, "the default ttl");
    assert_eq!(
        received(&fleet.demo, ServiceName::Pricing, "x-auth-token"),
        token,
        "every call of the request carries the caller's one token"
    );

    // The services take the caller from the token: a tenant header added
    // on the way changes nothing.
    let tenant = claims["tid"].as_str().expect("tid");
    let orders = call_service(
        &fleet.demo,
        ServiceName::Orders,
        "/orders?limit=100",
        &[("x-auth-token", &token), ("x-auth-tenant", "globex")],
    )
    .await;
    assert_eq!(orders.status, 200, "{}", orders.body);
    let items = orders.body["items"].as_array().expect("a page");
    assert!(!items.is_empty(), "the token's tenant has orders");
    assert!(
        items.iter().all(|order| order["tenant"] == tenant),
        "only the token's tenant's orders: {items:?}"
    );
    fleet.shutdown.trigger();
}

#[tokio::test]
async fn services_refuse_a_call_without_the_gateway_s_token_or_with_a_bad_one() {
    let (signing_key, key) = key_file("fleet-key.pem");
    let fleet = verified_fleet(signing_with(&key), &key).await;
    let page = web_product_page(&fleet.web, &fleet.demo).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let token = received(&fleet.demo, ServiceName::Products, "x-auth-token");
    let with_token = |token: &str| {
        let mut headers = FORGED_IDENTITY.to_vec();
        headers.push(("x-auth-token", token));
        headers
            .into_iter()
            .map(|(name, value)| (name, value.to_owned()))
            .collect::<Vec<_>>()
    };
    let product = async |headers: &[(&str, String)]| {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        call_service(&fleet.demo, ServiceName::Products, "/products/1", &headers).await
    };

    let forged = call_service(
        &fleet.demo,
        ServiceName::Products,
        "/products/1",
        &FORGED_IDENTITY,
    )
    .await;
    assert_refused(&forged, 401, "AUTH_MISSING", "X-Auth-* without a token");
    assert!(
        forged.header("www-authenticate").starts_with("Bearer"),
        "{:?}",
        forged.headers
    );
    assert_eq!(
        product(&with_token(&token)).await.status,
        200,
        "the gateway's own token"
    );

    let now = claims_of(&token)["iat"].as_u64().expect("iat");
    let good_claims = claims_of(&token);
    let signed_by = |key: &Es256Key, change: &dyn Fn(&mut Value)| {
        let mut claims = good_claims.clone();
        change(&mut claims);
        key.sign(&claims).expect("signed")
    };
    let other_key = Es256Key::generate().expect("a key");
    let cases: [(&str, String, &str); 6] = [
        (
            "signed by a key the gateway does not publish",
            signed_by(&other_key, &|_| {}),
            "AUTH_UNKNOWN_KEY",
        ),
        (
            "a client's token from the issuer",
            issue_token(&fleet.demo, "user-1", "bff-web", "ES256"),
            "AUTH_INVALID_CLAIMS",
        ),
        (
            "expired",
            signed_by(&signing_key, &|claims| {
                claims["iat"] = json!(now - 600);
                claims["exp"] = json!(now - 540);
            }),
            "AUTH_TOKEN_EXPIRED",
        ),
        (
            "for another audience",
            signed_by(&signing_key, &|claims| claims["aud"] = json!("bff-web")),
            "AUTH_WRONG_AUDIENCE",
        ),
        (
            "without the caller's authentication method",
            signed_by(&signing_key, &|claims| {
                claims
                    .as_object_mut()
                    .expect("object")
                    .remove("auth_method");
            }),
            "AUTH_INVALID_CLAIMS",
        ),
        (
            "the gateway's token with another tenant pasted in",
            {
                let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
                let mut claims = good_claims.clone();
                claims["tid"] = json!("globex");
                parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
                parts.join(".")
            },
            "AUTH_BAD_SIGNATURE",
        ),
    ];
    for (case, bad, code) in cases {
        assert_refused(&product(&with_token(&bad)).await, 401, code, case);
    }
    fleet.shutdown.trigger();
}

#[tokio::test]
async fn services_accept_the_next_key_once_it_is_published_which_is_how_a_rotation_overlaps() {
    // The publisher still signs with the current key and publishes the
    // next one; the instance followed here already swapped to the next.
    let (current, current_file) = key_file("current-key.pem");
    let (next, next_file) = key_file("next-key.pem");
    let fleet = verified_fleet(
        InternalTokenConfig {
            published_key_files: vec![next_file.clone()],
            ..signing_with(&current_file)
        },
        &next_file,
    )
    .await;
    let jwks = send(reqwest::Client::new().get(jwks_url(&fleet.publisher))).await;
    assert_eq!(jwks.status, 200);
    assert_eq!(jwks.content_type(), "application/jwk-set+json");
    let kids: Vec<&str> = jwks.body["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|key| key["kid"].as_str().expect("kid"))
        .collect();
    assert_eq!(kids, [current.kid(), next.kid()], "signing key first");
    for key in jwks.body["keys"].as_array().expect("keys") {
        assert!(key.get("d").is_none(), "no private part: {key}");
        assert_eq!(key["alg"], "ES256");
    }
    let public =
        send(reqwest::Client::new().get(format!("{}/.well-known/jwks.json", base_url(&fleet.web))))
            .await;
    assert_eq!(
        public.status, 404,
        "the keys are on the admin listener only"
    );

    let page = web_product_page(&fleet.web, &fleet.demo).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let token = received(&fleet.demo, ServiceName::Products, "x-auth-token");
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().expect("a header"))
            .expect("base64url"),
    )
    .expect("JSON");
    assert_eq!(header["kid"], next.kid(), "signed with the swapped-in key");
    assert_eq!(header["alg"], "ES256");
    fleet.shutdown.trigger();
}

#[tokio::test]
async fn a_caller_s_token_is_minted_once_per_window_whatever_the_concurrency_and_again_after_it() {
    // Tokens are read at the pricing service, whose answers no cache keeps.
    let (demo, shutdown) = start_demo(Default::default()).await;
    let web = start_bff::<bff_web::Web>(&demo, &shutdown, |config| {
        config.auth.internal_token = InternalTokenConfig {
            enabled: true,
            ttl: HumanDuration::from_secs(6),
            ..InternalTokenConfig::default()
        };
    })
    .await;
    let admin = web.admin_addr();
    let minted = async || {
        metric(admin, "auth_internal_tokens_minted_total", &[])
            .await
            .unwrap_or_default()
    };
    let page = |token: String| {
        let url = format!("{}/api/product-page/7", base_url(&web));
        async move { get_with_token(&url, &token).await }
    };

    let first = client_token(&demo, "user-1");
    for _ in 0..10 {
        assert_eq!(page(first.clone()).await.status, 200);
    }
    assert_eq!(minted().await, 1.0, "ten requests of one caller: one mint");
    let minted_first = received(&demo, ServiceName::Pricing, "x-auth-token");

    let second = client_token(&demo, "user-2");
    let answers = futures_util::future::join_all((0..50).map(|_| page(second.clone()))).await;
    assert!(answers.iter().all(|answer| answer.status == 200));
    assert_eq!(
        minted().await,
        2.0,
        "fifty concurrent first requests of a new caller: one mint"
    );

    let same_caller_new_token = client_token(&demo, "user-1");
    assert_ne!(same_caller_new_token, first);
    assert_eq!(page(same_caller_new_token).await.status, 200);
    assert_eq!(
        received(&demo, ServiceName::Pricing, "x-auth-token"),
        minted_first,
        "the token is the caller's, not the credential's"
    );
    assert_eq!(minted().await, 2.0);

    // Five sixths of the ttl later the caller's token is minted anew.
    eventually_within(
        "the caller's token is minted again",
        Duration::from_secs(15),
        async || {
            assert_eq!(page(first.clone()).await.status, 200);
            minted().await >= 3.0
        },
    )
    .await;
    assert_eq!(minted().await, 3.0, "once, for the one caller who called");
    let renewed = received(&demo, ServiceName::Pricing, "x-auth-token");
    assert_ne!(renewed, minted_first);
    assert!(
        claims_of(&renewed)["iat"].as_u64() > claims_of(&minted_first)["iat"].as_u64(),
        "a fresh token"
    );
    shutdown.trigger();
}
