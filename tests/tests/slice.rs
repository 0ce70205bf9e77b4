//! The vertical slice through each BFF, over real HTTP to real demo services.

use platform_tests::{Platform, base_url, get_with_token, send};
use serde_json::{Value, json};

async fn get_json(url: &str, token: &str) -> (u16, String, Value) {
    let answer = get_with_token(url, token).await;
    (answer.status, answer.content_type().to_owned(), answer.body)
}

async fn graphql(platform: &Platform, body: Value) -> (u16, Value) {
    let request = reqwest::Client::new()
        .post(format!("{}/graphql", base_url(platform.mobile())))
        .bearer_auth(platform.token("bff-mobile"))
        .header("content-type", "application/json")
        .body(body.to_string());
    let answer = send(request).await;
    (answer.status, answer.body)
}

#[tokio::test]
async fn web_product_page_nests_all_four_services() {
    let platform = Platform::start().await;
    let catalog = platform.demo().catalog();
    let (status, content_type, page) = get_json(
        &format!("{}/api/product-page/42", base_url(platform.web())),
        &platform.token("bff-web"),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(content_type, "application/json");

    let product = catalog.product(42).expect("exists");
    let price = catalog.price(42).expect("exists");
    let stock = catalog.stock(42).expect("exists");
    let reviews = catalog.reviews(42, 0, 5).expect("exists");
    assert_eq!(page["product"]["id"], 42);
    assert_eq!(page["product"]["name"], product.name);
    assert_eq!(page["product"]["imageUrl"], product.image_url);
    assert_eq!(page["price"]["amountMinor"], price.amount_minor);
    assert_eq!(page["price"]["currency"], "EUR");
    assert!(
        page["price"]["formatted"]
            .as_str()
            .expect("formatted")
            .ends_with(" EUR")
    );
    assert_eq!(page["availability"]["available"], stock.available);
    assert_eq!(page["availability"]["inStock"], stock.available > 0);
    assert_eq!(page["reviews"]["total"], reviews.total);
    assert_eq!(
        page["reviews"]["top"].as_array().map(Vec::len),
        Some(reviews.items.len())
    );
    assert_eq!(page["missing"], json!({}));
    platform.stop().await;
}

#[tokio::test]
async fn web_unknown_product_is_a_problem_404() {
    let platform = Platform::start().await;
    let answer = get_with_token(
        &format!("{}/api/product-page/999999", base_url(platform.web())),
        &platform.token("bff-web"),
    )
    .await;
    answer.assert_problem(404, "NOT_FOUND", "unknown product");
    assert_eq!(answer.body["detail"], "product 999999 not found");
}

#[tokio::test]
async fn web_non_numeric_id_is_a_problem_400() {
    let platform = Platform::start().await;
    let answer = get_with_token(
        &format!("{}/api/product-page/abc", base_url(platform.web())),
        &platform.token("bff-web"),
    )
    .await;
    answer.assert_problem(400, "BAD_REQUEST", "non-numeric id");
}

#[tokio::test]
async fn unknown_routes_are_problem_404_on_every_bff() {
    let platform = Platform::start().await;
    for running in [platform.web(), platform.mobile(), platform.partner()] {
        let answer =
            get_with_token(&format!("{}/no/such/route", base_url(running)), "no-token").await;
        answer.assert_problem(404, "ROUTE_NOT_FOUND", "unknown route");
    }
}

#[tokio::test]
async fn mobile_query_returns_only_the_fields_asked_for() {
    let platform = Platform::start().await;
    let catalog = platform.demo().catalog();
    let (status, body) = graphql(
        &platform,
        json!({ "query": "{ product(id: 42) { name price { amountMinor currency } stock } }" }),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.get("errors").is_none(), "{body}");
    let product = &body["data"]["product"];
    let price = catalog.price(42).expect("exists");
    assert_eq!(product["name"], catalog.product(42).expect("exists").name);
    assert_eq!(
        product["price"],
        json!({ "amountMinor": price.amount_minor, "currency": "EUR" })
    );
    let available = catalog.stock(42).expect("exists").available;
    assert_eq!(
        product["stock"],
        match available {
            0 => "OUT",
            1..=5 => "LOW",
            _ => "IN_STOCK",
        }
    );
    assert_eq!(
        product.as_object().map(|fields| fields.len()),
        Some(3),
        "trimmed to the selection: {product}"
    );
}

#[tokio::test]
async fn mobile_query_with_variables_and_get() {
    let platform = Platform::start().await;
    let (status, body) = graphql(
        &platform,
        json!({ "query": "query P($id: ID!) { product(id: $id) { id price { currency } stock } }", "variables": { "id": "7" } }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["product"]["id"], "7");
    assert_eq!(body["data"]["product"]["price"]["currency"], "EUR");

    let url = format!(
        "{}/graphql?query=%7B%20product(id%3A%203)%20%7B%20name%20%7D%20%7D",
        base_url(platform.mobile())
    );
    let (status, _, body) = get_json(&url, &platform.token("bff-mobile")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["data"]["product"]["name"],
        platform.demo().catalog().product(3).expect("exists").name
    );
}

#[tokio::test]
async fn mobile_unknown_product_is_null_and_bad_input_is_an_error() {
    let platform = Platform::start().await;
    let (status, body) = graphql(
        &platform,
        json!({ "query": "{ product(id: 999999) { name } }" }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["product"], Value::Null);
    assert!(body.get("errors").is_none(), "{body}");

    let (_, body) = graphql(
        &platform,
        json!({ "query": "{ product(id: \"x\") { name } }" }),
    )
    .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "INVALID_ARGUMENT",
        "{body}"
    );

    let (_, body) = graphql(&platform, json!({ "query": "{ product(id: 1) { nope } }" })).await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|message| message.contains("nope")),
        "{body}"
    );
}

