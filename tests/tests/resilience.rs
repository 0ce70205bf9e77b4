//! The per-service call stack against real demo services with injected
//! faults: the circuit breaker, the concurrency bound and retries within
//! their budget. What a service received is counted at the service itself.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use demo_services::{DemoServices, FaultConfig, ServiceName};
use futures_util::future::join_all;
use gateway_core::{
    RequestContext,
    config::{Delay, HumanDuration},
    downstream::{BreakerConfig, DownstreamClient, DownstreamConfig, DownstreamError, RetryConfig},
    identity::VerifiedIdentity,
    observability::Telemetry,
    server::Running,
    tls::ClientTls,
};
use platform_tests::{
    Answer, base_url, eventually, get_with_token, issue_token, metric, send, start_bff, start_demo,
    web_product_page,
};
use serde_json::Value;
use shared_schema::{
    AuthMethod, Identity,
    accounts::{NewOrder, NewOrderLine},
};

/// Starts bff-web against `demo` with `products` set up by `configure`, and
/// a rate limit no test here comes near.
async fn start_web(
    demo: &DemoServices,
    shutdown: &gateway_core::lifecycle::Shutdown,
    configure: impl FnOnce(&mut DownstreamConfig),
) -> Running {
    start_bff::<bff_web::Web>(demo, shutdown, |config| {
        let products = config.downstream.get_mut("products").expect("products");
        // Every call must reach the stack measured here: none is answered from the cache.
        products.cache.enabled = false;
        configure(products);
        // One products call per page: the page lists no related products.
        config.own = platform_tests::web_without_related_products();
        for plan in config.rate_limit.plans.values_mut() {
            plan.capacity = 100_000;
            plan.refill_per_second = 100_000.0;
        }
    })
    .await
}

/// A breaker that opens after three failures in a row, stays open 300 ms
/// exactly and closes after one good probe.
fn quick_breaker() -> BreakerConfig {
    BreakerConfig {
        consecutive_failures: 3,
        open_for: HumanDuration::from_millis(300),
        open_jitter: Delay::from_secs(0),
        probes: 1,
        ..BreakerConfig::default()
    }
}

fn no_retries() -> RetryConfig {
    RetryConfig {
        max_retries: 0,
        ..RetryConfig::default()
    }
}

fn down() -> FaultConfig {
    FaultConfig {
        down: true,
        ..FaultConfig::default()
    }
}

async fn circuit(admin: SocketAddr, service: &str) -> Option<f64> {
    metric(admin, "downstream_circuit_state", &[("service", service)]).await
}

async fn transitions(admin: SocketAddr, service: &str, to: &str) -> f64 {
    metric(
        admin,
        "downstream_circuit_transitions_total",
        &[("service", service), ("to", to)],
    )
    .await
    .unwrap_or(0.0)
}

#[tokio::test]
async fn the_breaker_opens_stops_calling_the_service_probes_and_closes_or_reopens() {
    let (demo, shutdown) = start_demo(BTreeMap::from([(ServiceName::Products, down())])).await;
    let web = start_web(&demo, &shutdown, |products| {
        products.breaker = quick_breaker();
        products.retry = no_retries();
    })
    .await;
    let admin = web.admin_addr();
    let products = demo.requests(ServiceName::Products);
    assert_eq!(
        circuit(admin, "products").await,
        Some(0.0),
        "closed at start"
    );

    for _ in 0..3 {
        web_product_page(&web, &demo).await.assert_problem(
            502,
            "DOWNSTREAM_UNAVAILABLE",
            "products is down",
        );
    }
    assert_eq!(products.received(), 3);
    assert_eq!(circuit(admin, "products").await, Some(1.0), "open");
    assert_eq!(transitions(admin, "products", "open").await, 1.0);

    // Open: answered at once, and the service is not called.
    let refused = web_product_page(&web, &demo).await;
    refused.assert_problem(503, "DOWNSTREAM_CIRCUIT_OPEN", "while open");
    let retry_after: u64 = refused.header("retry-after").parse().expect("seconds");
    assert_eq!(retry_after, 1, "300 ms, rounded up to a whole second");
    assert_eq!(products.received(), 3, "no call while open");

    // Still failing when probed: one probe reaches it, and it opens again.
    eventually("a probe reaches the service", async || {
        web_product_page(&web, &demo).await;
        products.received() > 3
    })
    .await;
    assert_eq!(products.received(), 4, "exactly one probe");
    assert_eq!(transitions(admin, "products", "half_open").await, 1.0);
    assert_eq!(transitions(admin, "products", "open").await, 2.0);
    assert_eq!(circuit(admin, "products").await, Some(1.0));
    web_product_page(&web, &demo)
        .await
        .assert_problem(503, "DOWNSTREAM_CIRCUIT_OPEN", "reopened");
    assert_eq!(products.received(), 4);

    // Recovered: the next probe succeeds and closes it.
    demo.faults(ServiceName::Products)
        .set(FaultConfig::default());
    eventually("the page is served again", async || {
        web_product_page(&web, &demo).await.status == 200
    })
    .await;
    assert_eq!(products.received(), 5, "the successful probe");
    assert_eq!(circuit(admin, "products").await, Some(0.0), "closed");
    assert_eq!(transitions(admin, "products", "half_open").await, 2.0);
    assert_eq!(transitions(admin, "products", "closed").await, 1.0);
    assert_eq!(web_product_page(&web, &demo).await.status, 200);
    assert_eq!(products.received(), 6, "closed: every call goes through");
    shutdown.trigger();
}

