//! bff-web's pages end to end: each against its committed JSON Schema,
//! batched (counted at the services), conditional, compressed, private to
//! their user, partial when an optional service fails, and checkout carried
//! out once across two instances sharing Redis.

use std::collections::BTreeMap;

use demo_services::{DemoServices, FaultConfig, ServiceName, TokenRequest};
use gateway_core::server::Running;
use platform_tests::{
    Answer, Platform, PlatformOptions, RedisServer, base_url, eventually, get_with_token,
    instances_sharing_redis, issue_token, repository, send, start_demo,
};
use serde_json::{Value, json};

use crate::encoding::{as_sent, decoded};

/// The listing's default page size.
const LISTING_LIMIT: usize = 24;
/// The product page's default number of related products.
const RELATED_PRODUCTS: usize = 8;

/// bff-web's committed page schemas, compiled once per test.
struct PageSchemas {
    schemas: boon::Schemas,
    compiled: BTreeMap<&'static str, boon::SchemaIndex>,
}

impl PageSchemas {
    fn load() -> Self {
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        let mut compiled = BTreeMap::new();
        for name in [
            "product-page.json",
            "category-listing.json",
            "dashboard.json",
            "order.json",
        ] {
            let path = repository().join("bff-web/schemas").join(name);
            let index = compiler
                .compile(&path.to_string_lossy(), &mut schemas)
                .unwrap_or_else(|error| panic!("{name} is a valid schema: {error:#}"));
            compiled.insert(name, index);
        }
        Self { schemas, compiled }
    }

    /// Whether `page` matches `schema`.
    fn accepts(&self, schema: &str, page: &Value) -> bool {
        self.schemas.validate(page, self.compiled[schema]).is_ok()
    }

    #[track_caller]
    fn assert_valid(&self, schema: &str, page: &Value) {
        let index = self.compiled[schema];
        if let Err(error) = self.schemas.validate(page, index) {
            panic!("the page does not match {schema}: {error:#}\n{page:#}");
        }
    }
}

fn web_url(platform: &Platform, path: &str) -> String {
    format!("{}{path}", base_url(platform.web()))
}

/// A bff-web token for demo user `user` with only `scope`.
fn token_with_scope(demo: &DemoServices, subject: &str, scope: &str) -> String {
    demo.token(&TokenRequest {
        subject: subject.to_owned(),
        audience: "bff-web".to_owned(),
        alg: Some("ES256".to_owned()),
        scope: Some(scope.to_owned()),
        ttl: None,
        format: None,
    })
    .expect("the issuer grants the scope")
    .access_token
}

/// Demo users with at least one order, lowest id first.
fn users_with_orders(demo: &DemoServices, count: usize) -> Vec<u64> {
    let users: Vec<u64> = (1..200)
        .filter(|id| !demo.catalog().orders_of(*id).is_empty())
        .take(count)
        .collect();
    assert_eq!(users.len(), count, "the demo data has users with orders");
    users
}

/// A category with more products than one listing page.
fn large_category(demo: &DemoServices) -> &'static str {
    [
        "audio", "kitchen", "office", "outdoor", "home", "travel", "sports", "garden",
    ]
    .into_iter()
    .find(|slug| {
        demo.catalog()
            .category_facets(slug)
            .is_some_and(|facets| facets.total as usize > 2 * LISTING_LIMIT)
    })
    .expect("a category holds more than two pages")
}

/// `POST /api/orders` with `body`, `Idempotency-Key: key` and JSON as its type.
async fn checkout(running: &Running, token: &str, key: &str, body: &Value) -> Answer {
    send(
        reqwest::Client::new()
            .post(format!("{}/api/orders", base_url(running)))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(body.to_string()),
    )
    .await
}

fn set_down(demo: &DemoServices, service: ServiceName) {
    demo.faults(service).set(FaultConfig {
        down: true,
        ..FaultConfig::default()
    });
}

