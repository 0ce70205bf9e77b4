//! bff-mobile's schema, screen by screen, end to end over real HTTP against
//! demo-services: the product screen (money in the caller's language, stock
//! state, rating, reviews), the category listing (a Relay connection with
//! signed cursors), `me` (always the verified user), and `placeOrder`
//! (typed input errors, once per idempotency key). Batching is counted at
//! the services; each optional service down leaves the rest of the answer.

use demo_services::{DemoServices, FaultConfig, ServiceName, TokenRequest};
use gateway_core::{lifecycle::Shutdown, server::Running};
use platform_tests::{Answer, base_url, issue_token, send, start_bff, start_demo};
use serde_json::{Value, json};

use crate::encoding::{as_sent, decoded};

async fn mobile(
    demo: &DemoServices,
    shutdown: &Shutdown,
    configure: impl FnOnce(&mut bff_mobile::MobileSettings),
) -> Running {
    // Queries cost one token each here: what they cost is
    // `mobile::a_query_takes_what_it_costs_from_the_callers_rate_limit`.
    start_bff::<bff_mobile::Mobile>(demo, shutdown, |config| {
        config.own.complexity_per_token = config.own.max_query_complexity;
        configure(&mut config.own);
    })
    .await
}

/// `query` with `variables` as `token`'s caller, in `language`.
async fn ask(
    running: &Running,
    token: &str,
    language: Option<&str>,
    query: &str,
    variables: Value,
) -> Answer {
    let mut request = reqwest::Client::new()
        .post(format!("{}/graphql", base_url(running)))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(json!({ "query": query, "variables": variables }).to_string());
    if let Some(language) = language {
        request = request.header("accept-language", language);
    }
    send(request).await
}

fn user_token(demo: &DemoServices, user: u64) -> String {
    issue_token(demo, &format!("user-{user}"), "bff-mobile", "ES256")
}

