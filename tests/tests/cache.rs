//! The response cache against demo-services: what is kept, for whom, for
//! how long, what a failing service is replaced with, and how a tag is
//! dropped by every instance. The services say what may be kept: products
//! are `public, max-age=60, stale-while-revalidate=30, stale-if-error=600`
//! and tagged `product:{id}`, a user is `private, max-age=30`, an order
//! `no-store`.

use std::{collections::BTreeMap, sync::Arc};

use bff_web::Web;
use demo_services::{DemoServices, FaultConfig, ServiceName};
use futures_util::future::join_all;
use gateway_core::{
    RequestContext,
    bff::BffConfig,
    cache::{CacheConfig, ResponseCache},
    config::{Delay, HumanDuration, ServiceUrl},
    downstream::{DownstreamClient, DownstreamConfig, DownstreamError},
    identity::VerifiedIdentity,
    lifecycle::Shutdown,
    observability::Telemetry,
    server::Running,
    stores::RedisUrl,
    stores::SharedStores,
    tls::ClientTls,
};
use platform_tests::{
    Answer, Platform, RedisServer, base_url, eventually, get_with_token, issue_token, metric, send,
    start_bff, start_demo,
};
use serde_json::json;
use shared_schema::{
    AuthMethod, Identity,
    accounts::{Order, User},
    catalog::Product,
};

/// The product every page here shows.
const PRODUCT: u64 = 42;

fn received(demo: &DemoServices, service: ServiceName) -> u64 {
    demo.requests(service).received()
}

/// bff-web against `demo` without rate limiting (the tests poll), configured by `configure`.
async fn web(
    demo: &DemoServices,
    shutdown: &Shutdown,
    configure: impl FnOnce(&mut BffConfig<Web>),
) -> Running {
    start_bff::<Web>(demo, shutdown, |config| {
        config.rate_limit.enabled = false;
        // The product's own entry is watched: the page lists no related products.
        config.own = platform_tests::web_without_related_products();
        configure(config);
    })
    .await
}

/// The product page of [`PRODUCT`], as `user-1`.
async fn page(web: &Running, demo: &DemoServices) -> Answer {
    let token = issue_token(demo, "user-1", "bff-web", "RS256");
    get_with_token(
        &format!("{}/api/product-page/{PRODUCT}", base_url(web)),
        &token,
    )
    .await
}

/// The `desc` of every `Server-Timing` entry of `part` (`None` for an
/// entry without one), in order.
fn timings(answer: &Answer, part: &str) -> Vec<Option<String>> {
    answer
        .header("server-timing")
        .split(", ")
        .filter(|entry| entry.split(';').next() == Some(part))
        .map(|entry| {
            entry
                .split(';')
                .find_map(|field| field.strip_prefix("desc="))
                .map(|desc| desc.trim_matches('"').to_owned())
        })
        .collect()
}

/// Products stay fresh for `fresh` (their own `max-age` is a minute), and
/// are then served only instead of a failure, or also while refreshed.
fn products_fresh_for(config: &mut BffConfig<Web>, fresh: HumanDuration, revalidate: bool) {
    let cache = &mut config
        .downstream
        .get_mut("products")
        .expect("bff-web calls products")
        .cache;
    cache.max_ttl = fresh;
    if !revalidate {
        cache.stale_while_revalidate = Some(Delay::default());
    }
}

#[tokio::test]
async fn a_second_get_within_its_ttl_makes_no_downstream_call() {
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let web = web(&demo, &shutdown, |_| {}).await;

    let first = page(&web, &demo).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(timings(&first, "products"), [None], "fetched");
    assert_eq!(received(&demo, ServiceName::Products), 1);

    let second = page(&web, &demo).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(second.body["product"], first.body["product"]);
    assert_eq!(
        received(&demo, ServiceName::Products),
        1,
        "served from the cache"
    );
    assert_eq!(timings(&second, "products"), [Some("hit".to_owned())]);
    // Prices say nothing about caching: they are fetched every time.
    assert_eq!(received(&demo, ServiceName::Pricing), 2);

    let admin = web.admin_addr();
    let lookups = async |result| {
        metric(
            admin,
            "cache_lookups_total",
            &[("service", "products"), ("result", result)],
        )
        .await
    };
    assert_eq!(lookups("miss").await, Some(1.0));
    assert_eq!(lookups("hit").await, Some(1.0));
    shutdown.trigger();
}