#[tokio::test]
async fn every_page_matches_its_schema_whole_and_degraded() {
    let schemas = PageSchemas::load();
    let platform = Platform::start().await;
    let demo = platform.demo();
    let users = users_with_orders(demo, 2);
    let token = platform.token_for(&format!("user-{}", users[0]), "bff-web", "ES256");
    let category = large_category(demo);

    let product = get_with_token(&web_url(&platform, "/api/product-page/42"), &token).await;
    assert_eq!(product.status, 200, "{}", product.body);
    schemas.assert_valid("product-page.json", &product.body);
    assert_eq!(
        product.body["related"].as_array().map(Vec::len),
        Some(RELATED_PRODUCTS)
    );
    // The schema is strict: a field more, a required one less or a wrong
    // type is caught.
    for (pointer, change) in [
        ("", json!({"extra": true})),
        ("/product", json!({"sku": 42})),
        ("/related/0", json!({"price": {"currency": "euro"}})),
    ] {
        let mut changed = product.body.clone();
        let target = changed.pointer_mut(pointer).expect("the part exists");
        for (key, value) in change.as_object().expect("an object") {
            target[key] = value.clone();
        }
        assert!(
            !schemas.accepts("product-page.json", &changed),
            "{pointer}: {change}"
        );
    }
    let mut without_product = product.body.clone();
    without_product
        .as_object_mut()
        .expect("an object")
        .remove("product");
    assert!(!schemas.accepts("product-page.json", &without_product));
    let histogram = &product.body["reviews"]["histogram"];
    let counted: u64 = (1..=5)
        .map(|stars| histogram[stars.to_string()].as_u64().expect("a count"))
        .sum();
    assert_eq!(json!(counted), product.body["reviews"]["total"]);

    let first = get_with_token(
        &web_url(&platform, &format!("/api/categories/{category}/products")),
        &token,
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.body);
    schemas.assert_valid("category-listing.json", &first.body);
    assert_eq!(
        first.body["items"].as_array().map(Vec::len),
        Some(LISTING_LIMIT)
    );
    let cursor = first.body["pageInfo"]["nextCursor"]
        .as_str()
        .expect("a next page");
    let second = get_with_token(
        &web_url(
            &platform,
            &format!("/api/categories/{category}/products?cursor={cursor}"),
        ),
        &token,
    )
    .await;
    assert_eq!(second.status, 200, "{}", second.body);
    schemas.assert_valid("category-listing.json", &second.body);
    let ids = |page: &Value| -> Vec<u64> {
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|item| item["product"]["id"].as_u64().expect("an id"))
            .collect()
    };
    assert!(
        ids(&second.body)
            .iter()
            .all(|id| !ids(&first.body).contains(id)),
        "the second page goes on where the first stopped"
    );

    let dashboard = get_with_token(&web_url(&platform, "/api/me/dashboard"), &token).await;
    assert_eq!(dashboard.status, 200, "{}", dashboard.body);
    schemas.assert_valid("dashboard.json", &dashboard.body);
    assert_eq!(dashboard.body["profile"]["id"], users[0]);

    let placed = checkout(
        platform.web(),
        &token,
        "schema-1",
        &json!({"lines": [{"productId": 42, "quantity": 2}, {"productId": 7, "quantity": 1}]}),
    )
    .await;
    assert_eq!(placed.status, 201, "{}", placed.body);
    schemas.assert_valid("order.json", &placed.body);
    let location = placed.header("location").to_owned();
    assert_eq!(location, format!("/api/orders/{}", placed.body["id"]));
    let order = get_with_token(&web_url(&platform, &location), &token).await;
    assert_eq!(order.status, 200, "{}", order.body);
    schemas.assert_valid("order.json", &order.body);
    assert_eq!(order.body, placed.body, "the order is read back as placed");

    // Every optional part failing at once: the pages keep their shape. (New
    // pages and another user: what was fetched above could be served stale.)
    set_down(demo, ServiceName::Pricing);
    set_down(demo, ServiceName::Reviews);
    set_down(demo, ServiceName::Recommendations);
    let product = get_with_token(&web_url(&platform, "/api/product-page/43"), &token).await;
    assert_eq!(product.status, 200, "{}", product.body);
    schemas.assert_valid("product-page.json", &product.body);
    assert_eq!(product.body["price"], Value::Null);
    assert_eq!(product.body["reviews"], Value::Null);
    assert!(product.body["missing"]["price"].is_string());
    let listing = get_with_token(
        &web_url(
            &platform,
            &format!("/api/categories/{category}/products?sort=newest"),
        ),
        &token,
    )
    .await;
    assert_eq!(listing.status, 200, "{}", listing.body);
    schemas.assert_valid("category-listing.json", &listing.body);
    assert!(listing.body["missing"]["price"].is_string());
    let other = platform.token_for(&format!("user-{}", users[1]), "bff-web", "ES256");
    let dashboard = get_with_token(&web_url(&platform, "/api/me/dashboard"), &other).await;
    assert_eq!(dashboard.status, 200, "{}", dashboard.body);
    schemas.assert_valid("dashboard.json", &dashboard.body);
    assert_eq!(dashboard.body["recommendations"], Value::Null);
    assert!(dashboard.body["missing"]["recommendations"].is_string());
    platform.stop().await;
}

