//! bff-partner's /v1 contract end to end: every answer of these tests is
//! checked against the committed OpenAPI document (its status documented
//! for the operation, its body valid against the documented schema, its
//! headers described), the product feed paged whole, tenants kept apart,
//! and placing an order carried out once per key, per tenant, across two
//! instances sharing Redis.

use std::{
    collections::BTreeMap,
    num::NonZeroU64,
    sync::{Arc, Mutex},
    time::{Duration, UNIX_EPOCH},
};

use demo_services::{DemoServices, FaultConfig, ServiceName};
use gateway_core::{
    clock::Clock, lifecycle::Shutdown, ratelimit::PlanConfig, server::Running, stores::RedisUrl,
};
use platform_tests::{
    Answer, Platform, PlatformOptions, RedisServer, api_key, base_url, eventually,
    instances_sharing_redis, issue_token, metric, repository, send, serve_on_free_port,
    start_bff_at, start_demo,
};
use serde_json::{Value, json};

/// An API key of tenant `acme` with every partner scope.
const ACME_KEY: &str = "key-acme-partner-0001";
/// An API key of tenant `acme` that may only read products.
const ACME_READ_ONLY_KEY: &str = "key-acme-readonly-0001";

/// The committed OpenAPI document, and what each answer is checked against.
struct Contract {
    document: Value,
    compiler: boon::Compiler,
    schemas: boon::Schemas,
    compiled: BTreeMap<String, boon::SchemaIndex>,
}

impl Contract {
    const LOCATION: &str = "urn:bff-partner:openapi.json";

    /// The committed document.
    fn load() -> Self {
        let path = repository().join("bff-partner/openapi.json");
        let document: Value = serde_json::from_str(
            &std::fs::read_to_string(&path).expect("bff-partner/openapi.json"),
        )
        .expect("the document is JSON");
        Self::of(document)
    }

    /// `document`, as an instance serves it with its own settings.
    fn of(document: Value) -> Self {
        let mut compiler = boon::Compiler::new();
        compiler.set_default_draft(boon::Draft::V2020_12);
        compiler.enable_format_assertions();
        compiler
            .add_resource(Self::LOCATION, document.clone())
            .expect("the document is a resource");
        Self {
            document,
            compiler,
            schemas: boon::Schemas::new(),
            compiled: BTreeMap::new(),
        }
    }

    /// Asserts that `value` is valid against the document's schema `name`
    /// (`#/components/schemas/<name>`).
    #[track_caller]
    fn check_schema(&mut self, name: &str, value: &Value) {
        let location = format!("{}#/components/schemas/{name}", Self::LOCATION);
        let index = self
            .compiler
            .compile(&location, &mut self.schemas)
            .unwrap_or_else(|error| panic!("schema {name} compiles: {error:#}"));
        if let Err(error) = self.schemas.validate(value, index) {
            panic!("{value} does not match schema {name}: {error:#}");
        }
    }

    /// Asserts that `answer` to `method` on path `template` is one the
    /// document describes: the status is documented for the operation,
    /// the body is valid against its schema for the answer's media type,
    /// and every rate-limit, quota, retry, authentication, location,
    /// replay and deprecation header it carries is described.
    #[track_caller]
    fn check(&mut self, method: &str, template: &str, answer: &Answer) {
        let at = format!(
            "{} {template} answered {}",
            method.to_uppercase(),
            answer.status
        );
        let operation = &self.document["paths"][template][method];
        assert!(operation.is_object(), "{at}: the operation is documented");
        let response = &operation["responses"][answer.status.to_string()];
        assert!(
            response.is_object(),
            "{at}: an undocumented status: {}",
            answer.body
        );
        for name in answer.headers.keys().map(|name| name.as_str()) {
            if name.starts_with("ratelimit-")
                || name.starts_with("quota-")
                || matches!(
                    name,
                    "retry-after"
                        | "www-authenticate"
                        | "location"
                        | "idempotent-replayed"
                        | "deprecation"
                        | "sunset"
                        | "link"
                )
            {
                let described = response["headers"].as_object().is_some_and(|headers| {
                    headers.keys().any(|key| key.eq_ignore_ascii_case(name))
                });
                assert!(described, "{at}: header {name} is not described");
            }
        }
        let media = answer
            .content_type()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim();
        let Some(content) = response["content"].as_object() else {
            return;
        };
        assert!(
            content.contains_key(media),
            "{at}: {media:?} is not a documented media type ({:?})",
            content.keys().collect::<Vec<_>>()
        );
        if content[media].get("schema").is_none() {
            return;
        }
        let pointer = format!(
            "/paths/{}/{method}/responses/{}/content/{}/schema",
            escape(template),
            answer.status,
            escape(media)
        );
        let index = match self.compiled.get(&pointer) {
            Some(index) => *index,
            None => {
                let index = self
                    .compiler
                    .compile(&format!("{}#{pointer}", Self::LOCATION), &mut self.schemas)
                    .unwrap_or_else(|error| panic!("{at}: the schema compiles: {error:#}"));
                self.compiled.insert(pointer.clone(), index);
                index
            }
        };
        if let Err(error) = self.schemas.validate(&answer.body, index) {
            panic!(
                "{at}: the body does not match its schema: {error:#}\n{}",
                answer.body
            );
        }
    }
}

