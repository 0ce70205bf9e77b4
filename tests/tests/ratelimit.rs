//! Rate limiting through real BFFs: buckets per caller, plans, route costs,
//! client addresses behind proxies, and the answers a limited caller gets.

use std::{collections::BTreeMap, time::Duration};

use axum::{Extension, Router, routing::get};
use gateway_core::{
    Error,
    bff::{Bff, BffParts},
    config::{ConfigError, Validate},
    downstream::ServiceSpec,
    ratelimit::RateLimitCharge,
    server::Running,
};
use platform_tests::{
    Answer, STEADY_CAPACITY, STEADY_REFILL_PER_SECOND, api_key, base_url, get_with_token,
    issue_token, send, slow_limits, start_bff, start_demo, steady_limits, sustained_load,
};
use serde::{Deserialize, Serialize};

/// How many of `count` sequential answers were admitted before the first 429.
async fn admitted_of(
    count: usize,
    mut request: impl FnMut() -> reqwest::RequestBuilder,
) -> (usize, Vec<Answer>) {
    let mut answers = Vec::new();
    for _ in 0..count {
        answers.push(send(request()).await);
    }
    let admitted = answers
        .iter()
        .take_while(|answer| answer.status == 200)
        .count();
    assert!(
        answers[admitted..]
            .iter()
            .all(|answer| answer.status == 429),
        "nothing is admitted after the first refusal"
    );
    (admitted, answers)
}

#[tokio::test]
async fn a_sustained_overload_is_admitted_at_the_plans_rate_in_process() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let web = start_bff::<bff_web::Web>(&demo, &shutdown, |config| {
        config.rate_limit = steady_limits();
        config.own = platform_tests::web_without_related_products();
    })
    .await;
    let token = issue_token(&demo, "user-1", "bff-web", "ES256");
    // Five times the plan's rate for ten seconds, from the bucket's first request.
    let load = sustained_load(
        std::slice::from_ref(&web),
        "/api/product-page/21",
        &token,
        5.0 * STEADY_REFILL_PER_SECOND,
        Duration::from_secs(10),
    )
    .await;
    load.assert_admitted_as_buckets(f64::from(STEADY_CAPACITY), STEADY_REFILL_PER_SECOND, 1);
    shutdown.trigger();
    web.wait().await;
}