#[tokio::test]
async fn client_errors_never_open_the_breaker() {
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let web = start_web(&demo, &shutdown, |products| {
        products.breaker = quick_breaker();
    })
    .await;
    let token = issue_token(&demo, "user-1", "bff-web", "RS256");
    for _ in 0..5 {
        // Product 999999 does not exist: the service answers 404.
        let missing = get(&web, "/api/product-page/999999", &token).await;
        missing.assert_problem(404, "NOT_FOUND", "no such product");
    }
    assert_eq!(
        circuit(web.admin_addr(), "products").await,
        Some(0.0),
        "404s are answers, not failures"
    );
    assert_eq!(demo.requests(ServiceName::Products).received(), 5);
    shutdown.trigger();
}

async fn get(web: &Running, path: &str, token: &str) -> Answer {
    get_with_token(&format!("{}{path}", base_url(web)), token).await
}

#[tokio::test]
async fn over_the_concurrency_cap_calls_fail_fast_and_the_service_never_sees_more() {
    const CAP: usize = 4;
    let slow = FaultConfig {
        latency: Some(HumanDuration::from_millis(500)),
        ..FaultConfig::default()
    };
    let (demo, shutdown) = start_demo(BTreeMap::from([(ServiceName::Products, slow)])).await;
    let web = start_web(&demo, &shutdown, |products| {
        products.max_concurrency = CAP.try_into().expect("non-zero");
        products.breaker.enabled = false;
    })
    .await;
    let token = issue_token(&demo, "user-1", "bff-web", "RS256");
    let answers = join_all((0..10 * CAP).map(|_| get(&web, "/api/product-page/1", &token))).await;
    let served = answers.iter().filter(|answer| answer.status == 200).count();
    let refused: Vec<&Answer> = answers
        .iter()
        .filter(|answer| answer.status != 200)
        .collect();
    for answer in &refused {
        answer.assert_problem(503, "DOWNSTREAM_OVERLOADED", "over the cap");
    }
    let products = demo.requests(ServiceName::Products);
    assert!(
        products.peak_in_flight() <= CAP as u64,
        "the service saw {} at once",
        products.peak_in_flight()
    );
    assert_eq!(
        products.received(),
        served as u64,
        "refused calls were never sent"
    );
    assert!(served >= CAP, "the cap was used in full: {served} served");
    assert!(
        !refused.is_empty(),
        "40 pages at once, 4 slots: some were refused"
    );
    assert_eq!(
        metric(
            web.admin_addr(),
            "downstream_in_flight",
            &[("service", "products")]
        )
        .await,
        Some(0.0),
        "every slot was given back"
    );
    shutdown.trigger();
}

#[tokio::test]
async fn a_concurrency_wait_lets_a_call_take_a_slot_freed_in_time() {
    let slow = FaultConfig {
        latency: Some(HumanDuration::from_millis(200)),
        ..FaultConfig::default()
    };
    let (demo, shutdown) = start_demo(BTreeMap::from([(ServiceName::Products, slow)])).await;
    let web = start_web(&demo, &shutdown, |products| {
        products.max_concurrency = 1.try_into().expect("non-zero");
        products.concurrency_wait = Delay::from(Duration::from_secs(1));
    })
    .await;
    let token = issue_token(&demo, "user-1", "bff-web", "RS256");
    let answers = join_all((0..3).map(|_| get(&web, "/api/product-page/1", &token))).await;
    for answer in &answers {
        assert_eq!(answer.status, 200, "each waited for the one slot");
    }
    let products = demo.requests(ServiceName::Products);
    assert_eq!(products.peak_in_flight(), 1);
    assert_eq!(products.received(), 3);
    shutdown.trigger();
}

