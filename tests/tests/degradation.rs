//! Slow, failing and dead downstream services, made so on purpose.

use std::collections::BTreeMap;

use demo_services::{DemoServices, FaultConfig, ServiceName};
use gateway_core::{
    bff::{Bff, BffConfig},
    config::{HumanDuration, ServiceUrl},
};
use platform_tests::{
    Platform, PlatformOptions, base_url, get_with_token, issue_token, send, start_bff, start_demo,
};
use serde_json::{Value, json};

async fn platform() -> Platform {
    Platform::start_with(PlatformOptions {
        downstream_timeout: Some(HumanDuration::from_millis(300)),
        // The product alone fails a page: it lists no related products.
        web: platform_tests::web_without_related_products(),
        ..PlatformOptions::default()
    })
    .await
    .expect("starts")
}

async fn get(url: String, token: &str) -> (u16, Value) {
    let answer = get_with_token(&url, token).await;
    (answer.status, answer.body)
}

fn slow() -> FaultConfig {
    FaultConfig {
        latency: Some(HumanDuration::from_secs(2)),
        ..FaultConfig::default()
    }
}

fn down() -> FaultConfig {
    FaultConfig {
        down: true,
        ..FaultConfig::default()
    }
}

#[tokio::test]
async fn web_page_degrades_when_optional_parts_fail() {
    let platform = platform().await;
    platform.demo().faults(ServiceName::Reviews).set(down());
    platform.demo().faults(ServiceName::Pricing).set(slow());
    let answer = get_with_token(
        &format!("{}/api/product-page/42", base_url(platform.web())),
        &platform.token("bff-web"),
    )
    .await;
    let page = &answer.body;
    assert_eq!(answer.status, 200, "{page}");
    assert_eq!(page["reviews"], Value::Null);
    assert_eq!(page["price"], Value::Null);
    assert!(page["availability"].is_object());
    assert!(page["product"]["name"].is_string());
    assert_eq!(
        page["missing"],
        json!({ "price": "timeout", "reviews": "unavailable" })
    );
    // The header says the same (in the order the parts failed).
    let mut partial: Vec<&str> = answer.header("bff-partial").split(", ").collect();
    partial.sort_unstable();
    assert_eq!(partial, ["price=timeout", "reviews=unavailable"]);
}

#[tokio::test]
async fn web_page_fails_when_the_product_itself_fails() {
    let platform = platform().await;
    platform.demo().faults(ServiceName::Products).set(down());
    let (status, problem) = get(
        format!("{}/api/product-page/42", base_url(platform.web())),
        &platform.token("bff-web"),
    )
    .await;
    assert_eq!(status, 502, "{problem}");
    assert_eq!(problem["code"], "DOWNSTREAM_UNAVAILABLE");

    platform.demo().faults(ServiceName::Products).set(slow());
    let (status, problem) = get(
        format!("{}/api/product-page/42", base_url(platform.web())),
        &platform.token("bff-web"),
    )
    .await;
    assert_eq!(status, 504, "{problem}");
    assert_eq!(problem["code"], "DOWNSTREAM_TIMEOUT");
    assert!(
        !problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("127.0.0.1"),
        "no internals: {problem}"
    );
}

#[tokio::test]
async fn a_slow_body_counts_against_the_downstream_timeout() {
    let platform = platform().await;
    platform
        .demo()
        .faults(ServiceName::Products)
        .set(FaultConfig {
            slow_body: Some(HumanDuration::from_millis(100)),
            ..FaultConfig::default()
        });
    let (status, problem) = get(
        format!("{}/v1/products/42", base_url(platform.partner())),
        &platform.token("bff-partner"),
    )
    .await;
    assert_eq!(status, 504, "{problem}");
    assert_eq!(problem["code"], "DOWNSTREAM_TIMEOUT");
}

#[tokio::test]
async fn injected_errors_are_a_problem_502_for_partners() {
    let platform = platform().await;
    platform
        .demo()
        .faults(ServiceName::Inventory)
        .set(FaultConfig {
            error_rate: 1.0,
            ..FaultConfig::default()
        });
    let (status, problem) = get(
        format!("{}/v1/products/42", base_url(platform.partner())),
        &platform.token("bff-partner"),
    )
    .await;
    assert_eq!(status, 502, "{problem}");
    assert_eq!(problem["code"], "DOWNSTREAM_BAD_RESPONSE");
    assert!(
        !problem.to_string().contains("INJECTED_FAULT"),
        "the downstream body never leaks: {problem}"
    );
}