/// A JSON Pointer token (RFC 6901) written as a URI fragment.
fn escape(token: &str) -> String {
    token
        .replace('~', "~0")
        .replace('/', "~1")
        .replace('{', "%7B")
        .replace('}', "%7D")
}

/// The platform with the partner API keys of these tests.
async fn platform() -> Platform {
    let scopes = [
        "products:read",
        "orders:read",
        "orders:write",
        "webhooks:manage",
    ];
    Platform::start_with(PlatformOptions {
        partner_api_keys: vec![
            api_key("acme-erp", ACME_KEY, "acme", &scopes),
            api_key(
                "acme-catalogue",
                ACME_READ_ONLY_KEY,
                "acme",
                &["products:read"],
            ),
        ],
        ..PlatformOptions::default()
    })
    .await
    .expect("the platform starts")
}

/// How a request proves who sends it.
#[derive(Debug, Clone, Copy)]
enum Caller<'a> {
    Key(&'a str),
    Token(&'a str),
    Nobody,
}

fn request(method: reqwest::Method, url: String, caller: Caller<'_>) -> reqwest::RequestBuilder {
    let builder = reqwest::Client::new().request(method, url);
    match caller {
        Caller::Key(key) => builder.header("x-api-key", key),
        Caller::Token(token) => builder.bearer_auth(token),
        Caller::Nobody => builder,
    }
}

async fn get(partner: &Running, path: &str, caller: Caller<'_>) -> Answer {
    send(request(
        reqwest::Method::GET,
        format!("{}{path}", base_url(partner)),
        caller,
    ))
    .await
}

async fn place(partner: &Running, caller: Caller<'_>, key: Option<&str>, body: &str) -> Answer {
    let mut builder = request(
        reqwest::Method::POST,
        format!("{}/v1/orders", base_url(partner)),
        caller,
    )
    .header("content-type", "application/json")
    .body(body.to_owned());
    if let Some(key) = key {
        builder = builder.header("idempotency-key", key);
    }
    send(builder).await
}

#[tokio::test]
async fn every_operation_answers_as_its_document_says() {
    let platform = platform().await;
    let partner = platform.partner();
    let demo = platform.demo();
    let mut contract = Contract::load();
    let key = Caller::Key(ACME_KEY);
    let token = platform.token_for("partner-acme", "bff-partner", "ES256");
    let bearer = Caller::Token(&token);

    // The document itself, public, is the committed one with this server.
    let served = get(partner, "/v1/openapi.json", Caller::Nobody).await;
    contract.check("get", "/v1/openapi.json", &served);
    let mut committed = contract.document.clone();
    committed["servers"] = served.body["servers"].clone();
    assert_eq!(served.body, committed);

    // Products: the feed, a product, and what is wrong with a request.
    let feed = get(partner, "/v1/products?limit=3", key).await;
    contract.check("get", "/v1/products", &feed);
    assert_eq!(feed.body["items"].as_array().map(Vec::len), Some(3));
    let first = &feed.body["items"][0];
    let product = demo.catalog().product(1).expect("product 1");
    let price = demo.catalog().price(1).expect("its price");
    assert_eq!(first["id"], 1);
    assert_eq!(first["name"], product.name);
    assert_eq!(first["price"]["amount_minor"], price.amount_minor);
    assert_eq!(first["price"]["currency"], price.currency);
    assert!(
        first["created_at"]
            .as_str()
            .is_some_and(|time| time.ends_with('Z'))
    );
    for path in [
        "/v1/products?limit=0&sort=name",
        "/v1/products?updated_since=last-week&cursor=forged&category=Audio",
        "/v1/products?limit=1&limit=2",
    ] {
        let refused = get(partner, path, bearer).await;
        contract.check("get", "/v1/products", &refused);
        refused.assert_problem(422, "INVALID_QUERY", path);
        assert!(
            refused.body["errors"]
                .as_array()
                .is_some_and(|errors| !errors.is_empty()),
            "{path}: {}",
            refused.body
        );
    }
    let named: Vec<String> = get(partner, "/v1/products?limit=0&sort=name", key)
        .await
        .body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|error| error["name"].as_str().expect("a name").to_owned())
        .collect();
    assert_eq!(
        named,
        ["sort", "limit"],
        "the unknown parameter and the bad one"
    );

    let one = get(partner, "/v1/products/42", bearer).await;
    contract.check("get", "/v1/products/{id}", &one);
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.body["id"], 42);
    let missing = get(partner, "/v1/products/999999", key).await;
    contract.check("get", "/v1/products/{id}", &missing);
    missing.assert_problem(404, "NOT_FOUND", "no such product");
    // The body limit holds for every request, and the document says so.
    let oversized = send(
        request(
            reqwest::Method::GET,
            format!("{}/v1/products/42", base_url(partner)),
            key,
        )
        .body(vec![b'x'; 1024 * 1024 + 1]),
    )
    .await;
    contract.check("get", "/v1/products/{id}", &oversized);
    oversized.assert_problem(
        413,
        "PAYLOAD_TOO_LARGE",
        "a GET with a body over max_body_bytes",
    );
    let malformed = get(partner, "/v1/products/forty-two", key).await;
    contract.check("get", "/v1/products/{id}", &malformed);
    malformed.assert_problem(400, "BAD_REQUEST", "a path id that is not a number");

    // Who is calling: none, a bad key, two credentials, too few scopes.
    let anonymous = get(partner, "/v1/products/42", Caller::Nobody).await;
    contract.check("get", "/v1/products/{id}", &anonymous);
    anonymous.assert_problem(401, "AUTH_MISSING", "no credential");
    let forged = get(partner, "/v1/orders", Caller::Key("key-nobody-issued")).await;
    contract.check("get", "/v1/orders", &forged);
    forged.assert_problem(401, "AUTH_INVALID_API_KEY", "an unknown key");
    let both = send(
        request(
            reqwest::Method::GET,
            format!("{}/v1/products/42", base_url(partner)),
            bearer,
        )
        .header("x-api-key", ACME_KEY),
    )
    .await;
    contract.check("get", "/v1/products/{id}", &both);
    both.assert_problem(400, "AUTH_AMBIGUOUS", "an API key and a token");
    let read_only = Caller::Key(ACME_READ_ONLY_KEY);
    let not_allowed = get(partner, "/v1/orders", read_only).await;
    contract.check("get", "/v1/orders", &not_allowed);
    not_allowed.assert_problem(403, "AUTH_INSUFFICIENT_SCOPE", "orders without orders:read");
    let not_allowed = place(
        partner,
        read_only,
        Some("k-1"),
        r#"{"lines":[{"product_id":1,"quantity":1}]}"#,
    )
    .await;
    contract.check("post", "/v1/orders", &not_allowed);
    not_allowed.assert_problem(
        403,
        "AUTH_INSUFFICIENT_SCOPE",
        "placing without orders:write",
    );

    // Orders: place one, read it back, list it, and every refusal.
    let good = r#"{"lines":[{"product_id":42,"quantity":2},{"product_id":7,"quantity":1}]}"#;
    let placed = place(partner, key, Some("order-1"), good).await;
    contract.check("post", "/v1/orders", &placed);
    assert_eq!(placed.status, 201, "{}", placed.body);
    let id = placed.body["id"].as_u64().expect("an order id");
    assert_eq!(placed.header("location"), format!("/v1/orders/{id}"));
    let expected_total = 2 * demo.catalog().price(42).expect("a price").amount_minor
        + demo.catalog().price(7).expect("a price").amount_minor;
    assert_eq!(
        placed.body["total"],
        json!({"amount_minor": expected_total, "currency": "EUR"})
    );
    assert_eq!(placed.body["status"], "pending");
    let replayed = place(partner, key, Some("order-1"), good).await;
    contract.check("post", "/v1/orders", &replayed);
    assert_eq!((replayed.status, &replayed.body), (201, &placed.body));
    assert_eq!(replayed.header("idempotent-replayed"), "true");

    let read = get(partner, &format!("/v1/orders/{id}"), bearer).await;
    contract.check("get", "/v1/orders/{id}", &read);
    assert_eq!(read.body, placed.body);
    let listed = get(partner, "/v1/orders?limit=5", key).await;
    contract.check("get", "/v1/orders", &listed);
    assert_eq!(listed.body["items"][0], placed.body, "the newest first");
    assert!(
        listed.body["next_cursor"].is_string(),
        "acme has more than five orders"
    );
    let next = get(
        partner,
        &format!(
            "/v1/orders?limit=5&cursor={}",
            listed.body["next_cursor"].as_str().expect("a cursor")
        ),
        key,
    )
    .await;
    contract.check("get", "/v1/orders", &next);
    assert_eq!(next.status, 200, "{}", next.body);
    assert_ne!(next.body["items"][0], listed.body["items"][0]);
    let missing = get(partner, "/v1/orders/999999999", key).await;
    contract.check("get", "/v1/orders/{id}", &missing);
    missing.assert_problem(404, "NOT_FOUND", "no such order");

    for (body, idempotency_key, content_type, status, code) in [
        (
            good,
            None,
            "application/json",
            400,
            "IDEMPOTENCY_KEY_MISSING",
        ),
        (
            good,
            Some("order-6"),
            "text/plain",
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            "{\"lines\": [",
            Some("order-2"),
            "application/json",
            400,
            "MALFORMED_JSON",
        ),
        (
            r#"{"lines":[{"productId":1,"quantity":100}],"note":"x"}"#,
            Some("order-3"),
            "application/json",
            422,
            "INVALID_BODY",
        ),
        (
            r#"{"lines":[{"product_id":1,"quantity":3}]}"#,
            Some("order-1"),
            "application/json",
            422,
            "IDEMPOTENCY_KEY_REUSED",
        ),
        (
            r#"{"lines":[{"product_id":99999999,"quantity":1}]}"#,
            Some("order-4"),
            "application/json",
            422,
            "ORDER_REJECTED",
        ),
    ] {
        let mut builder = request(
            reqwest::Method::POST,
            format!("{}/v1/orders", base_url(partner)),
            key,
        )
        .header("content-type", content_type)
        .body(body.to_owned());
        if let Some(idempotency_key) = idempotency_key {
            builder = builder.header("idempotency-key", idempotency_key);
        }
        let refused = send(builder).await;
        contract.check("post", "/v1/orders", &refused);
        refused.assert_problem(status, code, body);
    }
    let invalid = place(
        partner,
        key,
        Some("order-5"),
        r#"{"lines":[{"productId":1,"quantity":100}],"note":"x"}"#,
    )
    .await;
    // An error is not kept: the same request again is checked again, and
    // the key, still free, then places the corrected order.
    let again = place(
        partner,
        key,
        Some("order-5"),
        r#"{"lines":[{"productId":1,"quantity":100}],"note":"x"}"#,
    )
    .await;
    contract.check("post", "/v1/orders", &again);
    again.assert_problem(422, "INVALID_BODY", "the same refused request");
    assert_eq!(again.body["errors"], invalid.body["errors"]);
    assert_eq!(again.header("idempotent-replayed"), "");
    let corrected = place(
        partner,
        key,
        Some("order-5"),
        r#"{"lines":[{"product_id":1,"quantity":2.0}]}"#,
    )
    .await;
    contract.check("post", "/v1/orders", &corrected);
    assert_eq!(corrected.status, 201, "{}", corrected.body);
    let named: Vec<&str> = invalid.body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|error| error["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(
        named,
        [
            "/note",
            "/lines/0/productId",
            "/lines/0/product_id",
            "/lines/0/quantity"
        ]
    );
    platform.stop().await;
}

