//! Opaque bearer tokens end to end: issued by the demo issuer, introspected
//! by each BFF (RFC 7662) and cached: one call for many requests and for
//! many concurrent first requests, counted at the issuer; a revoked token
//! refused within `cache_ttl`; an inactive one refused with its answer
//! cached too; and the introspection endpoint down costing only the
//! opaque-token requests.

use std::collections::BTreeMap;

use demo_services::{DemoServices, FaultConfig, ServiceName, TokenRequest};
use gateway_core::{config::HumanDuration, server::Running};
use platform_tests::{
    BffProcess, Platform, PlatformOptions, RedisServer, base_url, eventually_within,
    get_with_token, introspecting_at, issue_token, metric, send, start_bff, start_demo,
    web_product_page,
};

fn opaque_token(demo: &DemoServices, subject: &str, audience: &str) -> String {
    demo.token(&TokenRequest {
        subject: subject.to_owned(),
        audience: audience.to_owned(),
        alg: None,
        scope: None,
        ttl: None,
        format: Some("opaque".to_owned()),
    })
    .expect("an opaque token")
    .access_token
}

/// bff-web introspecting at `demo`, its answers kept `cache_ttl`.
async fn web(
    demo: &DemoServices,
    shutdown: &gateway_core::lifecycle::Shutdown,
    cache_ttl: u64,
) -> Running {
    start_bff::<bff_web::Web>(demo, shutdown, |config| {
        config.auth.introspection = introspecting_at(demo);
        config.auth.introspection.cache_ttl = HumanDuration::from_secs(cache_ttl);
        config.auth.introspection.negative_cache_ttl = HumanDuration::from_secs(60);
    })
    .await
}

