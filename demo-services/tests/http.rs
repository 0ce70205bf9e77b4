//! The demo services over HTTP: batches, cursors, tenancy, the issuer, faults.

use demo_services::{DemoConfig, DemoServices, FaultConfig, Ports, ServiceName};
use gateway_core::lifecycle::Shutdown;
use serde_json::{Value, json};

async fn start() -> (DemoServices, Shutdown) {
    let shutdown = Shutdown::new();
    let config = DemoConfig {
        ports: Ports::ephemeral(),
        ..DemoConfig::default()
    };
    (
        DemoServices::start(config, shutdown.clone())
            .await
            .expect("starts"),
        shutdown,
    )
}

async fn get(url: String) -> (u16, Value) {
    get_with(url, &[]).await
}

async fn get_with(url: String, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("answered");
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_str(&response.text().await.expect("body")).expect("json"),
    )
}

#[tokio::test]
async fn batches_return_items_in_order_and_list_missing_ids() {
    let (demo, _shutdown) = start().await;
    for (service, path) in [
        (ServiceName::Products, "products"),
        (ServiceName::Inventory, "inventory"),
        (ServiceName::Pricing, "prices"),
    ] {
        let (status, batch) = get(format!("{}/{path}?ids=3,1,999999", demo.url(service))).await;
        assert_eq!(status, 200, "{path}: {batch}");
        let ids: Vec<u64> = batch["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|item| {
                item.get("id")
                    .or(item.get("product_id"))
                    .and_then(Value::as_u64)
                    .expect("id")
            })
            .collect();
        assert_eq!(ids, vec![3, 1], "{path}");
        assert_eq!(batch["missing"], json!([999999]), "{path}");
    }
    let too_many = (1..=101)
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let (status, problem) = get(format!(
        "{}/products?ids={too_many}",
        demo.url(ServiceName::Products)
    ))
    .await;
    assert_eq!(status, 400);
    assert_eq!(problem["code"], "BATCH_TOO_LARGE");
}