#[tokio::test]
async fn retries_of_a_half_failing_service_stay_within_the_budget() {
    const PAGES: usize = 200;
    let flaky = FaultConfig {
        error_rate: 0.5,
        ..FaultConfig::default()
    };
    let (demo, shutdown) = start_demo(BTreeMap::from([(ServiceName::Products, flaky)])).await;
    let web = start_web(&demo, &shutdown, |products| {
        products.breaker.enabled = false;
        products.retry = RetryConfig {
            max_retries: 3,
            backoff: Delay::from_secs(0),
            max_backoff: Delay::from_secs(0),
            budget_ratio: 0.1,
            budget_min_per_second: 1,
            budget_window: HumanDuration::from_secs(60),
        };
    })
    .await;
    let token = issue_token(&demo, "user-1", "bff-web", "RS256");
    for _ in 0..PAGES / 8 {
        join_all((0..8).map(|_| get(&web, "/api/product-page/1", &token))).await;
    }
    let products = demo.requests(ServiceName::Products);
    let retries = products.received() - PAGES as u64;
    // 20 earned by 200 calls, plus the floor: 1 a second over the 60 s window.
    assert!(retries <= 20 + 60, "{retries} retries");
    // Without a budget about 175 would have been sent (100 + 50 + 25).
    assert!(retries >= 20, "retries happen: {retries}");
    let admin = web.admin_addr();
    let counted = |decision: &'static str| async move {
        metric(
            admin,
            "downstream_retries_total",
            &[("service", "products"), ("decision", decision)],
        )
        .await
        .unwrap_or(0.0)
    };
    assert_eq!(counted("retried").await, retries as f64);
    assert!(
        counted("budget_exhausted").await > 0.0,
        "the budget ran out"
    );
    shutdown.trigger();
}

/// A client of the orders service for user 1 of tenant `acme`, and the
/// context of a request made by them.
fn orders_client(demo: &DemoServices) -> (DownstreamClient, RequestContext) {
    let mut config = DownstreamConfig::at(
        gateway_core::config::ServiceUrl::parse(&demo.url(ServiceName::Orders)).expect("url"),
    );
    config.breaker.enabled = false;
    let client = DownstreamClient::new(
        "orders",
        &config,
        &ClientTls::load(None).expect("tls"),
        &Telemetry::new("bff-test"),
        None,
    )
    .expect("a client");
    let user = demo.catalog().user(1).expect("user 1");
    let identity = VerifiedIdentity::new(Identity {
        subject: "user-1".to_owned(),
        tenant: user.tenant,
        scopes: vec!["orders:write".to_owned()],
        client: None,
        auth_method: AuthMethod::Jwt,
    })
    .expect("a valid identity");
    let context = RequestContext {
        identity: Some(Arc::new(identity)),
        ..RequestContext::detached()
    };
    (client, context)
}

#[tokio::test]
async fn only_idempotent_calls_are_retried() {
    let failing = FaultConfig {
        error_rate: 1.0,
        ..FaultConfig::default()
    };
    let (demo, shutdown) = start_demo(BTreeMap::from([(ServiceName::Orders, failing)])).await;
    let (orders, context) = orders_client(&demo);
    let received = || demo.requests(ServiceName::Orders).received();

    let order = NewOrder {
        user_id: Some(1),
        lines: vec![NewOrderLine {
            product_id: 1,
            quantity: 1,
        }],
    };
    let placed: Result<Value, DownstreamError> = orders.post("/orders", &order, &context).await;
    assert!(
        matches!(placed, Err(DownstreamError::Status { .. })),
        "{placed:?}"
    );
    assert_eq!(received(), 1, "a POST is sent once");

    let read: Result<Value, DownstreamError> = orders.get("/orders/1", &context).await;
    assert!(
        matches!(read, Err(DownstreamError::Status { .. })),
        "{read:?}"
    );
    assert_eq!(
        received(),
        1 + 3,
        "a GET is tried three times (two retries)"
    );
    shutdown.trigger();
}