#[tokio::test]
async fn a_burst_is_admitted_then_refused_with_retry_after_and_ratelimit_headers() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let web = start_bff::<bff_web::Web>(&demo, &shutdown, |config| {
        config.rate_limit = slow_limits(&[("standard", 3)])
    })
    .await;
    let token = issue_token(&demo, "user-1", "bff-web", "RS256");
    let url = format!("{}/api/product-page/7", base_url(&web));
    let (admitted, answers) =
        admitted_of(4, || reqwest::Client::new().get(&url).bearer_auth(&token)).await;
    assert_eq!(admitted, 3);
    for (answer, remaining) in answers.iter().zip(["2", "1", "0"]) {
        assert_eq!(answer.header("ratelimit-limit"), "3");
        assert_eq!(answer.header("ratelimit-remaining"), remaining);
        assert_eq!(answer.header("ratelimit-policy"), "3;w=3000");
        let reset: u64 = answer.header("ratelimit-reset").parse().expect("seconds");
        assert!(reset > 0, "{reset}");
    }
    let refused = &answers[3];
    refused.assert_problem(429, "RATE_LIMITED", "over the burst");
    assert_eq!(refused.header("ratelimit-remaining"), "0");
    assert_eq!(refused.header("ratelimit-limit"), "3");
    let retry_after: u64 = refused.header("retry-after").parse().expect("seconds");
    assert_eq!(retry_after, 1000, "one token at 0.001 per second");

    let metrics = reqwest::get(format!("http://{}/metrics", web.admin_addr()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for line in [
        r#"rate_limit_decisions_total{bff="bff-web",plan="standard",outcome="admitted"} 3"#,
        r#"rate_limit_decisions_total{bff="bff-web",plan="standard",outcome="limited"} 1"#,
        r#"rate_limit_backend{bff="bff-web",mode="local"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line}: {metrics}");
    }
    assert!(
        metrics.contains("rate_limit_decision_duration_seconds_count{bff=\"bff-web\"} 4"),
        "{metrics}"
    );
    shutdown.trigger();
    web.wait().await;
}

#[tokio::test]
async fn tenants_and_subjects_never_share_a_bucket_and_a_tenants_plan_applies() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let catalog = demo.catalog();
    let tenant_of = |id| catalog.user(id).expect("a demo user").tenant;
    let first = tenant_of(1);
    let other_tenant = (2..100)
        .find(|id| tenant_of(*id) != first)
        .expect("users of two tenants");
    let same_tenant = (2..100)
        .find(|id| tenant_of(*id) == first)
        .expect("two users of one tenant");
    let second = tenant_of(other_tenant);
    let web = start_bff::<bff_web::Web>(&demo, &shutdown, |config| {
        config.rate_limit = slow_limits(&[("standard", 2), ("big", 5)]);
        config.rate_limit.tenants = BTreeMap::from([(second.clone(), "big".to_owned())]);
    })
    .await;
    let url = format!("{}/api/product-page/7", base_url(&web));
    let burst_of = |user: u64| {
        let token = issue_token(&demo, &format!("user-{user}"), "bff-web", "ES256");
        let url = url.clone();
        async move {
            admitted_of(7, || reqwest::Client::new().get(&url).bearer_auth(&token))
                .await
                .0
        }
    };
    assert_eq!(burst_of(1).await, 2, "user-1 of {first}: the default plan");
    assert_eq!(
        burst_of(same_tenant).await,
        2,
        "another subject of {first} has its own bucket"
    );
    assert_eq!(
        burst_of(other_tenant).await,
        5,
        "a user of {second}: its tenant's plan"
    );
    assert_eq!(burst_of(1).await, 0, "user-1's bucket stayed empty");
    shutdown.trigger();
    web.wait().await;
}

#[tokio::test]
async fn an_api_keys_plan_comes_before_its_tenants() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let mut gold_key = api_key(
        "acme-erp",
        "acme-key-0123456789abcdef",
        "acme",
        &["products:read"],
    );
    gold_key.plan = "gold".to_owned();
    let partner = start_bff::<bff_partner::Partner>(&demo, &shutdown, |config| {
        config.rate_limit = slow_limits(&[("standard", 1), ("gold", 4)]);
        config.auth.api_keys = vec![gold_key];
    })
    .await;
    let url = format!("{}/v1/products/3", base_url(&partner));
    let (by_key, _) = admitted_of(6, || {
        reqwest::Client::new()
            .get(&url)
            .header("x-api-key", "acme-key-0123456789abcdef")
    })
    .await;
    assert_eq!(by_key, 4, "the key's gold plan");
    let token = issue_token(&demo, "partner-acme", "bff-partner", "RS256");
    let (by_token, _) =
        admitted_of(3, || reqwest::Client::new().get(&url).bearer_auth(&token)).await;
    assert_eq!(
        by_token, 1,
        "a token of the same tenant: the default plan, its own bucket"
    );
    shutdown.trigger();
    partner.wait().await;
}

#[tokio::test]
async fn a_spoofed_x_forwarded_for_picks_no_bucket_but_a_trusted_proxys_does() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    // The OpenAPI document is public: anonymous callers are keyed by address.
    let direct = start_bff::<bff_partner::Partner>(&demo, &shutdown, |config| {
        config.rate_limit = slow_limits(&[("standard", 2)]);
    })
    .await;
    let behind_proxy = start_bff::<bff_partner::Partner>(&demo, &shutdown, |config| {
        config.rate_limit = slow_limits(&[("standard", 2)]);
        config.server.trusted_proxies = vec!["127.0.0.0/8".parse().expect("a CIDR")];
    })
    .await;
    let from = |running: &Running, client: &str| {
        send(
            reqwest::Client::new()
                .get(format!("{}/v1/openapi.json", base_url(running)))
                .header("x-forwarded-for", client.to_owned()),
        )
    };
    let mut statuses = Vec::new();
    for client in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        statuses.push(from(&direct, client).await.status);
    }
    assert_eq!(
        statuses,
        [200, 200, 429],
        "an untrusted peer is its own client, whatever it forwards"
    );

    let mut statuses = Vec::new();
    for client in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        statuses.push(from(&behind_proxy, client).await.status);
    }
    assert_eq!(
        statuses,
        [200, 200, 200],
        "behind a trusted proxy each client has its bucket"
    );
    let spoofed = |prefix: &str| format!("{prefix}, 203.0.113.1");
    assert_eq!(
        from(&behind_proxy, &spoofed("198.51.100.1")).await.status,
        200
    );
    assert_eq!(
        from(&behind_proxy, &spoofed("198.51.100.2")).await.status,
        429,
        "what the client wrote left of the proxy's entry does not change its bucket"
    );
    shutdown.trigger();
    direct.wait().await;
    behind_proxy.wait().await;
}