#[tokio::test]
async fn product_listing_pages_with_a_cursor() {
    let (demo, _shutdown) = start().await;
    let base = demo.url(ServiceName::Products);
    let (_, first) = get(format!("{base}/products?limit=3")).await;
    assert_eq!(first["items"].as_array().map(Vec::len), Some(3));
    let cursor = first["next_cursor"].as_str().expect("more pages");
    let (_, second) = get(format!("{base}/products?limit=3&cursor={cursor}")).await;
    assert_eq!(second["items"][0]["id"], 4);
    let (_, last) = get(format!("{base}/products?limit=100&cursor=9990")).await;
    assert_eq!(last["items"].as_array().map(Vec::len), Some(10));
    assert!(last.get("next_cursor").is_none(), "{last}");
    let (status, problem) = get(format!("{base}/products?cursor=garbage")).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("INVALID_CURSOR"))
    );
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_problems() {
    let (demo, _shutdown) = start().await;
    let response = reqwest::get(format!("{}/products/0", demo.url(ServiceName::Products)))
        .await
        .expect("answered");
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let (status, problem) = get(format!("{}/prices/abc", demo.url(ServiceName::Pricing))).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("INVALID_ID"))
    );
    let (status, _) = get(format!("{}/reviews", demo.url(ServiceName::Reviews))).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn orders_are_scoped_to_the_callers_tenant() {
    let (demo, _shutdown) = start().await;
    let catalog = demo.catalog();
    let user = (1..100)
        .find(|&id| !catalog.orders_of(id).is_empty())
        .expect("a user with orders");
    let tenant = catalog.user(user).expect("exists").tenant;
    let other = ["acme", "globex", "initech"]
        .into_iter()
        .find(|t| *t != tenant)
        .expect("another tenant");
    let order_id = catalog.orders_of(user)[0].id;
    let base = demo.url(ServiceName::Orders);

    let (status, _) = get_with(
        format!("{base}/orders/{order_id}"),
        &[("x-auth-tenant", &tenant)],
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = get_with(
        format!("{base}/orders/{order_id}"),
        &[("x-auth-tenant", other)],
    )
    .await;
    assert_eq!(status, 404, "another tenant's order does not exist");
    let (_, page) = get_with(
        format!("{base}/orders?user={user}"),
        &[("x-auth-tenant", other)],
    )
    .await;
    assert_eq!(page["items"], json!([]));

    let placed = reqwest::Client::new()
        .post(format!("{base}/orders"))
        .header("x-auth-tenant", &tenant)
        .body(json!({ "user_id": user, "lines": [{ "product_id": 9, "quantity": 2 }] }).to_string())
        .send()
        .await
        .expect("answered");
    assert_eq!(placed.status(), 201);
    let rejected = reqwest::Client::new()
        .post(format!("{base}/orders"))
        .header("x-auth-tenant", other)
        .body(json!({ "user_id": user, "lines": [{ "product_id": 9, "quantity": 2 }] }).to_string())
        .send()
        .await
        .expect("answered");
    assert_eq!(rejected.status(), 422);
}

#[tokio::test]
async fn the_issuer_publishes_its_keys_and_issues_tokens() {
    let (demo, _shutdown) = start().await;
    let jwks = reqwest::get(demo.jwks_url()).await.expect("answered");
    assert_eq!(jwks.headers()["cache-control"], "public, max-age=300");
    let jwks: Value = serde_json::from_str(&jwks.text().await.expect("body")).expect("json");
    let algs: Vec<&str> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|key| key["alg"].as_str())
        .collect();
    assert_eq!(algs, vec!["RS256", "ES256"]);

    let token = reqwest::Client::new()
        .post(format!("{}/token", demo.url(ServiceName::Auth)))
        .body(
            json!({ "subject": "partner-acme", "audience": "bff-partner", "alg": "ES256" })
                .to_string(),
        )
        .send()
        .await
        .expect("answered");
    assert_eq!(token.status(), 200);
    let token: Value = serde_json::from_str(&token.text().await.expect("body")).expect("json");
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(
        token["access_token"]
            .as_str()
            .map(|jwt| jwt.split('.').count()),
        Some(3)
    );

    let refused = reqwest::Client::new()
        .post(format!("{}/token", demo.url(ServiceName::Auth)))
        .body(json!({ "subject": "nobody", "audience": "bff-web" }).to_string())
        .send()
        .await
        .expect("answered");
    assert_eq!(refused.status(), 400);

    let stats: Value = serde_json::from_str(
        &reqwest::get(format!("{}/admin/stats", demo.url(ServiceName::Auth)))
            .await
            .expect("answered")
            .text()
            .await
            .expect("body"),
    )
    .expect("json");
    assert_eq!(stats["jwks_fetches"], 1);
}

#[tokio::test]
async fn a_down_service_closes_connections_and_the_admin_api_stays_up() {
    let (demo, _shutdown) = start().await;
    demo.faults(ServiceName::Auth).set(FaultConfig {
        down: true,
        ..FaultConfig::default()
    });
    assert!(
        reqwest::get(demo.jwks_url()).await.is_err(),
        "no answer while down"
    );
    let (status, faults) = get(format!("{}/admin/faults", demo.url(ServiceName::Auth))).await;
    assert_eq!(status, 200);
    assert_eq!(faults["auth"]["down"], true);
}