/// The entries of a `Server-Timing` header: name, duration in ms, description.
fn server_timing(answer: &Answer) -> Vec<(String, f64, Option<String>)> {
    answer
        .header("server-timing")
        .split(", ")
        .map(|entry| {
            let mut fields = entry.split(';');
            let name = fields.next().expect("a name").to_owned();
            let mut duration = None;
            let mut desc = None;
            for field in fields {
                if let Some(millis) = field.strip_prefix("dur=") {
                    duration = Some(millis.parse().expect("milliseconds"));
                } else if let Some(text) = field.strip_prefix("desc=") {
                    desc = Some(text.trim_matches('"').to_owned());
                }
            }
            (name, duration.expect("every entry has a duration"), desc)
        })
        .collect()
}

#[tokio::test]
async fn every_response_carries_server_timing_with_one_entry_per_downstream_part() {
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let web = start_web(&demo, &shutdown, |_| {}).await;
    let page = web_product_page(&web, &demo).await;
    assert_eq!(page.status, 200);
    let entries = server_timing(&page);
    assert_eq!(entries[0].0, "total", "{entries:?}");
    let mut parts: Vec<&str> = entries[1..]
        .iter()
        .map(|(name, ..)| name.as_str())
        .collect();
    parts.sort_unstable();
    assert_eq!(parts, ["inventory", "pricing", "products", "reviews"]);
    assert!(
        entries.iter().all(|(_, _, desc)| desc.is_none()),
        "{entries:?}"
    );
    let total = entries[0].1;
    assert!(
        entries[1..].iter().all(|(_, millis, _)| *millis <= total),
        "no part outlasts the request: {entries:?}"
    );

    // Errors carry it too: here no service was called, so the total alone.
    let token = issue_token(&demo, "user-1", "bff-web", "RS256");
    let missing = get(&web, "/api/nothing-here", &token).await;
    missing.assert_problem(404, "ROUTE_NOT_FOUND", "no such route");
    assert_eq!(server_timing(&missing).len(), 1, "total only");
    shutdown.trigger();
}

/// Product page 1 for a client that gives up after 300 ms.
async fn impatient_product_page(web: &Running, demo: &DemoServices) -> Answer {
    let token = issue_token(demo, "user-1", "bff-web", "RS256");
    send(
        reqwest::Client::new()
            .get(format!("{}/api/product-page/1", base_url(web)))
            .bearer_auth(&token)
            .header("x-request-timeout", "300ms"),
    )
    .await
}

fn hanging() -> FaultConfig {
    FaultConfig {
        latency: Some(HumanDuration::from_secs(30)),
        ..FaultConfig::default()
    }
}

/// Checks that `service` timed out and every other part answered.
fn assert_only_timed_out(answer: &Answer, service: &str) {
    let entries = server_timing(answer);
    let (_, millis, desc) = entries
        .iter()
        .find(|(name, ..)| name == service)
        .unwrap_or_else(|| panic!("a {service} entry in {entries:?}"));
    assert_eq!(desc.as_deref(), Some("timeout"));
    // Nothing could end the request before its deadline: the service hangs.
    let total = entries[0].1;
    assert!(total >= 300.0, "the request lasted its 300 ms: {entries:?}");
    assert!(*millis <= total, "{entries:?}");
    for (name, _, desc) in &entries[1..] {
        if name != service {
            assert_eq!(desc, &None, "{name} answered");
        }
    }
}

#[tokio::test]
async fn a_hanging_optional_part_is_missing_from_a_page_served_at_the_clients_deadline() {
    let (demo, shutdown) = start_demo(BTreeMap::from([(ServiceName::Reviews, hanging())])).await;
    let web = start_web(&demo, &shutdown, |_| {}).await;
    let page = impatient_product_page(&web, &demo).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        page.body["missing"],
        serde_json::json!({ "reviews": "timeout" })
    );
    assert_eq!(page.header("bff-partial"), "reviews=timeout");
    assert_only_timed_out(&page, "reviews");
    assert_eq!(
        demo.requests(ServiceName::Reviews).received(),
        1,
        "no retry: nothing was left of the deadline"
    );
    shutdown.trigger();
}

#[tokio::test]
async fn a_hanging_required_part_is_a_504_at_the_clients_deadline() {
    let (demo, shutdown) = start_demo(BTreeMap::from([(ServiceName::Products, hanging())])).await;
    let web = start_web(&demo, &shutdown, |_| {}).await;
    let page = impatient_product_page(&web, &demo).await;
    page.assert_problem(504, "DOWNSTREAM_TIMEOUT", "products hangs");
    let detail = page.body["detail"].as_str().unwrap_or_default();
    let had: u64 = detail
        .strip_prefix("the products service did not answer within ")
        .and_then(|rest| rest.strip_suffix("ms"))
        .and_then(|millis| millis.parse().ok())
        .unwrap_or_else(|| panic!("the detail names the service and the time it had: {detail}"));
    assert!(had <= 300, "no more than the client gave: {detail}");
    assert_only_timed_out(&page, "products");
    assert_eq!(demo.requests(ServiceName::Products).received(), 1);
    shutdown.trigger();
}