#[tokio::test]
async fn every_bff_accepts_an_opaque_token_of_its_audience() {
    let platform = Platform::start_with(PlatformOptions {
        opaque_tokens: true,
        ..PlatformOptions::default()
    })
    .await
    .expect("the platform starts");
    let demo = platform.demo();
    let web_token = opaque_token(demo, "user-1", "bff-web");
    let page = web_product_page(platform.web(), demo).await;
    assert_eq!(page.status, 200);
    let answer = get_with_token(
        &format!("{}/api/product-page/42", base_url(platform.web())),
        &web_token,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let mobile = send(
        reqwest::Client::new()
            .post(format!("{}/graphql", base_url(platform.mobile())))
            .bearer_auth(opaque_token(demo, "user-1", "bff-mobile"))
            .header("content-type", "application/json")
            .body(r#"{"query":"{ product(id: 42) { name } }"}"#),
    )
    .await;
    assert_eq!(mobile.status, 200, "{}", mobile.body);
    assert!(
        mobile.body["data"]["product"]["name"].is_string(),
        "{}",
        mobile.body
    );
    let partner = get_with_token(
        &format!("{}/v1/products/42", base_url(platform.partner())),
        &opaque_token(demo, "partner-acme", "bff-partner"),
    )
    .await;
    assert_eq!(partner.status, 200, "{}", partner.body);
    // Another BFF's token is refused as a JWT for it would be.
    get_with_token(
        &format!("{}/v1/products/42", base_url(platform.partner())),
        &web_token,
    )
    .await
    .assert_problem(
        401,
        "AUTH_WRONG_AUDIENCE",
        "a token of bff-web at bff-partner",
    );
    platform.stop().await;
}

#[tokio::test]
async fn one_token_is_introspected_once_however_many_requests_and_at_once() {
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let bff = web(&demo, &shutdown, 30).await;
    let url = format!("{}/api/product-page/42", base_url(&bff));
    let token = opaque_token(&demo, "user-3", "bff-web");
    let before = demo.issuer().introspections();
    for _ in 0..20 {
        assert_eq!(get_with_token(&url, &token).await.status, 200);
    }
    assert_eq!(
        demo.issuer().introspections() - before,
        1,
        "20 requests, one call"
    );

    let fresh = opaque_token(&demo, "user-4", "bff-web");
    let before = demo.issuer().introspections();
    let requests: Vec<_> = (0..100)
        .map(|_| {
            let (url, token) = (url.clone(), fresh.clone());
            tokio::spawn(async move { get_with_token(&url, &token).await.status })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.expect("answered"), 200);
    }
    assert_eq!(
        demo.issuer().introspections() - before,
        1,
        "100 concurrent first requests, one call"
    );
    shutdown.trigger();
    bff.wait().await;
}

#[tokio::test]
async fn a_revoked_token_is_refused_within_the_cache_ttl_and_an_inactive_one_at_once() {
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let bff = web(&demo, &shutdown, 2).await;
    let url = format!("{}/api/product-page/42", base_url(&bff));
    let token = opaque_token(&demo, "user-5", "bff-web");
    assert_eq!(get_with_token(&url, &token).await.status, 200);
    demo.issuer()
        .revoke("bff-web", "dev-introspection-secret", &token)
        .expect("revoked");
    // The cached answer stands until it expires: right after, still accepted.
    assert_eq!(get_with_token(&url, &token).await.status, 200, "cached");
    eventually_within(
        "the revoked token is refused",
        std::time::Duration::from_secs(10),
        async || get_with_token(&url, &token).await.status == 401,
    )
    .await;
    get_with_token(&url, &token)
        .await
        .assert_problem(401, "AUTH_TOKEN_INACTIVE", "revoked");

    // An unknown token: refused, and its answer is kept too.
    let before = demo.issuer().introspections();
    for _ in 0..5 {
        get_with_token(&url, "opq_never-issued")
            .await
            .assert_problem(401, "AUTH_TOKEN_INACTIVE", "never issued");
    }
    assert_eq!(
        demo.issuer().introspections() - before,
        1,
        "the negative cache"
    );
    shutdown.trigger();
    bff.wait().await;
}

#[tokio::test]
async fn introspection_down_refuses_only_opaque_tokens_and_readiness_stays() {
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let bff = web(&demo, &shutdown, 30).await;
    let url = format!("{}/api/product-page/42", base_url(&bff));
    let jwt = issue_token(&demo, "user-6", "bff-web", "ES256");
    let opaque = opaque_token(&demo, "user-6", "bff-web");
    demo.faults(ServiceName::Auth).set(FaultConfig {
        down: true,
        ..FaultConfig::default()
    });
    let refused = get_with_token(&url, &opaque).await;
    refused.assert_problem(503, "AUTH_INTROSPECTION_UNAVAILABLE", "the issuer is down");
    assert_eq!(refused.header("retry-after"), "1");
    assert_eq!(
        get_with_token(&url, &jwt).await.status,
        200,
        "JWTs are verified locally"
    );
    let ready = reqwest::get(format!("http://{}/readyz", bff.admin_addr()))
        .await
        .expect("answered");
    assert_eq!(ready.status(), 200, "not a readiness matter");
    // Back up: the failure was not cached.
    demo.faults(ServiceName::Auth).set(FaultConfig::default());
    assert_eq!(get_with_token(&url, &opaque).await.status, 200);
    shutdown.trigger();
    bff.wait().await;
}

#[tokio::test]
async fn instances_sharing_redis_introspect_a_token_once_and_keep_no_token_anywhere() {
    let redis = RedisServer::start().await;
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let mut instances = Vec::new();
    for _ in 0..2 {
        instances.push(
            start_bff::<bff_web::Web>(&demo, &shutdown, |config| {
                config.auth.introspection = introspecting_at(&demo);
                config.redis.url =
                    gateway_core::stores::RedisUrl::parse(&redis.url()).expect("a valid URL");
            })
            .await,
        );
    }
    let token = opaque_token(&demo, "user-8", "bff-web");
    let revoked = opaque_token(&demo, "user-9", "bff-web");
    demo.issuer()
        .revoke("bff-web", "dev-introspection-secret", &revoked)
        .expect("revoked");
    let before = demo.issuer().introspections();
    for instance in &instances {
        let url = format!("{}/api/product-page/42", base_url(instance));
        assert_eq!(get_with_token(&url, &token).await.status, 200);
    }
    // The first instance keeps its answer in Redis in the background.
    eventually_within(
        "the answer is in Redis",
        std::time::Duration::from_secs(5),
        async || {
            redis
                .contents()
                .await
                .iter()
                .any(|(key, _)| key.starts_with(b"introspection:"))
        },
    )
    .await;
    let third = start_bff::<bff_web::Web>(&demo, &shutdown, |config| {
        config.auth.introspection = introspecting_at(&demo);
        config.redis.url =
            gateway_core::stores::RedisUrl::parse(&redis.url()).expect("a valid URL");
    })
    .await;
    let url = format!("{}/api/product-page/42", base_url(&third));
    let mid = demo.issuer().introspections();
    assert_eq!(get_with_token(&url, &token).await.status, 200);
    assert_eq!(
        demo.issuer().introspections(),
        mid,
        "the third instance found the answer in Redis"
    );
    assert!(
        (1..=2).contains(&(mid - before)),
        "the first two: one call, or two if the second looked before the first's write landed"
    );
    get_with_token(&url, &revoked)
        .await
        .assert_problem(401, "AUTH_TOKEN_INACTIVE", "revoked");

    // No token, in clear, in any Redis key or value, or metric.
    for (key, value) in redis.contents().await {
        for secret in [&token, &revoked] {
            let secret = secret.as_bytes();
            assert!(
                !key.windows(secret.len()).any(|window| window == secret)
                    && !value.windows(secret.len()).any(|window| window == secret),
                "a token in Redis under {}",
                String::from_utf8_lossy(&key)
            );
        }
    }
    for instance in instances.iter().chain([&third]) {
        let metrics = reqwest::get(format!("http://{}/metrics", instance.admin_addr()))
            .await
            .expect("answered")
            .text()
            .await
            .expect("text");
        assert!(!metrics.contains(&token) && !metrics.contains(&revoked));
        assert!(
            metric(
                instance.admin_addr(),
                "auth_verifications_total",
                &[("method", "opaque")]
            )
            .await
            .is_some()
        );
    }
    shutdown.trigger();
    for instance in instances.into_iter().chain([third]) {
        instance.wait().await;
    }
}

#[tokio::test]
async fn no_token_appears_in_any_log_line() {
    let (demo, _shutdown) = start_demo(BTreeMap::new()).await;
    let introspect = format!("{}/introspect", demo.url(ServiceName::Auth));
    let process = BffProcess::spawn_against::<bff_web::Web>(
        &demo,
        &[
            ("BFF_AUTH__INTROSPECTION__ENABLED", "true"),
            ("BFF_AUTH__INTROSPECTION__URL", &introspect),
            (
                "BFF_AUTH__INTROSPECTION__CLIENT_SECRET",
                "dev-introspection-secret",
            ),
            ("BFF_OBSERVABILITY__LOG_LEVEL", "debug"),
        ],
    )
    .await;
    process.wait_until_ready().await;
    let url = format!("http://{}/api/product-page/42", process.public());
    let active = opaque_token(&demo, "user-2", "bff-web");
    let revoked = opaque_token(&demo, "user-2", "bff-web");
    demo.issuer()
        .revoke("bff-web", "dev-introspection-secret", &revoked)
        .expect("revoked");
    let jwt = issue_token(&demo, "user-2", "bff-web", "ES256");
    let forged = format!("{}x", &jwt[..jwt.len() - 1]);
    assert_eq!(get_with_token(&url, &active).await.status, 200);
    assert_eq!(get_with_token(&url, &revoked).await.status, 401);
    assert_eq!(get_with_token(&url, &jwt).await.status, 200);
    assert_eq!(get_with_token(&url, &forged).await.status, 401);
    let unseen = opaque_token(&demo, "user-2", "bff-web");
    demo.faults(ServiceName::Auth).set(FaultConfig {
        down: true,
        ..FaultConfig::default()
    });
    assert_eq!(get_with_token(&url, &unseen).await.status, 503);
    demo.faults(ServiceName::Auth).set(FaultConfig::default());

    let events = process.stop_and_read_logs().await;
    assert!(
        events
            .iter()
            .any(|event| event.to_string().contains("introspection failed")),
        "the outage was logged: {} events",
        events.len()
    );
    for event in &events {
        let line = event.to_string();
        for token in [&active, &revoked, &unseen, &jwt, &forged] {
            assert!(
                !line.contains(token.as_str()),
                "a token in a log line: {line}"
            );
        }
    }
}