#[tokio::test]
async fn a_category_is_listed_in_the_order_asked_with_its_facets() {
    let (demo, _shutdown) = start().await;
    let base = demo.url(ServiceName::Products);
    let (status, first) = get(format!(
        "{base}/products?category=audio&sort=price_desc&limit=5"
    ))
    .await;
    assert_eq!(status, 200, "{first}");
    let items = first["items"].as_array().expect("items");
    assert_eq!(items.len(), 5);
    assert!(items.iter().all(|item| item["category"] == "audio"));
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let (_, second) = get(format!(
        "{base}/products?category=audio&sort=price_desc&limit=5&cursor={cursor}"
    ))
    .await;
    assert_ne!(second["items"][0]["id"], items[0]["id"]);

    let (status, facets) = get(format!("{base}/categories/audio/facets")).await;
    assert_eq!(status, 200, "{facets}");
    assert_eq!(facets["category"], "audio");
    assert!(facets["total"].as_u64().is_some_and(|total| total > 0));
    assert_eq!(facets["price_bands"].as_array().map(Vec::len), Some(5));

    let (status, related) = get(format!("{base}/products/42/related?limit=4")).await;
    assert_eq!(status, 200, "{related}");
    assert_eq!(related["items"].as_array().map(Vec::len), Some(4));

    for (path, status, code) in [
        ("/products?category=attic", 404, "NOT_FOUND"),
        ("/categories/attic/facets", 404, "NOT_FOUND"),
        (
            "/products?category=audio&sort=cheapest",
            400,
            "INVALID_SORT",
        ),
        ("/products/999999/related", 404, "NOT_FOUND"),
    ] {
        let (answered, problem) = get(format!("{base}{path}")).await;
        assert_eq!(answered, status, "{path}: {problem}");
        assert_eq!(problem["code"], code, "{path}");
    }
}

#[tokio::test]
async fn recommendations_are_the_callers_tenants_users_only() {
    let (demo, _shutdown) = start().await;
    let base = demo.url(ServiceName::Recommendations);
    let user = demo.catalog().user(7).expect("user 7");
    let (status, recommended) = get_with(
        format!("{base}/recommendations?user=7&limit=6"),
        &[("x-auth-tenant", &user.tenant)],
    )
    .await;
    assert_eq!(status, 200, "{recommended}");
    assert_eq!(recommended["user_id"], 7);
    assert_eq!(recommended["items"].as_array().map(Vec::len), Some(6));
    let (status, _) = get_with(
        format!("{base}/recommendations?user=7"),
        &[("x-auth-tenant", "another-tenant")],
    )
    .await;
    assert_eq!(status, 404, "another tenant's user has none");
    let (status, problem) = get(format!("{base}/recommendations")).await;
    assert_eq!(status, 400);
    assert_eq!(problem["code"], "MISSING_PARAMETER");
}

#[tokio::test]
async fn opaque_tokens_are_introspected_and_revoked_over_http() {
    let (demo, _shutdown) = start().await;
    let auth = demo.url(ServiceName::Auth);
    let client = reqwest::Client::new();
    let issued: Value = client
        .post(format!("{auth}/token"))
        .body(json!({ "subject": "user-7", "audience": "bff-web", "format": "opaque" }).to_string())
        .send()
        .await
        .expect("answered")
        .text()
        .await
        .map(|text| serde_json::from_str(&text).expect("json"))
        .expect("a body");
    let token = issued["access_token"].as_str().expect("a token").to_owned();
    let form = |token: &str| {
        format!(
            "token={}",
            url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
        )
    };
    let call = |path: &'static str, user: &'static str, password: &'static str, body: String| {
        client
            .post(format!("{auth}{path}"))
            .basic_auth(user, Some(password))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let answer = call(
        "/introspect",
        "bff-web",
        "dev-introspection-secret",
        form(&token),
    )
    .await
    .expect("answered");
    assert_eq!(answer.status(), 200);
    let claims: Value = serde_json::from_str(&answer.text().await.expect("a body")).expect("json");
    assert_eq!(
        (claims["active"].clone(), claims["sub"].clone()),
        (json!(true), json!("user-7"))
    );
    let refused = call("/introspect", "bff-web", "wrong", form(&token))
        .await
        .expect("answered");
    assert_eq!(refused.status(), 401, "a wrong client secret");
    let revoked = call(
        "/revoke",
        "bff-web",
        "dev-introspection-secret",
        form(&token),
    )
    .await
    .expect("answered");
    assert_eq!(revoked.status(), 200);
    let after: Value = call(
        "/introspect",
        "bff-mobile",
        "dev-introspection-secret",
        form(&token),
    )
    .await
    .expect("answered")
    .text()
    .await
    .map(|text| serde_json::from_str(&text).expect("json"))
    .expect("a body");
    assert_eq!(after, json!({ "active": false }));
    let (_, stats) = get(format!("{auth}/admin/stats")).await;
    assert_eq!(
        stats["introspections"], 3,
        "every call counted, refused ones too"
    );
}