/// Requests `path` once and returns what `services` received for it.
async fn calls_for(
    platform: &Platform,
    token: &str,
    path: &str,
    services: &[ServiceName],
) -> BTreeMap<ServiceName, u64> {
    let before: Vec<u64> = services
        .iter()
        .map(|service| platform.demo().requests(*service).received())
        .collect();
    let answer = get_with_token(&web_url(platform, path), token).await;
    assert_eq!(answer.status, 200, "{path}: {}", answer.body);
    assert_eq!(answer.body["missing"], json!({}), "{path}");
    services
        .iter()
        .zip(before)
        .map(|(service, before)| {
            (
                *service,
                platform.demo().requests(*service).received() - before,
            )
        })
        .collect()
}

/// The ids a batch call asked for (`?ids=1,2,3`).
fn batch_ids(demo: &DemoServices, service: ServiceName) -> usize {
    let uri = demo.requests(service).last().expect("a call").uri;
    let ids = uri
        .split_once("ids=")
        .unwrap_or_else(|| panic!("{uri} is a batch call"))
        .1;
    ids.split(',').count()
}

#[tokio::test]
async fn pages_get_prices_and_stock_in_one_call_per_service() {
    let platform = Platform::start().await;
    let demo = platform.demo();
    let user = users_with_orders(demo, 1)[0];
    let token = platform.token_for(&format!("user-{user}"), "bff-web", "ES256");
    let category = large_category(demo);
    use ServiceName::{Inventory, Orders, Pricing, Products, Recommendations, Users};

    let calls = calls_for(
        &platform,
        &token,
        &format!("/api/categories/{category}/products?limit={LISTING_LIMIT}"),
        &[Products, Pricing, Inventory],
    )
    .await;
    // Products: the page of the listing and the category's facets.
    assert_eq!(
        calls,
        BTreeMap::from([(Products, 2), (Pricing, 1), (Inventory, 1)]),
        "a {LISTING_LIMIT}-item listing"
    );
    assert_eq!(batch_ids(demo, Pricing), LISTING_LIMIT);
    assert_eq!(batch_ids(demo, Inventory), LISTING_LIMIT);

    let calls = calls_for(
        &platform,
        &token,
        "/api/product-page/42",
        &[Products, Pricing, Inventory],
    )
    .await;
    // Products: the product and its related products.
    assert_eq!(
        calls,
        BTreeMap::from([(Products, 2), (Pricing, 1), (Inventory, 1)]),
        "a product page with {RELATED_PRODUCTS} related products"
    );
    assert_eq!(batch_ids(demo, Pricing), 1 + RELATED_PRODUCTS);
    assert_eq!(batch_ids(demo, Inventory), 1 + RELATED_PRODUCTS);

    let calls = calls_for(
        &platform,
        &token,
        "/api/me/dashboard",
        &[Users, Orders, Recommendations, Products, Pricing],
    )
    .await;
    assert_eq!(
        calls,
        BTreeMap::from([
            (Users, 1),
            (Orders, 1),
            (Recommendations, 1),
            (Products, 1),
            (Pricing, 1)
        ]),
        "the dashboard: every order line's and recommendation's product in one call"
    );
    platform.stop().await;
}