#[tokio::test]
async fn the_product_feed_pages_through_every_product_once_with_one_batch_call_per_page() {
    let platform = platform().await;
    let partner = platform.partner();
    let demo = platform.demo();
    let since = "2025-09-01T00:00:00Z";
    let since_seconds = 1_756_684_800;
    let expected: Vec<u64> = (1..=demo.catalog().product_count())
        .filter_map(|id| demo.catalog().product(id))
        .filter(|product| product.category == "audio" && product.updated_at >= since_seconds)
        .map(|product| product.id)
        .collect();
    assert!(
        expected.len() > 100,
        "a feed of several pages: {}",
        expected.len()
    );

    let (prices_before, stock_before) = (
        demo.requests(ServiceName::Pricing).received(),
        demo.requests(ServiceName::Inventory).received(),
    );
    let mut contract = Contract::load();
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut path = format!("/v1/products?category=audio&updated_since={since}&limit=100");
    loop {
        let page = get(partner, &path, Caller::Key(ACME_KEY)).await;
        contract.check("get", "/v1/products", &page);
        assert_eq!(page.status, 200, "{}", page.body);
        pages += 1;
        let items = page.body["items"].as_array().expect("items");
        assert!(items.len() <= 100);
        for item in items {
            assert_eq!(item["category"], "audio");
            assert!(
                item["updated_at"]
                    .as_str()
                    .is_some_and(|time| *time >= *since)
            );
            seen.push(item["id"].as_u64().expect("an id"));
        }
        match page.body["next_cursor"].as_str() {
            Some(cursor) => {
                path = format!(
                    "/v1/products?category=audio&updated_since={since}&limit=100&cursor={cursor}"
                );
            }
            None => break,
        }
    }
    assert_eq!(seen, expected, "every product once, in id order");
    assert_eq!(
        (
            demo.requests(ServiceName::Pricing).received() - prices_before,
            demo.requests(ServiceName::Inventory).received() - stock_before,
        ),
        (pages, pages),
        "one batch call per service per page"
    );

    // A cursor is good only with the filters it was issued with.
    let first = get(
        partner,
        &format!("/v1/products?category=audio&updated_since={since}&limit=5"),
        Caller::Key(ACME_KEY),
    )
    .await;
    let cursor = first.body["next_cursor"].as_str().expect("a next page");
    let elsewhere = get(
        partner,
        &format!("/v1/products?category=office&updated_since={since}&limit=5&cursor={cursor}"),
        Caller::Key(ACME_KEY),
    )
    .await;
    contract.check("get", "/v1/products", &elsewhere);
    elsewhere.assert_problem(422, "INVALID_QUERY", "a cursor of another category");
    assert_eq!(elsewhere.body["errors"][0]["name"], "cursor");
    let unknown = get(
        partner,
        "/v1/products?category=no-such-thing",
        Caller::Key(ACME_KEY),
    )
    .await;
    contract.check("get", "/v1/products", &unknown);
    unknown.assert_problem(404, "NOT_FOUND", "an unknown category");
    platform.stop().await;
}