/// A client of `service` going through `cache`, as a BFF builds it.
fn client(demo: &DemoServices, service: ServiceName, cache: &ResponseCache) -> DownstreamClient {
    configured_client(demo, service, cache, |_| {})
}

/// [`client`], with its settings changed by `configure`.
fn configured_client(
    demo: &DemoServices,
    service: ServiceName,
    cache: &ResponseCache,
    configure: impl FnOnce(&mut DownstreamConfig),
) -> DownstreamClient {
    let name = match service {
        ServiceName::Orders => "orders",
        ServiceName::Users => "users",
        _ => "products",
    };
    let mut config =
        DownstreamConfig::at(ServiceUrl::parse(&demo.url(service)).expect("a demo service URL"));
    configure(&mut config);
    DownstreamClient::new(
        name,
        &config,
        &ClientTls::load(None).expect("tls"),
        &Telemetry::new("bff-test"),
        Some(cache),
    )
    .expect("a client")
}

/// An in-process cache, and the telemetry its lookups are counted in.
fn local_cache() -> (ResponseCache, Telemetry) {
    let telemetry = Telemetry::new("bff-test");
    let cache = ResponseCache::new(
        &CacheConfig::default(),
        &SharedStores::default(),
        &telemetry,
        &Shutdown::new(),
    );
    (cache, telemetry)
}

/// The context of a request made by `subject` of `tenant`.
fn caller(subject: &str, tenant: &str) -> RequestContext {
    scoped_caller(subject, tenant, &[])
}

/// [`caller`], whose token grants `scopes`.
fn scoped_caller(subject: &str, tenant: &str, scopes: &[&str]) -> RequestContext {
    let identity = VerifiedIdentity::new(Identity {
        subject: subject.to_owned(),
        tenant: tenant.to_owned(),
        scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
        client: None,
        auth_method: AuthMethod::Jwt,
    })
    .expect("a valid identity");
    RequestContext {
        identity: Some(Arc::new(identity)),
        ..RequestContext::detached()
    }
}