#[tokio::test]
async fn each_page_has_its_cache_control_and_a_repeat_with_its_etag_is_a_304() {
    let platform = Platform::start().await;
    let demo = platform.demo();
    let user = users_with_orders(demo, 1)[0];
    let token = platform.token_for(&format!("user-{user}"), "bff-web", "ES256");
    let category = large_category(demo);
    let client = reqwest::Client::new();
    for (path, cache_control) in [
        (
            "/api/product-page/42".to_owned(),
            "private, max-age=30, stale-while-revalidate=60",
        ),
        (
            format!("/api/categories/{category}/products"),
            "private, max-age=30, stale-while-revalidate=60",
        ),
        ("/api/me/dashboard".to_owned(), "private, no-cache"),
    ] {
        let page = get_with_token(&web_url(&platform, &path), &token).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        assert_eq!(page.header("cache-control"), cache_control, "{path}");
        assert!(
            page.header("vary").contains("accept-encoding"),
            "{path}: {:?}",
            page.headers
        );
        let etag = page.header("etag").to_owned();
        assert!(
            etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
            "{path}: a strong ETag, not {etag:?}"
        );

        let again = client
            .get(web_url(&platform, &path))
            .bearer_auth(&token)
            .header("if-none-match", &etag)
            .send()
            .await
            .expect("answered");
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(again.headers()["etag"], etag.as_str(), "{path}");
        assert_eq!(again.headers()["cache-control"], cache_control, "{path}");
        assert!(again.headers().get("content-encoding").is_none(), "{path}");
        assert!(
            again.bytes().await.expect("read").is_empty(),
            "{path}: a 304 has no body"
        );

        let changed = send(
            client
                .get(web_url(&platform, &path))
                .bearer_auth(&token)
                .header("if-none-match", "\"another-version\""),
        )
        .await;
        assert_eq!(changed.status, 200, "{path}: another tag gets the page");
        assert_eq!(changed.header("etag"), etag, "{path}: the same page");
    }
    let placed = checkout(
        platform.web(),
        &token,
        "cache-control-1",
        &json!({"lines": [{"productId": 42, "quantity": 1}]}),
    )
    .await;
    assert_eq!(placed.status, 201, "{}", placed.body);
    assert_eq!(placed.header("cache-control"), "no-store");
    platform.stop().await;
}

/// `path` with `Accept-Encoding: accept`: its `Content-Encoding` and its body as sent.
async fn raw(platform: &Platform, token: &str, path: &str, accept: &str) -> (String, Vec<u8>) {
    let response = reqwest::Client::new()
        .get(web_url(platform, path))
        .bearer_auth(token)
        .header("accept-encoding", accept)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200, "{path} with {accept}");
    as_sent(response).await
}