#[tokio::test]
async fn a_partner_never_reads_another_partners_order() {
    let platform = platform().await;
    let partner = platform.partner();
    let mut contract = Contract::load();
    let acme = platform.token_for("partner-acme", "bff-partner", "RS256");
    let globex = platform.token_for("partner-globex", "bff-partner", "ES256");
    let body = r#"{"lines":[{"product_id":5,"quantity":1}]}"#;
    let placed = place(partner, Caller::Token(&acme), Some("same-key"), body).await;
    assert_eq!(placed.status, 201, "{}", placed.body);
    let id = placed.body["id"].as_u64().expect("an id");
    let order = platform.demo().catalog().order(id).expect("stored");
    assert_eq!((order.tenant.as_str(), order.user_id), ("acme", None));

    let theirs = get(partner, &format!("/v1/orders/{id}"), Caller::Token(&globex)).await;
    contract.check("get", "/v1/orders/{id}", &theirs);
    theirs.assert_problem(404, "NOT_FOUND", "another tenant's order");
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/orders?limit=100&cursor={cursor}"),
            None => "/v1/orders?limit=100".to_owned(),
        };
        let page = get(partner, &path, Caller::Token(&globex)).await;
        contract.check("get", "/v1/orders", &page);
        assert_eq!(page.status, 200, "{}", page.body);
        for item in page.body["items"].as_array().expect("items") {
            let id = item["id"].as_u64().expect("an id");
            let order = platform.demo().catalog().order(id).expect("exists");
            assert_eq!(order.tenant, "globex", "order {id}");
        }
        assert!(
            !page.body["items"]
                .as_array()
                .expect("items")
                .iter()
                .any(|item| item["id"] == id)
        );
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    // A cursor of acme's listing is refused to globex.
    let acme_page = get(partner, "/v1/orders?limit=1", Caller::Token(&acme)).await;
    let acme_cursor = acme_page.body["next_cursor"]
        .as_str()
        .expect("more than one order");
    let crossed = get(
        partner,
        &format!("/v1/orders?limit=1&cursor={acme_cursor}"),
        Caller::Token(&globex),
    )
    .await;
    contract.check("get", "/v1/orders", &crossed);
    crossed.assert_problem(422, "INVALID_QUERY", "another tenant's cursor");

    // The same key from another tenant is another order.
    let other = place(partner, Caller::Token(&globex), Some("same-key"), body).await;
    contract.check("post", "/v1/orders", &other);
    assert_eq!(other.status, 201, "{}", other.body);
    assert_ne!(other.body["id"], placed.body["id"]);
    assert_eq!(other.header("idempotent-replayed"), "");
    platform.stop().await;
}