#[tokio::test]
async fn mobile_malformed_body_is_a_problem_400() {
    let platform = Platform::start().await;
    let response = reqwest::Client::new()
        .post(format!("{}/graphql", base_url(platform.mobile())))
        .bearer_auth(platform.token("bff-mobile"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

/// A query nested deeper than bff-mobile's default `max_query_depth`.
fn too_deep_query() -> String {
    format!(
        "{{ __schema {{ types {{ fields {{ type {}name{} }} }} }} }}",
        "ofType { ".repeat(10),
        " }".repeat(10)
    )
}

fn refused_as_too_deep(body: &Value) -> bool {
    body["errors"][0]["extensions"]["code"] == "QUERY_TOO_DEEP" && body["data"].is_null()
}

#[tokio::test]
async fn mobile_refuses_queries_that_are_too_deep() {
    let platform = Platform::start().await;
    let deep = too_deep_query();
    let (_, body) = graphql(&platform, json!({ "query": deep })).await;
    assert!(refused_as_too_deep(&body), "{body}");
}

/// The same query text again is served from its parsed document, which
/// neither fixes its variables nor skips validation.
#[tokio::test]
async fn mobile_repeated_queries_take_their_own_variables_and_are_checked_each_time() {
    let platform = Platform::start().await;
    let catalog = platform.demo().catalog();
    let query = "query P($id: ID!) { product(id: $id) { name } }";
    for id in [7, 3, 7] {
        let (status, body) = graphql(
            &platform,
            json!({ "query": query, "variables": { "id": id.to_string() } }),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            body["data"]["product"]["name"],
            catalog.product(id).expect("exists").name,
            "product {id}: {body}"
        );
    }
    let deep = too_deep_query();
    for attempt in 1..=2 {
        let (_, body) = graphql(&platform, json!({ "query": deep })).await;
        assert!(refused_as_too_deep(&body), "attempt {attempt}: {body}");
        let (_, body) = graphql(&platform, json!({ "query": "{ product(id: 1) { name }" })).await;
        assert!(body["data"].is_null(), "attempt {attempt}: {body}");
        assert!(
            body["errors"][0]["message"].is_string(),
            "attempt {attempt}: a syntax error each time: {body}"
        );
    }
}

#[tokio::test]
async fn partner_product_is_stable_snake_case() {
    let platform = Platform::start().await;
    let catalog = platform.demo().catalog();
    let (status, content_type, product) = get_json(
        &format!("{}/v1/products/42", base_url(platform.partner())),
        &platform.token("bff-partner"),
    )
    .await;
    assert_eq!(status, 200, "{product}");
    assert_eq!(content_type, "application/json");
    let price = catalog.price(42).expect("exists");
    let stock = catalog.stock(42).expect("exists");
    let expected = catalog.product(42).expect("exists");
    assert_eq!(
        product,
        json!({
            "id": 42,
            "sku": expected.sku,
            "name": expected.name,
            "brand": expected.brand,
            "category": expected.category,
            "price": { "amount_minor": price.amount_minor, "list_amount_minor": price.list_amount_minor, "currency": "EUR" },
            "stock": { "available": stock.available, "warehouse": stock.warehouse },
            "created_at": iso_8601(expected.created_at),
            "updated_at": iso_8601(expected.updated_at),
        })
    );
}

/// Seconds since the Unix epoch as ISO 8601 in UTC.
fn iso_8601(seconds: u64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds),
    )
    .to_string()
}

#[tokio::test]
async fn partner_unknown_product_is_a_problem_404() {
    let platform = Platform::start().await;
    let answer = get_with_token(
        &format!("{}/v1/products/0", base_url(platform.partner())),
        &platform.token("bff-partner"),
    )
    .await;
    answer.assert_problem(404, "NOT_FOUND", "unknown partner product");
}

#[tokio::test]
async fn metrics_count_downstream_calls_per_service() {
    let platform = Platform::start().await;
    let (status, _, _) = get_json(
        &format!("{}/api/product-page/1", base_url(platform.web())),
        &platform.token("bff-web"),
    )
    .await;
    assert_eq!(status, 200);
    let metrics = reqwest::get(format!("http://{}/metrics", platform.web().admin_addr()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    // Products twice: the product and its related products.
    for (service, calls) in [
        ("products", 2),
        ("inventory", 1),
        ("pricing", 1),
        ("reviews", 1),
    ] {
        assert!(
            metrics.contains(&format!(
                "downstream_request_duration_seconds_count{{bff=\"bff-web\",service=\"{service}\",outcome=\"200\"}} {calls}"
            )),
            "{service}: {metrics}"
        );
    }
    assert!(
        metrics.contains(r#"route="/api/product-page/{id}",method="GET",status="200"} 1"#),
        "{metrics}"
    );
}