#[tokio::test]
async fn br_gzip_and_identity_are_each_negotiated() {
    let platform = Platform::start().await;
    let token = platform.token("bff-web");
    let category = large_category(platform.demo());
    let path = format!("/api/categories/{category}/products");

    let (coding, identity) = raw(&platform, &token, &path, "identity").await;
    assert_eq!(coding, "");
    let page: Value = serde_json::from_slice(&identity).expect("plain JSON");
    assert!(identity.len() > 1024, "a listing is worth compressing");

    let (coding, br) = raw(&platform, &token, &path, "gzip;q=0.5, br").await;
    assert_eq!(coding, "br");
    assert_eq!(decoded(&coding, &br), identity);
    assert!(br.len() * 3 < identity.len(), "br: {} bytes", br.len());

    let (coding, gzip) = raw(&platform, &token, &path, "gzip").await;
    assert_eq!(coding, "gzip");
    assert_eq!(decoded(&coding, &gzip), identity);

    // Under 1 KiB nothing is compressed, whatever the client accepts.
    let small = format!("/api/categories/{category}/products?limit=1");
    let (coding, body) = raw(&platform, &token, &small, "br, gzip").await;
    assert_eq!(coding, "", "{} bytes", body.len());
    serde_json::from_slice::<Value>(&body).expect("plain JSON");
    assert_eq!(page["category"], category);
    platform.stop().await;
}

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_hsts_when_set() {
    let platform = Platform::start_with(PlatformOptions {
        web: bff_web::WebSettings {
            hsts_max_age: Some(gateway_core::config::HumanDuration::from_secs(31_536_000)),
            ..bff_web::WebSettings::default()
        },
        ..PlatformOptions::default()
    })
    .await
    .expect("the platform starts");
    let token = platform.token("bff-web");
    let client = reqwest::Client::new();
    for (context, request) in [
        (
            "a page",
            client
                .get(web_url(&platform, "/api/product-page/42"))
                .bearer_auth(&token),
        ),
        (
            "a problem",
            client.get(web_url(&platform, "/api/product-page/42")),
        ),
        (
            "an unknown route",
            client
                .get(web_url(&platform, "/nowhere"))
                .bearer_auth(&token),
        ),
    ] {
        let answer = send(request).await;
        assert_eq!(
            answer.header("x-content-type-options"),
            "nosniff",
            "{context}"
        );
        assert_eq!(
            answer.header("content-security-policy"),
            "default-src 'none'; frame-ancestors 'none'",
            "{context}"
        );
        assert_eq!(answer.header("referrer-policy"), "no-referrer", "{context}");
        assert_eq!(
            answer.header("strict-transport-security"),
            "max-age=31536000; includeSubDomains",
            "{context}"
        );
    }
    platform.stop().await;

    let platform = Platform::start().await;
    let page = get_with_token(
        &web_url(&platform, "/api/product-page/42"),
        &platform.token("bff-web"),
    )
    .await;
    assert_eq!(
        page.header("strict-transport-security"),
        "",
        "off by default"
    );
    platform.stop().await;
}

#[tokio::test]
async fn the_dashboard_of_one_user_is_never_served_to_another() {
    let platform = Platform::start().await;
    let demo = platform.demo();
    let users = users_with_orders(demo, 2);
    let (a, b) = (users[0], users[1]);
    let token_a = platform.token_for(&format!("user-{a}"), "bff-web", "ES256");
    let token_b = platform.token_for(&format!("user-{b}"), "bff-web", "ES256");
    let client = reqwest::Client::new();
    let dashboard = |token: &str, forged: &[(&str, String)]| {
        let mut request = client
            .get(web_url(&platform, &format!("/api/me/dashboard?user={a}")))
            .bearer_auth(token);
        for (name, value) in forged {
            request = request.header(*name, value);
        }
        send(request)
    };
    let assert_owned_by = |answer: &Answer, user: u64, context: &str| {
        assert_eq!(answer.status, 200, "{context}: {}", answer.body);
        assert_eq!(answer.body["profile"]["id"], user, "{context}");
        let orders = answer.body["recentOrders"].as_array().expect("orders");
        assert!(!orders.is_empty(), "{context}: the user has orders");
        for order in orders {
            let id = order["id"].as_u64().expect("an id");
            assert_eq!(
                demo.catalog().order(id).and_then(|order| order.user_id),
                Some(user),
                "{context}: order {id}"
            );
        }
    };

    let first_a = dashboard(&token_a, &[]).await;
    assert_owned_by(&first_a, a, "A's dashboard");
    // B right after A (A's is in every cache there is), with A's id in the
    // query, a forged identity header and A's ETag.
    let b_page = dashboard(
        &token_b,
        &[
            ("x-auth-subject", format!("user-{a}")),
            ("if-none-match", first_a.header("etag").to_owned()),
        ],
    )
    .await;
    assert_owned_by(&b_page, b, "B's dashboard after A's");
    assert_ne!(b_page.header("etag"), first_a.header("etag"));
    let again_a = dashboard(&token_a, &[]).await;
    assert_owned_by(&again_a, a, "A's again after B's");
    assert_eq!(again_a.body, first_a.body);
    platform.stop().await;
}