fn posted_orders(demo: &DemoServices) -> u64 {
    demo.requests(ServiceName::Orders).received()
}

#[tokio::test]
async fn placing_an_order_is_carried_out_once_per_key_across_two_instances() {
    let redis = RedisServer::start().await;
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let [first, second] =
        instances_sharing_redis::<bff_partner::Partner, 2>(&demo, &shutdown, &redis.url()).await;
    let mut contract = Contract::load();
    let token = issue_token(&demo, "partner-acme", "bff-partner", "ES256");
    let acme = Caller::Token(&token);
    let body = r#"{"lines":[{"product_id":42,"quantity":3}]}"#;

    // The same key and body: one order, the answer kept for the retry on
    // the other instance.
    let placed = place(&first, acme, Some("erp-77"), body).await;
    contract.check("post", "/v1/orders", &placed);
    assert_eq!(placed.status, 201, "{}", placed.body);
    assert_eq!(posted_orders(&demo), 1);
    let posted = demo.last_request(ServiceName::Orders).expect("posted");
    assert_eq!(posted.header_values("x-auth-tenant"), ["acme"]);
    let retried = place(&second, acme, Some("erp-77"), body).await;
    contract.check("post", "/v1/orders", &retried);
    assert_eq!((retried.status, &retried.body), (201, &placed.body));
    assert_eq!(retried.header("idempotent-replayed"), "true");
    assert_eq!(posted_orders(&demo), 1, "the retry placed nothing");

    // The same key with another body, on either instance.
    let other = place(
        &second,
        acme,
        Some("erp-77"),
        r#"{"lines":[{"product_id":42,"quantity":4}]}"#,
    )
    .await;
    contract.check("post", "/v1/orders", &other);
    other.assert_problem(422, "IDEMPOTENCY_KEY_REUSED", "another body");
    assert_eq!(posted_orders(&demo), 1);

    // The same key at once on both instances while the first is under way:
    // one order; the others are told to retry, then get it.
    demo.faults(ServiceName::Orders).set(FaultConfig {
        latency: Some(gateway_core::config::HumanDuration::from_millis(1500)),
        ..FaultConfig::default()
    });
    let slow = tokio::spawn({
        let (url, token) = (base_url(&first), token.clone());
        async move {
            send(
                reqwest::Client::new()
                    .post(format!("{url}/v1/orders"))
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .header("idempotency-key", "erp-78")
                    .body(body),
            )
            .await
        }
    });
    eventually("the first order reaches the orders service", async || {
        demo.requests(ServiceName::Orders).in_flight() == 1
    })
    .await;
    for instance in [&first, &second] {
        let meanwhile = place(instance, acme, Some("erp-78"), body).await;
        contract.check("post", "/v1/orders", &meanwhile);
        meanwhile.assert_problem(409, "IDEMPOTENCY_IN_PROGRESS", "while the first runs");
        assert_eq!(meanwhile.header("retry-after"), "1");
    }
    let slow = slow.await.expect("the first ends");
    assert_eq!(slow.status, 201, "{}", slow.body);
    demo.faults(ServiceName::Orders).set(FaultConfig::default());
    let after = place(&second, acme, Some("erp-78"), body).await;
    assert_eq!((after.status, &after.body), (201, &slow.body));
    assert_eq!(posted_orders(&demo), 2);

    // Keys are the tenant's own: globex's same key is globex's order.
    let globex = issue_token(&demo, "partner-globex", "bff-partner", "ES256");
    let theirs = place(&second, Caller::Token(&globex), Some("erp-77"), body).await;
    assert_eq!(theirs.status, 201, "{}", theirs.body);
    assert_ne!(theirs.body["id"], placed.body["id"]);
    assert_eq!(posted_orders(&demo), 3);
    shutdown.trigger();
    for instance in [first, second] {
        instance.wait().await;
    }
}