fn codes(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|error| {
                    error["extensions"]["code"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn received(demo: &DemoServices, services: &[ServiceName]) -> Vec<u64> {
    services
        .iter()
        .map(|service| demo.requests(*service).received())
        .collect()
}

fn stock_state(available: u32) -> &'static str {
    match available {
        0 => "OUT",
        1..=5 => "LOW",
        _ => "IN_STOCK",
    }
}

const PRODUCT_SCREEN: &str = "query Product($id: ID!) { product(id: $id) { id name images \
    price { amountMinor currency formatted } stock rating { average count } \
    topReviews(first: 2) { rating title } } }";

#[tokio::test]
async fn the_product_screen_shows_money_in_the_callers_language_stock_state_and_reviews() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let running = mobile(&demo, &shutdown, |_| {}).await;
    let token = user_token(&demo, 1);
    let catalog = demo.catalog();
    // A product with at least two reviews.
    let id = (1..=200)
        .find(|id| {
            catalog
                .reviews(*id, 0, 2)
                .is_some_and(|reviews| reviews.items.len() == 2)
        })
        .expect("a product with two reviews");
    let price = catalog.price(id).expect("priced");
    let reviews = catalog.reviews(id, 0, 2).expect("reviewed");
    let english = ask(
        &running,
        &token,
        None,
        PRODUCT_SCREEN,
        json!({ "id": id.to_string() }),
    )
    .await;
    assert_eq!(english.status, 200);
    assert_eq!(english.body["errors"], Value::Null, "{}", english.body);
    let product = &english.body["data"]["product"];
    assert_eq!(product["name"], catalog.product(id).expect("exists").name);
    assert_eq!(
        product["images"],
        json!([catalog.product(id).expect("exists").image_url])
    );
    assert_eq!(product["price"]["amountMinor"], price.amount_minor);
    assert!(
        product["price"]["amountMinor"].is_i64(),
        "an integer, never a float"
    );
    assert_eq!(product["price"]["currency"], "EUR");
    let (whole, cents) = (price.amount_minor / 100, price.amount_minor % 100);
    let grouped = if whole >= 1000 {
        format!("{},{:03}", whole / 1000, whole % 1000)
    } else {
        whole.to_string()
    };
    assert_eq!(
        product["price"]["formatted"],
        format!("€{grouped}.{cents:02}")
    );
    assert_eq!(
        product["stock"],
        stock_state(catalog.stock(id).expect("stocked").available)
    );
    assert_eq!(product["rating"]["count"], reviews.total);
    let average = product["rating"]["average"].as_f64().expect("a number");
    assert!((average - f64::from(reviews.average_rating)).abs() < 1e-6);
    let top: Vec<(u64, String)> = product["topReviews"]
        .as_array()
        .expect("reviews")
        .iter()
        .map(|review| {
            (
                review["rating"].as_u64().expect("stars"),
                review["title"].as_str().expect("title").to_owned(),
            )
        })
        .collect();
    let expected: Vec<(u64, String)> = reviews
        .items
        .iter()
        .map(|review| (u64::from(review.rating), review.title.clone()))
        .collect();
    assert_eq!(top, expected);

    // The same amount, written as German and French readers expect.
    let decimal = format!("{cents:02}");
    for (language, group, space) in [
        ("de-DE,de;q=0.9", ".", "\u{a0}"),
        ("fr", "\u{202f}", "\u{a0}"),
    ] {
        let answer = ask(
            &running,
            &token,
            Some(language),
            PRODUCT_SCREEN,
            json!({ "id": id.to_string() }),
        )
        .await;
        let grouped = if whole >= 1000 {
            format!("{}{group}{:03}", whole / 1000, whole % 1000)
        } else {
            whole.to_string()
        };
        assert_eq!(
            answer.body["data"]["product"]["price"]["formatted"],
            format!("{grouped},{decimal}{space}€"),
            "{language}"
        );
        assert_eq!(
            answer.body["data"]["product"]["price"]["amountMinor"],
            price.amount_minor
        );
    }

    let unknown = ask(
        &running,
        &token,
        None,
        PRODUCT_SCREEN,
        json!({ "id": "999999999" }),
    )
    .await;
    assert_eq!(
        unknown.body["data"]["product"],
        Value::Null,
        "{}",
        unknown.body
    );
    let bad = ask(&running, &token, None, PRODUCT_SCREEN, json!({ "id": "x" })).await;
    assert_eq!(codes(&bad.body), ["INVALID_ARGUMENT"]);
    assert_eq!(
        bad.body["data"],
        json!({ "product": null }),
        "only the field is null"
    );
    assert_eq!(bad.body["errors"][0]["path"], json!(["product"]));
    let too_many = ask(
        &running,
        &token,
        None,
        "{ product(id: 42) { name topReviews(first: 11) { title } } }",
        json!({}),
    )
    .await;
    assert_eq!(codes(&too_many.body), ["INVALID_ARGUMENT"]);
    assert_eq!(
        too_many.body["data"]["product"]["topReviews"],
        Value::Null,
        "{}",
        too_many.body
    );
    assert!(
        too_many.body["data"]["product"]["name"].is_string(),
        "the rest of the product is kept"
    );
    assert_eq!(
        bad.body["errors"][0]["extensions"]["invalidParams"][0]["name"],
        "id"
    );
    shutdown.trigger();
    running.wait().await;
}

const LISTING: &str = "query Listing($first: Int!, $after: String, $category: String!, $sort: ProductSort!) { \
    products(first: $first, after: $after, category: $category, sort: $sort) { \
    edges { cursor node { id name image price { amountMinor formatted } stock } } \
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";

fn listing_ids(answer: &Answer) -> Vec<u64> {
    answer.body["data"]["products"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("edges: {}", answer.body))
        .iter()
        .map(|edge| {
            edge["node"]["id"]
                .as_str()
                .and_then(|id| id.parse().ok())
                .expect("an id")
        })
        .collect()
}

#[tokio::test]
async fn the_listing_is_a_relay_connection_batched_and_paged_by_cursors_no_one_can_forge() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let running = mobile(&demo, &shutdown, |_| {}).await;
    let token = user_token(&demo, 1);
    let catalog = demo.catalog();
    let (expected, _) = catalog
        .category_page(
            "audio",
            shared_schema::catalog::ProductSort::PriceAsc,
            0,
            40,
        )
        .expect("audio exists");
    let expected: Vec<u64> = expected.iter().map(|product| product.id).collect();
    assert_eq!(expected.len(), 40, "audio has two pages of 20");
    let services = [
        ServiceName::Products,
        ServiceName::Pricing,
        ServiceName::Inventory,
    ];
    let before = received(&demo, &services);
    let variables = |after: Option<&str>| json!({ "first": 20, "after": after, "category": "audio", "sort": "PRICE_ASC" });
    let first = ask(&running, &token, None, LISTING, variables(None)).await;
    assert_eq!(first.body["errors"], Value::Null, "{}", first.body);
    assert_eq!(listing_ids(&first), expected[..20]);
    let after_first = received(&demo, &services);
    let calls: Vec<u64> = after_first
        .iter()
        .zip(&before)
        .map(|(after, before)| after - before)
        .collect();
    assert_eq!(
        calls,
        [1, 1, 1],
        "20 items with price and stock: one call per service"
    );
    let page_info = &first.body["data"]["products"]["pageInfo"];
    assert_eq!(page_info["hasNextPage"], true);
    assert_eq!(page_info["hasPreviousPage"], false);
    let edges = first.body["data"]["products"]["edges"]
        .as_array()
        .expect("edges");
    assert_eq!(page_info["endCursor"], edges[19]["cursor"]);
    assert_eq!(page_info["startCursor"], edges[0]["cursor"]);
    for edge in edges {
        let id: u64 = edge["node"]["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .expect("id");
        assert_eq!(
            edge["node"]["price"]["amountMinor"],
            catalog.price(id).expect("priced").amount_minor
        );
        assert!(edge["node"]["stock"].is_string());
    }

    // Resuming after any edge continues right after it.
    let end = page_info["endCursor"]
        .as_str()
        .expect("a cursor")
        .to_owned();
    let second = ask(&running, &token, None, LISTING, variables(Some(&end))).await;
    assert_eq!(listing_ids(&second), expected[20..]);
    assert_eq!(
        second.body["data"]["products"]["pageInfo"]["hasPreviousPage"],
        true
    );
    let fifth = edges[4]["cursor"].as_str().expect("a cursor");
    let resumed = ask(
        &running,
        &token,
        None,
        LISTING,
        json!({ "first": 3, "after": fifth, "category": "audio", "sort": "PRICE_ASC" }),
    )
    .await;
    assert_eq!(listing_ids(&resumed), expected[5..8]);

    // A cursor altered, or of another order or category, or a page too
    // large, is refused before any service is called.
    let (payload, tag) = end.split_once('.').expect("payload.tag");
    let forged = format!("{}.{tag}", &payload[..payload.len() - 1]);
    let refusals = [
        json!({ "first": 20, "after": forged, "category": "audio", "sort": "PRICE_ASC" }),
        json!({ "first": 20, "after": end, "category": "audio", "sort": "NEWEST" }),
        json!({ "first": 20, "after": end, "category": "kitchen", "sort": "PRICE_ASC" }),
        json!({ "first": 51, "category": "audio", "sort": "PRICE_ASC" }),
        json!({ "first": 0, "category": "audio", "sort": "PRICE_ASC" }),
    ];
    for variables in refusals {
        let before = received(&demo, &services);
        let refused = ask(&running, &token, None, LISTING, variables.clone()).await;
        assert_eq!(
            codes(&refused.body),
            ["INVALID_ARGUMENT"],
            "{variables}: {}",
            refused.body
        );
        assert_eq!(received(&demo, &services), before, "{variables}");
    }
    let unknown = ask(
        &running,
        &token,
        None,
        LISTING,
        json!({ "first": 5, "category": "no-such-thing", "sort": "RELEVANCE" }),
    )
    .await;
    assert_eq!(codes(&unknown.body), ["NOT_FOUND"], "{}", unknown.body);
    let smuggled = ask(
        &running,
        &token,
        None,
        LISTING,
        json!({ "first": 5, "category": "audio&limit=100", "sort": "RELEVANCE" }),
    )
    .await;
    assert_eq!(codes(&smuggled.body), ["NOT_FOUND"], "{}", smuggled.body);
    shutdown.trigger();
    running.wait().await;
}

const ME: &str = "query Me($first: Int!, $after: String) { me { profile { id name email tier } \
    orders(first: $first, after: $after) { edges { node { id status total { amountMinor currency formatted } \
    lines { quantity product { name image } } } } pageInfo { hasNextPage endCursor } } } }";

#[tokio::test]
async fn me_is_always_the_verified_user_with_their_orders_paged_and_batched() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let running = mobile(&demo, &shutdown, |_| {}).await;
    let catalog = demo.catalog();
    // A user with more than two orders, and a user of another tenant.
    let user = (1..=1000)
        .find(|id| catalog.orders_of(*id).len() > 2)
        .expect("a user with three orders");
    let profile = catalog.user(user).expect("exists");
    let other = (1..=1000)
        .find(|id| {
            catalog
                .user(*id)
                .is_some_and(|found| found.tenant != profile.tenant)
        })
        .expect("a user of another tenant");
    let orders = catalog.orders_of(user);
    let token = user_token(&demo, user);
    let products_before = demo.requests(ServiceName::Products).received();
    let first = ask(&running, &token, None, ME, json!({ "first": 2 })).await;
    assert_eq!(first.body["errors"], Value::Null, "{}", first.body);
    let me = &first.body["data"]["me"];
    assert_eq!(me["profile"]["id"], user.to_string());
    assert_eq!(me["profile"]["name"], profile.name);
    assert_eq!(me["profile"]["email"], profile.email);
    let edges = me["orders"]["edges"].as_array().expect("edges");
    let ids: Vec<String> = edges
        .iter()
        .map(|edge| edge["node"]["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids, [orders[0].id.to_string(), orders[1].id.to_string()]);
    assert_eq!(
        edges[0]["node"]["total"]["amountMinor"],
        orders[0].total_minor
    );
    assert_eq!(edges[0]["node"]["total"]["currency"], orders[0].currency);
    let lines = edges[0]["node"]["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), orders[0].lines.len());
    assert_eq!(lines[0]["quantity"], orders[0].lines[0].quantity);
    assert_eq!(
        lines[0]["product"]["name"],
        catalog
            .product(orders[0].lines[0].product_id)
            .expect("exists")
            .name
    );
    assert_eq!(
        demo.requests(ServiceName::Products).received() - products_before,
        1,
        "every line's product of the page in one call"
    );
    assert_eq!(me["orders"]["pageInfo"]["hasNextPage"], true);
    let end = me["orders"]["pageInfo"]["endCursor"]
        .as_str()
        .expect("a cursor");
    let second = ask(
        &running,
        &token,
        None,
        ME,
        json!({ "first": 50, "after": end }),
    )
    .await;
    let rest: Vec<String> = second.body["data"]["me"]["orders"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| edge["node"]["id"].as_str().expect("id").to_owned())
        .collect();
    let expected: Vec<String> = orders[2..]
        .iter()
        .map(|order| order.id.to_string())
        .collect();
    assert_eq!(rest, expected);

    // Another user, of another tenant, asked twice (the second time the
    // response cache may answer): always their own profile, and a cursor of
    // the first user's orders is not theirs.
    let other_token = user_token(&demo, other);
    for _ in 0..2 {
        let theirs = ask(&running, &other_token, None, ME, json!({ "first": 1 })).await;
        assert_eq!(
            theirs.body["data"]["me"]["profile"]["id"],
            other.to_string()
        );
        assert_eq!(
            theirs.body["data"]["me"]["profile"]["name"],
            catalog.user(other).expect("exists").name
        );
    }
    let stolen = ask(
        &running,
        &other_token,
        None,
        ME,
        json!({ "first": 2, "after": end }),
    )
    .await;
    assert_eq!(codes(&stolen.body), ["INVALID_ARGUMENT"], "{}", stolen.body);

    // A partner client is no user; a token without orders:read sees its
    // profile and is refused its orders.
    let partner = issue_token(&demo, "partner-acme", "bff-mobile", "ES256");
    let refused = ask(&running, &partner, None, ME, json!({ "first": 1 })).await;
    assert_eq!(codes(&refused.body), ["USER_REQUIRED"], "{}", refused.body);
    assert_eq!(refused.body["data"], json!({ "me": null }));
    let narrow = demo
        .token(&TokenRequest {
            subject: format!("user-{user}"),
            audience: "bff-mobile".to_owned(),
            alg: Some("ES256".to_owned()),
            scope: Some("products:read profile:read".to_owned()),
            ttl: None,
            format: None,
        })
        .expect("a narrower token")
        .access_token;
    let profile_only = ask(
        &running,
        &narrow,
        None,
        "{ me { profile { name } orders(first: 1) { edges { cursor } } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        codes(&profile_only.body),
        ["AUTH_INSUFFICIENT_SCOPE"],
        "{}",
        profile_only.body
    );
    shutdown.trigger();
    running.wait().await;
}

const PLACE_ORDER: &str = "mutation Place($input: PlaceOrderInput!, $key: String!) { \
    placeOrder(input: $input, idempotencyKey: $key) { replayed order { id status total { amountMinor currency } \
    lines { quantity product { name } } } } }";

/// `placeOrder` of `input` with `key`, as `token`'s caller.
async fn place(running: &Running, token: &str, key: &str, input: Value) -> Answer {
    ask(
        running,
        token,
        None,
        PLACE_ORDER,
        json!({ "key": key, "input": input }),
    )
    .await
}

/// Whether the answer to `placeOrder` is a replay, and its order's id.
fn placed(answer: &Answer) -> (bool, String) {
    let payload = &answer.body["data"]["placeOrder"];
    (
        payload["replayed"]
            .as_bool()
            .unwrap_or_else(|| panic!("placed: {}", answer.body)),
        payload["order"]["id"].as_str().expect("an id").to_owned(),
    )
}

#[tokio::test]
async fn place_order_runs_once_per_key_and_answers_typed_errors() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let running = mobile(&demo, &shutdown, |_| {}).await;
    let token = user_token(&demo, 1);
    let orders_received = || demo.requests(ServiceName::Orders).received();

    // Every wrong field, in one typed error, before the orders service.
    let before = orders_received();
    let wrong = json!({ "lines": [
        { "productId": "x", "quantity": 1 },
        { "productId": "7", "quantity": 100 },
    ] });
    let invalid = place(&running, &token, "k-invalid", wrong).await;
    assert_eq!(codes(&invalid.body), ["INVALID_INPUT"], "{}", invalid.body);
    let params: Vec<&str> = invalid.body["errors"][0]["extensions"]["invalidParams"]
        .as_array()
        .expect("invalid params")
        .iter()
        .map(|param| param["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(params, ["lines.0.productId", "lines.1.quantity"]);
    let empty = place(&running, &token, "k-empty", json!({ "lines": [] })).await;
    assert_eq!(codes(&empty.body), ["INVALID_INPUT"]);
    assert_eq!(
        orders_received(),
        before,
        "nothing reached the orders service"
    );

    // Placed once; the retry with the same key and input is the same order.
    let input = json!({ "lines": [{ "productId": "42", "quantity": 2 }, { "productId": "7", "quantity": 1 }] });
    let first = place(&running, &token, "k-1", input.clone()).await;
    assert_eq!(first.body["errors"], Value::Null, "{}", first.body);
    let (replayed, id) = placed(&first);
    assert!(!replayed);
    let order = &first.body["data"]["placeOrder"];
    let catalog = demo.catalog();
    let total = 2 * catalog.price(42).expect("priced").amount_minor
        + catalog.price(7).expect("priced").amount_minor;
    assert_eq!(order["order"]["total"]["amountMinor"], total);
    assert_eq!(order["order"]["status"], "PENDING");
    assert_eq!(
        order["order"]["lines"][0]["product"]["name"],
        catalog.product(42).expect("exists").name
    );
    let posts = orders_received();
    let retried = place(&running, &token, "k-1", input).await;
    assert_eq!(placed(&retried), (true, id.clone()), "the same order again");
    assert_eq!(orders_received(), posts, "the retry placed nothing");

    // The same key with another input, a key that is no key, a refused order.
    let other = json!({ "lines": [{ "productId": "42", "quantity": 3 }] });
    let reused = place(&running, &token, "k-1", other.clone()).await;
    assert_eq!(
        codes(&reused.body),
        ["IDEMPOTENCY_KEY_REUSED"],
        "{}",
        reused.body
    );
    let bad_key = place(&running, &token, "", other.clone()).await;
    assert_eq!(
        codes(&bad_key.body),
        ["IDEMPOTENCY_KEY_INVALID"],
        "{}",
        bad_key.body
    );
    let unknown = json!({ "lines": [{ "productId": "999999999", "quantity": 1 }] });
    let rejected = place(&running, &token, "k-2", unknown).await;
    assert_eq!(
        codes(&rejected.body),
        ["ORDER_REJECTED"],
        "{}",
        rejected.body
    );

    // Another user's same key is their own.
    let someone_else = user_token(&demo, 2);
    let theirs = place(&running, &someone_else, "k-1", other).await;
    let (replayed, their_id) = placed(&theirs);
    assert!(!replayed, "{}", theirs.body);
    assert_ne!(their_id, id);
    shutdown.trigger();
    running.wait().await;
}

#[tokio::test]
async fn each_optional_service_down_nulls_only_its_own_fields() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let running = mobile(&demo, &shutdown, |_| {}).await;
    let token = user_token(&demo, 1);
    let query = "{ product(id: 42) { name price { formatted } stock rating { count } topReviews { title } } }";
    for (service, fields, part) in [
        (ServiceName::Pricing, &["price"][..], "price"),
        (ServiceName::Inventory, &["stock"][..], "stock"),
        (
            ServiceName::Reviews,
            &["rating", "topReviews"][..],
            "reviews",
        ),
    ] {
        demo.faults(service).set(FaultConfig {
            down: true,
            ..FaultConfig::default()
        });
        let answer = ask(&running, &token, None, query, json!({})).await;
        demo.faults(service).set(FaultConfig::default());
        assert_eq!(answer.status, 200);
        let product = &answer.body["data"]["product"];
        assert!(product["name"].is_string(), "{service:?}: {}", answer.body);
        for field in ["price", "stock", "rating", "topReviews"] {
            assert_eq!(
                product[field].is_null(),
                fields.contains(&field),
                "{service:?}: {field} in {}",
                answer.body
            );
        }
        let errors = answer.body["errors"].as_array().expect("errors");
        assert_eq!(errors.len(), fields.len(), "{service:?}: {}", answer.body);
        for (error, field) in errors.iter().zip(fields) {
            assert_eq!(error["path"], json!(["product", field]));
            assert!(
                error["extensions"]["code"]
                    .as_str()
                    .is_some_and(|code| code.starts_with("DOWNSTREAM_")),
                "{}",
                answer.body
            );
        }
        assert!(
            answer.header("bff-partial").starts_with(part),
            "{service:?}: {:?}",
            answer.header("bff-partial")
        );
    }
    shutdown.trigger();
    running.wait().await;
}

/// Every field of `type_name` with its type, as introspection tells it.
fn fields_of(schema: &Value, type_name: &str) -> Vec<(String, String)> {
    let render = |ty: &Value| -> String {
        let mut ty = ty;
        let mut wrappers = Vec::new();
        while ty["name"].is_null() {
            wrappers.push(ty["kind"].as_str().unwrap_or_default().to_owned());
            ty = &ty["ofType"];
        }
        let mut name = ty["name"].as_str().unwrap_or_default().to_owned();
        for wrapper in wrappers.iter().rev() {
            name = match wrapper.as_str() {
                "NON_NULL" => format!("{name}!"),
                _ => format!("[{name}]"),
            };
        }
        name
    };
    schema["types"]
        .as_array()
        .expect("types")
        .iter()
        .find(|ty| ty["name"] == type_name)
        .and_then(|ty| ty["fields"].as_array())
        .map(|fields| {
            fields
                .iter()
                .map(|field| {
                    (
                        field["name"].as_str().expect("name").to_owned(),
                        render(&field["type"]),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn money_is_never_a_float_anywhere_in_the_schema() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let running = mobile(&demo, &shutdown, |settings| settings.introspection = true).await;
    let token = user_token(&demo, 1);
    let answer = ask(
        &running,
        &token,
        None,
        "{ __schema { types { name kind fields { name type { name kind ofType { name kind ofType { name kind ofType { name kind } } } } } } } }",
        json!({}),
    )
    .await;
    let schema = &answer.body["data"]["__schema"];
    let mut floats = Vec::new();
    for ty in schema["types"].as_array().expect("types") {
        let name = ty["name"].as_str().expect("a name");
        if name.starts_with("__") {
            continue;
        }
        for (field, type_name) in fields_of(schema, name) {
            if type_name.trim_matches(|c| c == '[' || c == ']' || c == '!') == "Float" {
                floats.push(format!("{name}.{field}"));
            }
        }
    }
    assert_eq!(
        floats,
        ["RatingSummary.average"],
        "the only float is a rating, never money"
    );
    assert_eq!(
        fields_of(schema, "Money"),
        [
            ("amountMinor".to_owned(), "Int!".to_owned()),
            ("currency".to_owned(), "String!".to_owned()),
            ("formatted".to_owned(), "String!".to_owned()),
        ]
    );
    let money_fields: Vec<String> = ["Product", "Order"]
        .iter()
        .flat_map(|ty| fields_of(schema, ty))
        .filter(|(field, _)| matches!(field.as_str(), "price" | "total"))
        .map(|(_, type_name)| type_name)
        .collect();
    assert_eq!(money_fields, ["Money", "Money!"]);
    shutdown.trigger();
    running.wait().await;
}

/// `query`'s answer with `Accept-Encoding: accept`: its `Content-Encoding`
/// and its body as sent.
async fn encoded(running: &Running, token: &str, query: &str, accept: &str) -> (String, Vec<u8>) {
    let response = reqwest::Client::new()
        .post(format!("{}/graphql", base_url(running)))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept-encoding", accept)
        .body(json!({ "query": query }).to_string())
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200, "{accept}");
    as_sent(response).await
}

#[tokio::test]
async fn answers_are_compressed_as_the_client_accepts() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let running = mobile(&demo, &shutdown, |_| {}).await;
    let token = user_token(&demo, 1);
    let listing = r#"{ products(first: 20, category: "audio") { edges { node { name image price { formatted } } } } }"#;
    let (coding, identity) = encoded(&running, &token, listing, "identity").await;
    assert_eq!(coding, "");
    assert!(identity.len() > 1024, "a listing is worth compressing");
    let answer: Value = serde_json::from_slice(&identity).expect("plain JSON");
    assert_eq!(answer["errors"], Value::Null, "{answer}");

    let (coding, br) = encoded(&running, &token, listing, "gzip;q=0.5, br").await;
    assert_eq!(coding, "br");
    assert_eq!(decoded(&coding, &br), identity);
    assert!(br.len() * 2 < identity.len(), "br: {} bytes", br.len());

    let (coding, gzip) = encoded(&running, &token, listing, "gzip").await;
    assert_eq!(coding, "gzip");
    assert_eq!(decoded(&coding, &gzip), identity);

    // A small answer is not worth it.
    let (coding, _) = encoded(&running, &token, "{ product(id: 42) { name } }", "br").await;
    assert_eq!(coding, "", "under 1 KiB, sent as it is");
    shutdown.trigger();
    running.wait().await;
}