#[tokio::test]
async fn a_malformed_request_timeout_is_refused() {
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let web = start_web(&demo, &shutdown, |_| {}).await;
    let token = issue_token(&demo, "user-1", "bff-web", "RS256");
    for malformed in ["soon", "0ms", "-1"] {
        let answer = send(
            reqwest::Client::new()
                .get(format!("{}/api/product-page/1", base_url(&web)))
                .bearer_auth(&token)
                .header("x-request-timeout", malformed),
        )
        .await;
        answer.assert_problem(400, "BAD_REQUEST", malformed);
    }
    assert_eq!(demo.requests(ServiceName::Products).received(), 0);
    shutdown.trigger();
}

#[tokio::test]
async fn a_failed_required_part_fails_the_page_at_once_and_cancels_the_rest() {
    let failing = FaultConfig {
        error_rate: 1.0,
        ..FaultConfig::default()
    };
    let (demo, shutdown) = start_demo(BTreeMap::from([
        (ServiceName::Products, failing),
        (ServiceName::Reviews, hanging()),
    ]))
    .await;
    let web = start_web(&demo, &shutdown, |products| products.retry = no_retries()).await;
    let page = web_product_page(&web, &demo).await;
    page.assert_problem(502, "DOWNSTREAM_BAD_RESPONSE", "products fails");
    assert_eq!(page.header("bff-partial"), "", "a failed page has no parts");
    let entries = server_timing(&page);
    let desc_of = |service: &str| {
        entries
            .iter()
            .find(|(name, ..)| name == service)
            .unwrap_or_else(|| panic!("a {service} entry in {entries:?}"))
            .2
            .clone()
    };
    assert_eq!(desc_of("products").as_deref(), Some("bad_status"));
    // Reviews was called alongside and dropped when products failed: the
    // page did not wait for its timeout (it would read "timeout" then).
    assert_eq!(desc_of("reviews").as_deref(), Some("cancelled"));
    assert_eq!(demo.requests(ServiceName::Reviews).received(), 1);
    shutdown.trigger();
}

/// A batch of eight operations, one per product 1 to 8, run concurrently:
/// eight calls of one request (within one operation the products would
/// come from one batch call).
fn eight_products_batch() -> String {
    let operations: Vec<serde_json::Value> = (1..=8)
        .map(|id| serde_json::json!({ "query": format!("{{ product(id: {id}) {{ name }} }}") }))
        .collect();
    serde_json::Value::Array(operations).to_string()
}

async fn eight_products(mobile: &Running, token: &str) -> Answer {
    send(
        reqwest::Client::new()
            .post(format!("{}/graphql", base_url(mobile)))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(eight_products_batch()),
    )
    .await
}

#[tokio::test]
async fn one_request_has_at_most_max_fan_out_calls_under_way() {
    let slow = FaultConfig {
        latency: Some(HumanDuration::from_millis(300)),
        ..FaultConfig::default()
    };
    let (demo, shutdown) = start_demo(BTreeMap::from([(ServiceName::Products, slow)])).await;
    let token = issue_token(&demo, "user-1", "bff-mobile", "RS256");
    let bounded = start_bff::<bff_mobile::Mobile>(&demo, &shutdown, |config| {
        config.server.max_fan_out = 2.try_into().expect("non-zero");
        config.own.max_batch_operations = 8;
    })
    .await;
    let answer = eight_products(&bounded, &token).await;
    assert_eq!(answer.status, 200);
    for index in 0..8 {
        assert!(
            answer.body[index]["data"]["product"]["name"].is_string(),
            "every product resolved: {}",
            answer.body
        );
    }
    let products = demo.requests(ServiceName::Products);
    assert_eq!(products.received(), 8);
    assert_eq!(
        products.peak_in_flight(),
        2,
        "two at a time, never more (and the slots were used)"
    );

    // The same query with the default bound has its eight calls under way together.
    let unbounded = start_bff::<bff_mobile::Mobile>(&demo, &shutdown, |config| {
        config.own.max_batch_operations = 8;
    })
    .await;
    assert_eq!(eight_products(&unbounded, &token).await.status, 200);
    assert!(
        products.peak_in_flight() > 2,
        "{}",
        products.peak_in_flight()
    );
    shutdown.trigger();
}