/// A partner whose API key `key` is on a plan of `daily_quota` requests a
/// day (and a rate it never reaches), its Redis `redis_url` when given,
/// reading the time of day from `clock`.
async fn metered_partner(
    demo: &DemoServices,
    shutdown: &Shutdown,
    clock: &Clock,
    redis_url: Option<&str>,
    key: &str,
    daily_quota: u64,
) -> Running {
    start_bff_at::<bff_partner::Partner>(demo, shutdown, clock, |config| {
        config.rate_limit.plans.insert(
            "metered".to_owned(),
            PlanConfig {
                capacity: 1_000,
                refill_per_second: 1_000.0,
                daily_quota: NonZeroU64::new(daily_quota),
            },
        );
        let mut metered = api_key("acme-metered", key, "acme", &["products:read"]);
        metered.plan = "metered".to_owned();
        config.auth.api_keys = vec![metered];
        if let Some(url) = redis_url {
            config.redis.url = RedisUrl::parse(url).expect("a valid Redis URL");
        }
    })
    .await
}

/// 23:59:00 UTC: one minute before a day ends.
fn a_minute_to_midnight() -> Clock {
    Clock::manual(UNIX_EPOCH + Duration::from_secs(20_500 * 86_400 - 60))
}

/// Sends `count` requests through `instances` in turn, checking each answer
/// against the contract, and returns them.
async fn spend(
    contract: &mut Contract,
    instances: &[&Running],
    key: &str,
    count: usize,
) -> Vec<Answer> {
    let mut answers = Vec::with_capacity(count);
    for index in 0..count {
        let answer = get(
            instances[index % instances.len()],
            "/v1/products/42",
            Caller::Key(key),
        )
        .await;
        contract.check("get", "/v1/products/{id}", &answer);
        answers.push(answer);
    }
    answers
}