#[tokio::test]
async fn limiting_can_be_turned_off() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let web = start_bff::<bff_web::Web>(&demo, &shutdown, |config| {
        config.rate_limit = slow_limits(&[("standard", 1)]);
        config.rate_limit.enabled = false;
    })
    .await;
    let token = issue_token(&demo, "user-1", "bff-web", "RS256");
    let url = format!("{}/api/product-page/7", base_url(&web));
    for _ in 0..3 {
        let answer = get_with_token(&url, &token).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("ratelimit-limit"), "");
    }
    shutdown.trigger();
    web.wait().await;
}

/// A BFF with an expensive route and a metered one, whose handler charges
/// what it finds out the request costs.
#[derive(Debug, Clone, PartialEq)]
struct Metered;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct NoSettings {}

impl Validate for NoSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

impl Bff for Metered {
    const NAME: &'static str = "bff-metered";
    const ABOUT: &'static str = "routes of different costs";
    const PUBLIC_PORT: u16 = 8095;
    const ADMIN_PORT: u16 = 9095;
    const SERVICES: &'static [ServiceSpec] = &[];
    const PUBLIC_ROUTES: &'static [&'static str] = &["/cheap", "/dear", "/metered/{extra}"];
    const ROUTE_COSTS: &'static [(&'static str, u32)] = &[("/dear", 3)];
    const SECTION: &'static str = "metered";
    type Config = NoSettings;

    fn routes(_settings: &NoSettings, _parts: &BffParts) -> Router {
        Router::new()
            .route("/cheap", get(|| async { "cheap" }))
            .route("/dear", get(|| async { "dear" }))
            .route(
                "/metered/{extra}",
                get(
                    |Extension(charge): Extension<RateLimitCharge>,
                     axum::extract::Path(extra): axum::extract::Path<u32>| async move {
                        charge.charge(extra).await.map_err(Error::from)?;
                        Ok::<_, Error>("metered")
                    },
                ),
            )
    }
}

#[tokio::test]
async fn routes_cost_their_tokens_and_handlers_can_charge_more() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let metered = start_bff::<Metered>(&demo, &shutdown, |config| {
        config.rate_limit = slow_limits(&[("standard", 10)])
    })
    .await;
    let get =
        |path: &str| send(reqwest::Client::new().get(format!("{}{path}", base_url(&metered))));
    let dear = get("/dear").await;
    assert_eq!(dear.status, 200);
    assert_eq!(
        dear.header("ratelimit-remaining"),
        "7",
        "the dear route costs 3"
    );
    let cheap = get("/cheap").await;
    assert_eq!(cheap.header("ratelimit-remaining"), "6", "the cheap one 1");
    let metered_answer = get("/metered/4").await;
    assert_eq!(metered_answer.status, 200);
    assert_eq!(
        get("/cheap").await.header("ratelimit-remaining"),
        "0",
        "1 + 4 more were charged, then 1"
    );
    let over = get("/metered/0").await;
    over.assert_problem(429, "RATE_LIMITED", "the route's own token is gone");
    let tokens_left = get("/dear").await;
    tokens_left.assert_problem(429, "RATE_LIMITED", "3 tokens asked, none there");
    shutdown.trigger();
    metered.wait().await;
}