#[tokio::test]
async fn no_store_answers_are_never_cached() {
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let (cache, telemetry) = local_cache();
    let orders = client(&demo, ServiceName::Orders, &cache);
    let user = demo.catalog().user(1).expect("user 1");
    let order = demo.catalog().orders_of(1)[0].id;
    let owner = caller("user-1", &user.tenant);

    for expected in 1..=3 {
        let fetched: Order = orders
            .get(format!("/orders/{order}"), &owner)
            .await
            .expect("the order");
        assert_eq!(fetched.id, order);
        assert_eq!(received(&demo, ServiceName::Orders), expected);
    }
    // After the first answer, calls go straight to the service, not waiting for each other.
    let text = telemetry.encode();
    assert!(
        text.contains(r#"cache_lookups_total{bff="bff-test",service="orders",result="pass"} 2"#),
        "{text}"
    );
    shutdown.trigger();
}

#[tokio::test]
async fn private_answers_are_kept_per_caller_as_the_service_sees_them() {
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let (cache, _) = local_cache();
    let users = client(&demo, ServiceName::Users, &cache);
    let user = demo.catalog().user(1).expect("user 1");
    let calls = || received(&demo, ServiceName::Users);

    let owner = caller("user-1", &user.tenant);
    let fetched: User = users.get("/users/1", &owner).await.expect("the user");
    assert_eq!(fetched.id, 1);
    let again: User = users.get("/users/1", &owner).await.expect("the user");
    assert_eq!(again.id, 1);
    assert_eq!(calls(), 1, "the owner's second read is a hit");

    // Another tenant asks the service, which has no such user for it.
    let stranger = caller("user-1", "another-tenant");
    let refused = users.get::<User>("/users/1", &stranger).await;
    assert!(
        matches!(refused, Err(DownstreamError::NotFound { .. })),
        "{refused:?}"
    );
    assert_eq!(calls(), 2);

    // A colleague in the same tenant gets an entry of their own.
    let colleague = caller("user-2", &user.tenant);
    let fetched: User = users.get("/users/1", &colleague).await.expect("the user");
    assert_eq!(fetched.id, 1);
    assert_eq!(calls(), 3);
    let _: User = users.get("/users/1", &colleague).await.expect("the user");
    let _: User = users.get("/users/1", &owner).await.expect("the user");
    assert_eq!(calls(), 3, "both kept their own");

    // The owner again with a token of other scopes: the service is told
    // something else about the caller, so the answer is not the same entry.
    let scoped = scoped_caller("user-1", &user.tenant, &["users:read"]);
    let _: User = users.get("/users/1", &scoped).await.expect("the user");
    assert_eq!(calls(), 4);
    shutdown.trigger();
}

#[tokio::test]
async fn concurrent_misses_for_one_key_make_one_call() {
    // Slow enough that every caller arrives while the first call is under way.
    let slow = FaultConfig {
        latency: Some(HumanDuration::from_millis(300)),
        ..FaultConfig::default()
    };
    let (demo, shutdown) = start_demo(BTreeMap::from([(ServiceName::Products, slow)])).await;
    let (cache, telemetry) = local_cache();
    let products = client(&demo, ServiceName::Products, &cache);
    let user = demo.catalog().user(1).expect("user 1");

    let callers: Vec<RequestContext> = (0..100)
        .map(|n| caller(&format!("user-{n}"), &user.tenant))
        .collect();
    let answers = join_all(
        callers
            .iter()
            .map(|context| products.get::<Product>(format!("/products/{PRODUCT}"), context)),
    )
    .await;
    let expected = demo.catalog().product(PRODUCT).expect("the product");
    for answer in answers {
        assert_eq!(answer.expect("the product").name, expected.name);
    }
    assert_eq!(received(&demo, ServiceName::Products), 1);
    let text = telemetry.encode();
    assert!(
        text.contains(r#"cache_lookups_total{bff="bff-test",service="products",result="miss"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"cache_lookups_total{bff="bff-test",service="products",result="hit"} 99"#),
        "{text}"
    );
    shutdown.trigger();
}

#[tokio::test]
async fn stale_if_error_serves_the_old_entry_while_the_service_is_down() {
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let web = web(&demo, &shutdown, |config| {
        products_fresh_for(config, HumanDuration::from_millis(200), false);
        // Retried failures would open the circuit before the last check here.
        let products = config.downstream.get_mut("products").expect("products");
        products.breaker.enabled = false;
    })
    .await;
    let first = page(&web, &demo).await;
    assert_eq!(first.status, 200, "{}", first.body);

    demo.faults(ServiceName::Products).set(FaultConfig {
        down: true,
        ..FaultConfig::default()
    });
    let mut served = None;
    eventually("the stale product stands in for the failure", async || {
        let answer = page(&web, &demo).await;
        let stale = timings(&answer, "products").contains(&Some("stale".to_owned()));
        served = Some(answer);
        stale
    })
    .await;
    let served = served.expect("a page");
    assert_eq!(served.status, 200, "{}", served.body);
    assert_eq!(served.body["product"], first.body["product"]);
    assert_eq!(
        timings(&served, "products"),
        [Some("unavailable".to_owned()), Some("stale".to_owned())],
        "the failed call, then the stale answer"
    );
    assert_eq!(
        served.header("bff-partial"),
        "",
        "a stale answer is an answer"
    );

    // A product never fetched has nothing to stand in for it.
    let token = issue_token(&demo, "user-1", "bff-web", "RS256");
    let other = get_with_token(&format!("{}/api/product-page/43", base_url(&web)), &token).await;
    other.assert_problem(502, "DOWNSTREAM_UNAVAILABLE", "no entry for product 43");
    shutdown.trigger();
}

#[tokio::test]
async fn callers_waiting_behind_a_failed_call_serve_the_stale_entry_without_calling() {
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let (cache, telemetry) = local_cache();
    let products = configured_client(&demo, ServiceName::Products, &cache, |config| {
        config.timeout = HumanDuration::from_millis(300);
        config.cache.max_ttl = HumanDuration::from_millis(200);
        config.cache.stale_while_revalidate = Some(Delay::default());
    });
    let user = demo.catalog().user(1).expect("user 1");
    let context = caller("user-1", &user.tenant);
    let path = format!("/products/{PRODUCT}");
    let expected = demo.catalog().product(PRODUCT).expect("the product");
    let product: Product = products.get(path.clone(), &context).await.expect("fetched");
    assert_eq!(product.name, expected.name);

    // The service hangs past the call's timeout from now on.
    demo.faults(ServiceName::Products).set(FaultConfig {
        latency: Some(HumanDuration::from_secs(2)),
        ..FaultConfig::default()
    });
    let stale_served = || {
        let text = telemetry.encode();
        text.lines()
            .find(|line| {
                line.starts_with("cache_lookups_total{") && line.contains("result=\"stale\"")
            })
            .and_then(|line| line.rsplit_once(' ')?.1.parse::<u64>().ok())
            .unwrap_or_default()
    };
    eventually(
        "the entry is stale and stands in for a failed call",
        async || {
            let product: Product = products.get(path.clone(), &context).await.expect("served");
            assert_eq!(product.name, expected.name);
            stale_served() == 1
        },
    )
    .await;
    assert_eq!(
        received(&demo, ServiceName::Products),
        2,
        "the fill, one failed call"
    );

    // Ten callers at once: the first calls and fails, the nine behind it
    // serve the stale entry without calling the hanging service in turn.
    let answers = join_all((0..10).map(|_| products.get::<Product>(path.clone(), &context))).await;
    for answer in answers {
        assert_eq!(answer.expect("the stale product").name, expected.name);
    }
    assert_eq!(stale_served(), 11);
    assert_eq!(
        received(&demo, ServiceName::Products),
        3,
        "one more call, not ten"
    );
    shutdown.trigger();
}

#[tokio::test]
async fn an_open_circuit_serves_the_stale_entry_without_a_call() {
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let web = web(&demo, &shutdown, |config| {
        products_fresh_for(config, HumanDuration::from_millis(200), false);
        let products = config.downstream.get_mut("products").expect("products");
        products.breaker.consecutive_failures = 1;
        products.breaker.open_for = HumanDuration::from_secs(60);
        products.retry.max_retries = 0;
    })
    .await;
    assert_eq!(page(&web, &demo).await.status, 200);

    demo.faults(ServiceName::Products).set(FaultConfig {
        down: true,
        ..FaultConfig::default()
    });
    // The first failure stands in the stale entry and opens the circuit.
    eventually("the stale product stands in for the failure", async || {
        timings(&page(&web, &demo).await, "products")
            == [Some("unavailable".to_owned()), Some("stale".to_owned())]
    })
    .await;
    let received_before = received(&demo, ServiceName::Products);
    let answer = page(&web, &demo).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        timings(&answer, "products"),
        [Some("circuit_open".to_owned()), Some("stale".to_owned())]
    );
    assert_eq!(
        received(&demo, ServiceName::Products),
        received_before,
        "the service is not called while the circuit is open"
    );
    shutdown.trigger();
}

#[tokio::test]
async fn every_bff_caches_the_product_contract() {
    let platform = Platform::start().await;
    let demo = platform.demo();
    let products = || received(demo, ServiceName::Products);
    let partner = format!("{}/v1/products/{PRODUCT}", base_url(platform.partner()));
    for _ in 0..2 {
        let answer = get_with_token(&partner, &platform.token("bff-partner")).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    assert_eq!(products(), 1, "bff-partner fetched the product once");

    let query = json!({ "query": format!("{{ product(id: {PRODUCT}) {{ name }} }}") });
    for _ in 0..2 {
        let answer = send(
            reqwest::Client::new()
                .post(format!("{}/graphql", base_url(platform.mobile())))
                .bearer_auth(platform.token("bff-mobile"))
                .header("content-type", "application/json")
                .body(query.to_string()),
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(
            answer.body["data"]["product"]["name"].is_string(),
            "{}",
            answer.body
        );
    }
    // Each BFF keeps its own in-process tier (no Redis here).
    assert_eq!(products(), 2, "bff-mobile fetched it once too");
    platform.stop().await;
}

#[tokio::test]
async fn a_stale_entry_is_served_at_once_and_refreshed_once_in_the_background() {
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let web = web(&demo, &shutdown, |config| {
        products_fresh_for(config, HumanDuration::from_secs(1), true);
    })
    .await;
    assert_eq!(page(&web, &demo).await.status, 200);
    assert_eq!(received(&demo, ServiceName::Products), 1);

    // The refresh will take a second: the stale read that starts it is
    // answered while it is still under way at the service.
    demo.faults(ServiceName::Products).set(FaultConfig {
        latency: Some(HumanDuration::from_secs(1)),
        ..FaultConfig::default()
    });
    eventually("the entry is stale", async || {
        timings(&page(&web, &demo).await, "products") == [Some("stale".to_owned())]
    })
    .await;
    eventually("the refresh is under way, after the answer", async || {
        demo.requests(ServiceName::Products).in_flight() == 1
    })
    .await;
    for _ in 0..5 {
        let answer = page(&web, &demo).await;
        assert_eq!(answer.status, 200);
        let products = timings(&answer, "products");
        assert!(
            products == [Some("stale".to_owned())] || products == [Some("hit".to_owned())],
            "no call made for the page: {products:?}"
        );
    }
    eventually("the refreshed entry is served", async || {
        timings(&page(&web, &demo).await, "products") == [Some("hit".to_owned())]
    })
    .await;
    assert_eq!(
        received(&demo, ServiceName::Products),
        2,
        "one refresh, however many stale reads"
    );
    shutdown.trigger();
}

#[tokio::test]
async fn through_redis_an_instance_serves_a_private_entry_to_its_owner_only() {
    let redis = RedisServer::start().await;
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    // Two instances' caches and clients of the users service, sharing Redis.
    let instance = async || {
        let stores = SharedStores::open(&redis.url(), &shutdown).expect("a valid URL");
        let connected = stores.redis().expect("a Redis store").clone();
        eventually("connected to Redis", async || {
            connected.connection().is_some()
        })
        .await;
        let cache = ResponseCache::new(
            &CacheConfig::default(),
            &stores,
            &Telemetry::new("bff-test"),
            &shutdown,
        );
        client(&demo, ServiceName::Users, &cache)
    };
    let (one, other) = (instance().await, instance().await);
    let user = demo.catalog().user(1).expect("user 1");
    let calls = || received(&demo, ServiceName::Users);

    let owner = caller("user-1", &user.tenant);
    let _: User = one.get("/users/1", &owner).await.expect("the user");
    assert_eq!(calls(), 1);
    // The entry and the marker saying the path is kept per caller.
    eventually("both reached Redis", async || {
        redis
            .command_calls()
            .await
            .get("set")
            .copied()
            .unwrap_or_default()
            >= 2
    })
    .await;

    let stranger = caller("user-1", "another-tenant");
    let refused = other.get::<User>("/users/1", &stranger).await;
    assert!(
        matches!(refused, Err(DownstreamError::NotFound { .. })),
        "{refused:?}"
    );
    assert_eq!(calls(), 2, "the other tenant asked the service");
    let fetched: User = other.get("/users/1", &owner).await.expect("the user");
    assert_eq!(fetched.id, 1);
    assert_eq!(calls(), 2, "the owner's entry came from Redis");
    shutdown.trigger();
}

/// `DELETE /cache/tags/{tag}` on `bff`'s admin listener.
async fn invalidate(bff: &Running, tag: &str) -> Answer {
    send(reqwest::Client::new().delete(format!("http://{}/cache/tags/{tag}", bff.admin_addr())))
        .await
}

#[tokio::test]
async fn a_tag_invalidated_on_one_instance_is_dropped_by_every_instance() {
    let redis = RedisServer::start().await;
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let shared = |config: &mut BffConfig<Web>| {
        config.redis.url = RedisUrl::parse(&redis.url()).expect("a valid URL");
    };
    let first = web(&demo, &shutdown, shared).await;
    let second = web(&demo, &shutdown, shared).await;
    eventually("both instances listen for invalidations", async || {
        invalidate(&first, "nothing").await.body["instances_notified"] == 2
    })
    .await;

    assert_eq!(page(&second, &demo).await.status, 200);
    assert_eq!(received(&demo, ServiceName::Products), 1);
    // Written in the background, by a script that stores the entry, then tags it.
    eventually("the answer reached Redis", async || {
        redis
            .command_calls()
            .await
            .get("zadd")
            .copied()
            .unwrap_or_default()
            >= 1
    })
    .await;
    // The first instance finds the second's answer in Redis.
    let shared_hit = page(&first, &demo).await;
    assert_eq!(timings(&shared_hit, "products"), [Some("hit".to_owned())]);
    assert_eq!(received(&demo, ServiceName::Products), 1);

    let invalidated = invalidate(&first, &format!("product:{PRODUCT}")).await;
    assert_eq!(invalidated.status, 200, "{}", invalidated.body);
    assert_eq!(
        invalidated.body["shared_entries"], 1,
        "{}",
        invalidated.body
    );
    assert_eq!(invalidated.body["instances_notified"], 2);
    // Until the second instance applies it, its page is a hit; then
    // neither of its tiers has the product, and it is fetched again.
    eventually("the second instance dropped the product", async || {
        let answer = page(&second, &demo).await;
        assert_eq!(answer.status, 200);
        timings(&answer, "products") == [None]
    })
    .await;
    assert_eq!(received(&demo, ServiceName::Products), 2);
    let applied = metric(
        second.admin_addr(),
        "cache_invalidations_total",
        &[("origin", "peer")],
    )
    .await;
    assert!(applied >= Some(1.0), "counted: {applied:?}");
    shutdown.trigger();
}