#[tokio::test]
async fn a_daily_quota_is_spent_refused_until_midnight_and_starts_again() {
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let clock = a_minute_to_midnight();
    let key = "key-acme-metered-0001";
    let partner = metered_partner(&demo, &shutdown, &clock, None, key, 5).await;
    let mut contract = Contract::load();

    let answers = spend(&mut contract, &[&partner], key, 6).await;
    for (index, answer) in answers[..5].iter().enumerate() {
        assert_eq!(answer.status, 200, "request {index}: {}", answer.body);
        assert_eq!(answer.header("quota-limit"), "5");
        assert_eq!(answer.header("quota-remaining"), (4 - index).to_string());
        assert_eq!(answer.header("quota-reset"), "60");
        assert!(
            !answer.header("ratelimit-remaining").is_empty(),
            "the rate too"
        );
    }
    let refused = &answers[5];
    refused.assert_problem(429, "QUOTA_EXCEEDED", "the sixth request of the day");
    assert_eq!(refused.header("retry-after"), "60", "until midnight");
    assert_eq!(refused.header("quota-remaining"), "0");

    // Within the day it stays refused; at midnight the count starts again.
    clock.advance(Duration::from_secs(59));
    let still = spend(&mut contract, &[&partner], key, 1).await;
    still[0].assert_problem(429, "QUOTA_EXCEEDED", "a second before midnight");
    assert_eq!(still[0].header("retry-after"), "1");
    clock.advance(Duration::from_secs(1));
    let next_day = spend(&mut contract, &[&partner], key, 5).await;
    for answer in &next_day {
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    assert_eq!(next_day[0].header("quota-remaining"), "4");
    assert_eq!(next_day[0].header("quota-reset"), "86400");
    spend(&mut contract, &[&partner], key, 1).await[0].assert_problem(
        429,
        "QUOTA_EXCEEDED",
        "the next day's quota is spent too",
    );
    shutdown.trigger();
    partner.wait().await;
}

#[tokio::test]
async fn a_daily_quota_is_one_count_across_instances_sharing_redis() {
    let redis = RedisServer::start().await;
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let clock = a_minute_to_midnight();
    let key = "key-acme-metered-0002";
    let first = metered_partner(&demo, &shutdown, &clock, Some(&redis.url()), key, 7).await;
    let second = metered_partner(&demo, &shutdown, &clock, Some(&redis.url()), key, 7).await;
    let mut contract = Contract::load();

    let answers = spend(&mut contract, &[&first, &second], key, 8).await;
    let remaining: Vec<&str> = answers[..7]
        .iter()
        .map(|answer| answer.header("quota-remaining"))
        .collect();
    assert_eq!(
        remaining,
        ["6", "5", "4", "3", "2", "1", "0"],
        "one count for both"
    );
    answers[7].assert_problem(429, "QUOTA_EXCEEDED", "the eighth, on the other instance");
    spend(&mut contract, &[&first], key, 1).await[0].assert_problem(
        429,
        "QUOTA_EXCEEDED",
        "and on the first",
    );
    clock.advance(Duration::from_secs(60));
    let next_day = spend(&mut contract, &[&second, &first], key, 2).await;
    assert_eq!(
        next_day
            .iter()
            .map(|answer| (answer.status, answer.header("quota-remaining")))
            .collect::<Vec<_>>(),
        [(200, "6"), (200, "5")]
    );
    shutdown.trigger();
    for instance in [first, second] {
        instance.wait().await;
    }
}

#[tokio::test]
async fn a_deprecated_route_says_so_browns_out_and_is_retired_at_its_sunset() {
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let at = |text: &str| humantime::parse_rfc3339(text).expect("an RFC 3339 time");
    let clock = Clock::manual(at("2027-01-10T13:59:00Z"));
    let key = "key-acme-deprecated-0001";
    let partner = start_bff_at::<bff_partner::Partner>(&demo, &shutdown, &clock, |config| {
        config.auth.api_keys = vec![api_key("acme-erp", key, "acme", &["products:read"])];
        config.own.deprecations = vec![bff_partner::DeprecationConfig {
            route: "GET /v1/products/{id}".to_owned(),
            deprecated_at: "2026-06-01T00:00:00Z".to_owned(),
            sunset_at: Some("2027-03-01T00:00:00Z".to_owned()),
            successor: Some("https://partners.example.com/v2/products/{id}".to_owned()),
            docs: Some("https://partners.example.com/docs/v2".to_owned()),
            brownouts: vec!["2027-01-10T14:00Z/PT1H".to_owned()],
        }];
    })
    .await;
    // The served document marks the operation, and says what it may answer.
    let served = get(&partner, "/v1/openapi.json", Caller::Nobody).await;
    assert_eq!(
        served.body["paths"]["/v1/products/{id}"]["get"]["deprecated"],
        true
    );
    assert!(
        served.body["paths"]["/v1/products"]["get"]
            .get("deprecated")
            .is_none()
    );
    let mut contract = Contract::of(served.body);
    let product = async |contract: &mut Contract| {
        let answer = get(&partner, "/v1/products/42", Caller::Key(key)).await;
        contract.check("get", "/v1/products/{id}", &answer);
        for (name, value) in [
            ("deprecation", "@1780272000"),
            ("sunset", "Mon, 01 Mar 2027 00:00:00 GMT"),
            (
                "link",
                "<https://partners.example.com/v2/products/{id}>; rel=\"successor-version\", <https://partners.example.com/docs/v2>; rel=\"deprecation\"",
            ),
        ] {
            assert_eq!(answer.header(name), value, "{name} on a {}", answer.status);
        }
        answer
    };

    let before = product(&mut contract).await;
    assert_eq!(before.status, 200, "{}", before.body);
    let listing = get(&partner, "/v1/products?limit=1", Caller::Key(key)).await;
    assert_eq!(
        listing.header("deprecation"),
        "",
        "only the deprecated operation"
    );

    clock.set(at("2027-01-10T14:00:00Z"));
    let brownout = product(&mut contract).await;
    brownout.assert_problem(410, "ROUTE_BROWNOUT", "in the brownout window");
    assert!(
        brownout.body["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("/v2/products/{id}")),
        "the problem says what to use: {}",
        brownout.body
    );
    clock.set(at("2027-01-10T15:00:00Z"));
    assert_eq!(
        product(&mut contract).await.status,
        200,
        "the window is over"
    );
    clock.set(at("2027-03-01T00:00:00Z"));
    product(&mut contract)
        .await
        .assert_problem(410, "ROUTE_SUNSET", "from the sunset on");
    clock.advance(Duration::from_secs(365 * 86_400));
    product(&mut contract)
        .await
        .assert_problem(410, "ROUTE_SUNSET", "and ever after");

    assert_eq!(
        metric(
            partner.admin_addr(),
            "partner_deprecated_calls_total",
            &[("route", "GET /v1/products/{id}"), ("tenant", "acme")],
        )
        .await,
        Some(5.0),
        "every call to the deprecated operation, whom to call"
    );
    shutdown.trigger();
    partner.wait().await;
}

/// What a local webhook receiver was sent.
#[derive(Debug, Clone)]
struct Delivery {
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
}

/// A webhook receiver on loopback that answers 500 to the first delivery
/// and 204 to the rest, and keeps every delivery.
async fn flaky_receiver() -> (String, Arc<Mutex<Vec<Delivery>>>) {
    let received: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let router = axum::Router::new().route(
        "/hooks/shop",
        axum::routing::post({
            let received = received.clone();
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
                let mut received = received.lock().expect("not poisoned");
                received.push(Delivery { headers, body });
                if received.len() == 1 {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let addr = serve_on_free_port(router).await;
    (format!("http://{addr}/hooks/shop"), received)
}

/// Whether `header` (`t=…,v1=…`) signs `body` with `secret`.
fn signed_with(secret: &str, header: &str, body: &[u8]) -> bool {
    let Some((timestamp, signature)) = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
    else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let signed = [timestamp.as_bytes(), b".", body].concat();
    let Some(tag) = (0..signature.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(signature.get(at..at + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    ring::hmac::verify(&key, &signed, &tag).is_ok()
}

#[tokio::test]
async fn a_webhook_receives_a_signed_order_created_and_a_retry_after_a_500() {
    let platform = Platform::start_with(PlatformOptions {
        partner: bff_partner::PartnerSettings {
            allow_http_webhooks: true,
            ..bff_partner::PartnerSettings::default()
        },
        ..PlatformOptions::default()
    })
    .await
    .expect("the platform starts");
    let partner = platform.partner();
    let mut contract = Contract::load();
    let acme_token = platform.token_for("partner-acme", "bff-partner", "ES256");
    let acme = Caller::Token(&acme_token);
    let (url, received) = flaky_receiver().await;
    let subscribe = async |caller: Caller<'_>, body: Value| {
        send(
            request(
                reqwest::Method::POST,
                format!("{}/v1/webhooks", base_url(partner)),
                caller,
            )
            .header("content-type", "application/json")
            .body(body.to_string()),
        )
        .await
    };

    // Subscribe: the secret is shown once.
    let created = subscribe(acme, json!({ "url": url, "events": ["order.created"] })).await;
    contract.check("post", "/v1/webhooks", &created);
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_u64().expect("an id");
    assert_eq!(created.header("location"), format!("/v1/webhooks/{id}"));
    let secret = created.body["secret"]
        .as_str()
        .expect("the secret")
        .to_owned();
    let listed = get(partner, "/v1/webhooks", acme).await;
    contract.check("get", "/v1/webhooks", &listed);
    assert_eq!(listed.body["items"][0]["id"], id);
    assert_eq!(listed.body["items"][0]["url"], url.as_str());
    assert!(
        listed.body["items"][0].get("secret").is_none(),
        "never shown again"
    );

    // Refused targets and fields, each named.
    for (body, named) in [
        (json!({ "url": "https://10.0.0.7/hooks" }), "/url"),
        (
            json!({ "url": "https://169.254.169.254/latest/meta-data" }),
            "/url",
        ),
        (json!({ "url": "ftp://93.184.215.14/hooks" }), "/url"),
        (
            json!({ "url": "https://93.184.215.14/hooks", "events": ["order.shipped"] }),
            "/events",
        ),
        (
            json!({ "url": "https://93.184.215.14/hooks", "secret": "mine" }),
            "/secret",
        ),
    ] {
        let refused = subscribe(acme, body.clone()).await;
        contract.check("post", "/v1/webhooks", &refused);
        refused.assert_problem(422, "INVALID_BODY", &body.to_string());
        assert_eq!(refused.body["errors"][0]["name"], named, "{}", refused.body);
    }

    // An order is delivered, signed; the 500 is retried with the same event.
    let placed = place(
        partner,
        acme,
        Some("hooked-1"),
        r#"{"lines":[{"product_id":42,"quantity":1}]}"#,
    )
    .await;
    assert_eq!(placed.status, 201, "{}", placed.body);
    eventually("the delivery and its retry arrive", async || {
        received.lock().expect("not poisoned").len() >= 2
    })
    .await;
    let deliveries = received.lock().expect("not poisoned").clone();
    assert_eq!(
        deliveries.len(),
        2,
        "delivered once more after the 500, then never again so far"
    );
    for delivery in &deliveries {
        let signature = delivery.headers["webhook-signature"]
            .to_str()
            .expect("ASCII");
        assert!(
            signed_with(&secret, signature, &delivery.body),
            "{signature}"
        );
        assert!(!signed_with("whsec_other", signature, &delivery.body));
        let event: Value = serde_json::from_slice(&delivery.body).expect("JSON");
        contract.check_schema("WebhookEvent", &event);
        assert_eq!(event["type"], "order.created");
        assert_eq!(event["data"]["order_id"], placed.body["id"]);
        assert_eq!(event["data"]["total"], placed.body["total"]);
        assert_eq!(
            delivery.headers["webhook-id"],
            event["id"].as_str().expect("an id")
        );
    }
    assert_eq!(
        deliveries[0].body, deliveries[1].body,
        "the same event, retried"
    );

    // Another tenant neither sees nor ends the subscription.
    let globex_token = platform.token_for("partner-globex", "bff-partner", "ES256");
    let globex = Caller::Token(&globex_token);
    let theirs = get(partner, "/v1/webhooks", globex).await;
    contract.check("get", "/v1/webhooks", &theirs);
    assert_eq!(theirs.body["items"], json!([]), "{}", theirs.body);
    let not_theirs = send(request(
        reqwest::Method::DELETE,
        format!("{}/v1/webhooks/{id}", base_url(partner)),
        globex,
    ))
    .await;
    contract.check("delete", "/v1/webhooks/{id}", &not_theirs);
    not_theirs.assert_problem(404, "NOT_FOUND", "another tenant's subscription");

    let deleted = send(request(
        reqwest::Method::DELETE,
        format!("{}/v1/webhooks/{id}", base_url(partner)),
        acme,
    ))
    .await;
    contract.check("delete", "/v1/webhooks/{id}", &deleted);
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    let again = send(request(
        reqwest::Method::DELETE,
        format!("{}/v1/webhooks/{id}", base_url(partner)),
        acme,
    ))
    .await;
    contract.check("delete", "/v1/webhooks/{id}", &again);
    again.assert_problem(404, "NOT_FOUND", "already gone");
    platform.stop().await;
}

#[tokio::test]
async fn the_reference_page_is_served_without_a_credential_only_when_turned_on() {
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let off = platform_tests::start_bff::<bff_partner::Partner>(&demo, &shutdown, |_| {}).await;
    let on = platform_tests::start_bff::<bff_partner::Partner>(&demo, &shutdown, |config| {
        config.own.docs = true;
    })
    .await;
    get(&off, "/v1/docs", Caller::Nobody).await.assert_problem(
        404,
        "ROUTE_NOT_FOUND",
        "off by default",
    );
    let page = send(reqwest::Client::new().get(format!("{}/v1/docs", base_url(&on)))).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.content_type(), "text/html; charset=utf-8");
    assert!(
        page.header("content-security-policy")
            .contains("script-src 'self'")
    );
    for file in [
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "reference-init.js",
    ] {
        let answer =
            send(reqwest::Client::new().get(format!("{}/v1/docs/{file}", base_url(&on)))).await;
        assert_eq!(answer.status, 200, "{file}");
    }
    shutdown.trigger();
    for instance in [off, on] {
        instance.wait().await;
    }
}