#[tokio::test]
async fn with_recommendations_down_the_dashboard_is_whole_but_for_them() {
    let schemas = PageSchemas::load();
    let platform = Platform::start().await;
    let demo = platform.demo();
    let user = users_with_orders(demo, 1)[0];
    let token = platform.token_for(&format!("user-{user}"), "bff-web", "ES256");
    set_down(demo, ServiceName::Recommendations);

    let dashboard = get_with_token(&web_url(&platform, "/api/me/dashboard"), &token).await;
    assert_eq!(dashboard.status, 200, "{}", dashboard.body);
    schemas.assert_valid("dashboard.json", &dashboard.body);
    assert_eq!(dashboard.body["recommendations"], Value::Null);
    assert_eq!(
        dashboard.body["missing"],
        json!({"recommendations": "unavailable"})
    );
    assert_eq!(
        dashboard.header("bff-partial"),
        "recommendations=unavailable"
    );
    assert_eq!(dashboard.body["profile"]["id"], user);
    assert!(
        dashboard.body["recentOrders"]
            .as_array()
            .is_some_and(|orders| !orders.is_empty())
    );
    platform.stop().await;
}

fn posted_orders(demo: &DemoServices) -> u64 {
    demo.requests(ServiceName::Orders).received()
}

#[tokio::test]
async fn checkout_is_carried_out_once_across_two_instances_sharing_redis() {
    let redis = RedisServer::start().await;
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let [first, second] =
        instances_sharing_redis::<bff_web::Web, 2>(&demo, &shutdown, &redis.url()).await;
    let user = users_with_orders(&demo, 1)[0];
    let token = issue_token(&demo, &format!("user-{user}"), "bff-web", "ES256");
    let body = json!({"lines": [{"productId": 42, "quantity": 3}]});

    // 1. A retry with the same key and body gets the kept answer, from the
    //    other instance, and the orders service sees one order.
    let placed = checkout(&first, &token, "retry-1", &body).await;
    assert_eq!(placed.status, 201, "{}", placed.body);
    assert_eq!(posted_orders(&demo), 1);
    // Placed for the verified caller, who is the order's user.
    let posted = demo
        .last_request(ServiceName::Orders)
        .expect("the order was posted");
    assert_eq!(posted.method, "POST");
    assert_eq!(
        posted.header_values("x-auth-subject"),
        [format!("user-{user}").as_str()]
    );
    let order_id = placed.body["id"].as_u64().expect("an order id");
    assert_eq!(
        demo.catalog()
            .order(order_id)
            .and_then(|order| order.user_id),
        Some(user)
    );
    let retried = checkout(&second, &token, "retry-1", &body).await;
    assert_eq!(retried.status, 201, "{}", retried.body);
    assert_eq!(retried.body, placed.body);
    assert_eq!(retried.header("location"), placed.header("location"));
    assert_eq!(retried.header("idempotent-replayed"), "true");
    assert_eq!(posted_orders(&demo), 1, "the retry placed nothing");

    // 2. The same key with another body is refused, on either instance.
    let other = json!({"lines": [{"productId": 42, "quantity": 4}]});
    checkout(&second, &token, "retry-1", &other)
        .await
        .assert_problem(422, "IDEMPOTENCY_KEY_REUSED", "another body");
    assert_eq!(posted_orders(&demo), 1);

    // 3. A retry while the first is under way is a 409; then the first ends.
    demo.faults(ServiceName::Orders).set(FaultConfig {
        latency: Some(gateway_core::config::HumanDuration::from_millis(1500)),
        ..FaultConfig::default()
    });
    let slow = tokio::spawn({
        let (url, token, body) = (base_url(&first), token.clone(), body.clone());
        async move {
            send(
                reqwest::Client::new()
                    .post(format!("{url}/api/orders"))
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .header("idempotency-key", "slow-1")
                    .body(body.to_string()),
            )
            .await
        }
    });
    eventually(
        "the first checkout reaches the orders service",
        async || demo.requests(ServiceName::Orders).in_flight() == 1,
    )
    .await;
    let meanwhile = checkout(&second, &token, "slow-1", &body).await;
    meanwhile.assert_problem(409, "IDEMPOTENCY_IN_PROGRESS", "while the first runs");
    assert_eq!(meanwhile.header("retry-after"), "1");
    let slow = slow.await.expect("the first checkout ends");
    assert_eq!(slow.status, 201, "{}", slow.body);
    assert_eq!(posted_orders(&demo), 2);
    demo.faults(ServiceName::Orders).set(FaultConfig::default());
    let after = checkout(&second, &token, "slow-1", &body).await;
    assert_eq!((after.status, &after.body), (201, &slow.body));

    // 4. No key, no order.
    send(
        reqwest::Client::new()
            .post(format!("{}/api/orders", base_url(&first)))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.to_string()),
    )
    .await
    .assert_problem(400, "IDEMPOTENCY_KEY_MISSING", "no key");

    // Keys are the caller's own: another user's same key places an order.
    let other_user = users_with_orders(&demo, 2)[1];
    let other_token = issue_token(&demo, &format!("user-{other_user}"), "bff-web", "ES256");
    let theirs = checkout(&first, &other_token, "retry-1", &body).await;
    assert_eq!(theirs.status, 201, "{}", theirs.body);
    assert_ne!(theirs.body["id"], placed.body["id"]);
    assert_eq!(posted_orders(&demo), 3);
    shutdown.trigger();
    for instance in [first, second] {
        instance.wait().await;
    }
}