#[tokio::test]
async fn mobile_field_errors_carry_codes_and_keep_the_rest() {
    let platform = platform().await;
    platform.demo().faults(ServiceName::Pricing).set(slow());
    let response = reqwest::Client::new()
        .post(format!("{}/graphql", base_url(platform.mobile())))
        .bearer_auth(platform.token("bff-mobile"))
        .header("content-type", "application/json")
        .body(
            json!({ "query": "{ product(id: 42) { name price { formatted } stock } }" })
                .to_string(),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("bff-partial")
            .and_then(|value| value.to_str().ok()),
        Some("price=timeout")
    );
    let body: Value = serde_json::from_str(&response.text().await.expect("body")).expect("json");
    // The rest of the product is kept: its name and stock, only the price null.
    let product = &body["data"]["product"];
    assert!(
        product["name"]
            .as_str()
            .is_some_and(|name| !name.is_empty()),
        "{body}"
    );
    assert_eq!(product["price"], Value::Null, "{body}");
    assert!(product["stock"].is_string(), "{body}");
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "one error, for the price alone: {body}");
    assert_eq!(errors[0]["extensions"]["code"], "DOWNSTREAM_TIMEOUT");
    assert_eq!(errors[0]["path"], json!(["product", "price"]));
}

#[tokio::test]
async fn faults_can_be_set_and_cleared_through_the_admin_api() {
    let platform = Platform::start_with(PlatformOptions {
        faults: BTreeMap::from([(ServiceName::Products, down())]),
        ..PlatformOptions::default()
    })
    .await
    .expect("starts");
    let admin = platform.demo().url(ServiceName::Auth);
    let (status, _) = get(
        format!("{}/v1/products/1", base_url(platform.partner())),
        &platform.token("bff-partner"),
    )
    .await;
    assert_eq!(status, 502);

    let client = reqwest::Client::new();
    let cleared = client
        .delete(format!("{admin}/admin/faults/products"))
        .send()
        .await
        .expect("sent");
    assert_eq!(cleared.status(), 204);
    let (status, _) = get(
        format!("{}/v1/products/1", base_url(platform.partner())),
        &platform.token("bff-partner"),
    )
    .await;
    assert_eq!(status, 200);

    let set = client
        .put(format!("{admin}/admin/faults/products"))
        .body(json!({ "error_rate": 1.0 }).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(set.status(), 200);
    // Another product: product 1 is cached now, and would be served instead of the failure.
    let (status, _) = get(
        format!("{}/v1/products/2", base_url(platform.partner())),
        &platform.token("bff-partner"),
    )
    .await;
    assert_eq!(status, 502);

    let invalid = client
        .put(format!("{admin}/admin/faults/products"))
        .body(json!({ "error_rate": 3.0 }).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(invalid.status(), 400);
}

/// Points each BFF's pricing at a base path the service does not serve, so
/// every price is a 404 while every product exists.
fn pricing_at_a_wrong_path<B: Bff>(demo: &DemoServices) -> impl FnOnce(&mut BffConfig<B>) {
    let wrong = format!("{}/v9", demo.url(ServiceName::Pricing));
    move |config| {
        config
            .downstream
            .get_mut("pricing")
            .expect("the BFF calls pricing")
            .url = ServiceUrl::parse(&wrong).expect("a valid URL");
    }
}

#[tokio::test]
async fn a_downstream_404_for_what_was_not_asked_for_is_a_bad_gateway() {
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let partner =
        start_bff::<bff_partner::Partner>(&demo, &shutdown, pricing_at_a_wrong_path(&demo)).await;
    let web = start_bff::<bff_web::Web>(&demo, &shutdown, pricing_at_a_wrong_path(&demo)).await;
    let mobile =
        start_bff::<bff_mobile::Mobile>(&demo, &shutdown, pricing_at_a_wrong_path(&demo)).await;

    let answer = get_with_token(
        &format!("{}/v1/products/5", base_url(&partner)),
        &issue_token(&demo, "partner-acme", "bff-partner", "RS256"),
    )
    .await;
    answer.assert_problem(
        502,
        "DOWNSTREAM_NOT_FOUND",
        "the product exists, its price is missing",
    );
    assert_eq!(
        answer.body["detail"],
        "the pricing service has no resource this answer needs"
    );

    let unknown = get_with_token(
        &format!("{}/v1/products/999999", base_url(&partner)),
        &issue_token(&demo, "partner-acme", "bff-partner", "RS256"),
    )
    .await;
    unknown.assert_problem(404, "NOT_FOUND", "the product asked for does not exist");

    let (status, page) = get(
        format!("{}/api/product-page/5", base_url(&web)),
        &issue_token(&demo, "user-1", "bff-web", "RS256"),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["missing"], json!({ "price": "not_found" }));

    let answer = send(
        reqwest::Client::new()
            .post(format!("{}/graphql", base_url(&mobile)))
            .bearer_auth(issue_token(&demo, "user-1", "bff-mobile", "RS256"))
            .header("content-type", "application/json")
            .body(
                json!({ "query": "{ product(id: 5) { name price { amountMinor } } }" }).to_string(),
            ),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.body["errors"][0]["extensions"]["code"], "DOWNSTREAM_NOT_FOUND",
        "{}",
        answer.body
    );
    shutdown.trigger();
    for running in [partner, web, mobile] {
        running.wait().await;
    }
}