#[tokio::test]
async fn every_bad_input_gets_its_status_and_problem_code() {
    let platform = Platform::start().await;
    let demo = platform.demo();
    let user = users_with_orders(demo, 1)[0];
    let subject = format!("user-{user}");
    let token = platform.token_for(&subject, "bff-web", "ES256");
    let category = large_category(demo);
    let listing = format!("/api/categories/{category}/products");
    let first = get_with_token(&web_url(&platform, &listing), &token).await;
    let cursor = first.body["pageInfo"]["nextCursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let mut tampered = cursor.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ASCII");

    for (query, parameter) in [
        ("sort=cheapest", "sort"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("cursor=garbage", "cursor"),
        (&format!("cursor={tampered}") as &str, "cursor"),
        (&format!("sort=newest&cursor={cursor}"), "cursor"),
    ] {
        let answer =
            get_with_token(&web_url(&platform, &format!("{listing}?{query}")), &token).await;
        answer.assert_problem(400, "INVALID_PARAMETER", query);
        assert_eq!(
            answer.body["errors"][0]["name"], parameter,
            "{query}: {}",
            answer.body
        );
    }
    get_with_token(
        &web_url(&platform, "/api/categories/no-such-thing/products"),
        &token,
    )
    .await
    .assert_problem(404, "NOT_FOUND", "an unknown category");
    get_with_token(&web_url(&platform, "/api/product-page/999999"), &token)
        .await
        .assert_problem(404, "NOT_FOUND", "an unknown product");
    get_with_token(&web_url(&platform, "/api/product-page/forty-two"), &token)
        .await
        .assert_problem(400, "BAD_REQUEST", "a product id that is no number");

    // Scopes, and pages that need a user.
    let no_profile = token_with_scope(demo, &subject, "products:read orders:read");
    get_with_token(&web_url(&platform, "/api/me/dashboard"), &no_profile)
        .await
        .assert_problem(
            403,
            "AUTH_INSUFFICIENT_SCOPE",
            "a dashboard without profile:read",
        );
    let read_only = token_with_scope(demo, &subject, "products:read orders:read");
    checkout(
        platform.web(),
        &read_only,
        "scope-1",
        &json!({"lines": [{"productId": 1, "quantity": 1}]}),
    )
    .await
    .assert_problem(
        403,
        "AUTH_INSUFFICIENT_SCOPE",
        "checkout without orders:write",
    );
    let partner = issue_token(demo, "partner-acme", "bff-web", "ES256");
    checkout(
        platform.web(),
        &partner,
        "partner-1",
        &json!({"lines": [{"productId": 1, "quantity": 1}]}),
    )
    .await
    .assert_problem(403, "USER_REQUIRED", "a checkout by a client, not a user");
    let others_order = (1..200)
        .filter(|id| *id != user)
        .flat_map(|id| demo.catalog().orders_of(id))
        .find(|order| {
            Some(order.tenant.as_str()) == demo.catalog().user(user).map(|u| u.tenant).as_deref()
        })
        .expect("another user of the same tenant has an order");
    get_with_token(
        &web_url(&platform, &format!("/api/orders/{}", others_order.id)),
        &token,
    )
    .await
    .assert_problem(404, "NOT_FOUND", "another user's order");

    // Checkout bodies.
    let post = |key: &str, content_type: &str, body: &str| {
        send(
            reqwest::Client::new()
                .post(web_url(&platform, "/api/orders"))
                .bearer_auth(&token)
                .header("content-type", content_type)
                .header("idempotency-key", key)
                .body(body.to_owned()),
        )
    };
    post(
        "media-1",
        "text/plain",
        r#"{"lines":[{"productId":1,"quantity":1}]}"#,
    )
    .await
    .assert_problem(415, "UNSUPPORTED_MEDIA_TYPE", "text/plain");
    let malformed = post(
        "malformed-1",
        "application/json",
        "{\"lines\": [\n  {\"productId\": 1,}\n]}",
    )
    .await;
    malformed.assert_problem(400, "MALFORMED_JSON", "a trailing comma");
    let detail = malformed.body["detail"].as_str().expect("a detail");
    assert!(detail.contains("line 2, column"), "{detail}");
    for (key, body, fields) in [
        ("fields-1", json!({"lines": []}), vec!["/lines"]),
        ("fields-2", json!({}), vec!["/lines"]),
        (
            "fields-3",
            json!({"lines": vec![json!({"productId": 1, "quantity": 1}); 51]}),
            vec!["/lines"],
        ),
        (
            "fields-4",
            json!({"lines": [{"productId": 0, "quantity": 100}], "coupon": "FREE"}),
            vec!["/coupon", "/lines/0/productId", "/lines/0/quantity"],
        ),
        (
            "fields-5",
            json!({"lines": [{"productId": 1, "quantity": 1}, {"quantity": 0, "price": 1}]}),
            vec!["/lines/1/price", "/lines/1/productId", "/lines/1/quantity"],
        ),
    ] {
        let answer = post(key, "application/json", &body.to_string()).await;
        answer.assert_problem(422, "INVALID_BODY", key);
        let named: Vec<&str> = answer.body["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .map(|param| param["name"].as_str().expect("a name"))
            .collect();
        assert_eq!(named, fields, "{key}: {}", answer.body);
    }
    let before = posted_orders(demo);
    post(
        "unknown-1",
        "application/json",
        &json!({"lines": [{"productId": 999_999, "quantity": 1}]}).to_string(),
    )
    .await
    .assert_problem(422, "ORDER_REJECTED", "a product that does not exist");
    assert_eq!(posted_orders(demo), before + 1, "the service decided");
    platform.stop().await;
}
