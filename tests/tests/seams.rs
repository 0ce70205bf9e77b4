//! The seams a team grows the platform through, used the way a team would:
//! a downstream service added to a BFF through the BFF's crate and its
//! configuration only, a BFF's own configuration section, and a BFF's own
//! layers. Nothing here is declared in gateway-core.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue},
    middleware,
    response::Response,
    routing::get,
};
use bff_web::WebSettings;
use gateway_core::{
    Error, RequestContext,
    auth::RequireScope,
    bff::{Bff, BffConfig, BffParts},
    config::{self, ConfigError, Origin, Secret, ServiceUrl, Validate, render_masked},
    downstream::{Downstreams, ServiceSpec, fetching},
    lifecycle::Shutdown,
    server::Running,
};
use platform_tests::{
    base_url, get_with_token, issue_token, send, serve_on_free_port, start_bff, start_demo,
    write_temp_file,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shared_schema::{
    accounts::{ORDERS, USERS},
    catalog::{INVENTORY, PRICING, PRODUCTS, REVIEWS},
};

/// A service no other part of the platform knows: this file declares it.
const SUGGESTIONS: ServiceSpec = ServiceSpec::new("suggestions", 7010);

/// bff-web's pages plus product suggestions: the web BFF as a team
/// would grow it, with one more downstream service.
#[derive(Debug, Clone, PartialEq)]
struct Storefront;

/// `[storefront]`, the storefront's own section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct StorefrontSettings {
    /// Suggestions shown per product, 1 to 10.
    shown: u32,
    /// The key the suggestions service expects: a secret, never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    suggestions_key: Option<Secret>,
}

impl Default for StorefrontSettings {
    fn default() -> Self {
        Self {
            shown: 3,
            suggestions_key: None,
        }
    }
}

impl Validate for StorefrontSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=10).contains(&self.shown) {
            return Err(ConfigError::rule("shown", "must be 1 to 10"));
        }
        Ok(())
    }
}

impl Bff for Storefront {
    const NAME: &'static str = "bff-storefront";
    const ABOUT: &'static str = "bff-web with suggestions";
    const PUBLIC_PORT: u16 = 8090;
    const ADMIN_PORT: u16 = 9090;
    const SERVICES: &'static [ServiceSpec] = &[
        PRODUCTS,
        INVENTORY,
        PRICING,
        REVIEWS,
        USERS,
        ORDERS,
        bff_web::RECOMMENDATIONS,
        SUGGESTIONS,
    ];
    const SECTION: &'static str = "storefront";
    /// A route whose author forgot that services need a caller.
    const PUBLIC_ROUTES: &'static [&'static str] = &["/api/public/suggestions/{id}"];
    type Config = StorefrontSettings;

    fn routes(settings: &StorefrontSettings, parts: &BffParts) -> Router {
        let suggestions = Router::new()
            .route(
                "/api/suggestions/{id}",
                get(suggest).route_layer(RequireScope::new("products:read")),
            )
            .route("/api/public/suggestions/{id}", get(suggest))
            .with_state(Suggester {
                services: parts.downstreams().clone(),
                shown: settings.shown,
            });
        bff_web::app(parts, &WebSettings::default()).merge(suggestions)
    }

    /// Marks every answer, so the test sees where the BFF's layers sit.
    fn layers(routes: Router, _settings: &StorefrontSettings, _parts: &BffParts) -> Router {
        routes.layer(middleware::map_response(
            |mut response: Response| async move {
                response
                    .headers_mut()
                    .insert("x-storefront", HeaderValue::from_static("1"));
                response
            },
        ))
    }
}

#[derive(Debug, Clone)]
struct Suggester {
    services: Downstreams,
    shown: u32,
}

async fn suggest(
    State(suggester): State<Suggester>,
    context: RequestContext,
    Path(id): Path<u64>,
) -> Result<Json<Value>, Error> {
    let suggested: Vec<u64> = suggester
        .services
        .client(SUGGESTIONS.name)
        .get(
            format!("/suggestions/{id}?limit={}", suggester.shown),
            &context,
        )
        .await
        .map_err(fetching("product", id))?;
    Ok(Json(json!({ "product": id, "suggested": suggested })))
}

#[derive(Debug, Deserialize)]
struct Limit {
    limit: u64,
}

/// A real suggestions service on a free port, keeping the headers of
/// every request it receives.
async fn suggestions_service() -> (SocketAddr, Arc<Mutex<Vec<HeaderMap>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let router = Router::new()
        .route(
            "/suggestions/{id}",
            get(
                |State(received): State<Arc<Mutex<Vec<HeaderMap>>>>,
                 Path(id): Path<u64>,
                 Query(Limit { limit }): Query<Limit>,
                 headers: HeaderMap| async move {
                    received.lock().expect("not poisoned").push(headers);
                    Json((1..=limit).map(|offset| id + offset).collect::<Vec<u64>>())
                },
            ),
        )
        .with_state(received.clone());
    (serve_on_free_port(router).await, received)
}

/// Starts the storefront against `demo` and the suggestions service at `suggestions`.
async fn start_storefront(
    demo: &demo_services::DemoServices,
    suggestions: SocketAddr,
    shutdown: &Shutdown,
) -> Running {
    start_bff::<Storefront>(demo, shutdown, |config| {
        // Tokens from the dev issuer name one of the platform's BFFs as audience.
        config.auth.audience = "bff-web".to_owned();
        config.own.shown = 2;
        config
            .downstream
            .get_mut(SUGGESTIONS.name)
            .expect("the storefront's own service has a section")
            .url = ServiceUrl::parse(&format!("http://{suggestions}")).expect("a valid URL");
    })
    .await
}

#[tokio::test]
async fn a_service_added_in_a_bffs_crate_is_called_with_the_platforms_guarantees() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let (suggestions, received) = suggestions_service().await;
    let storefront = start_storefront(&demo, suggestions, &shutdown).await;
    let token = issue_token(&demo, "user-1", "bff-web", "ES256");

    let answer = send(
        reqwest::Client::new()
            .get(format!("{}/api/suggestions/42", base_url(&storefront)))
            .bearer_auth(&token)
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .header("x-auth-tenant", "forged"),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, json!({ "product": 42, "suggested": [43, 44] }));

    let headers = received.lock().expect("not poisoned").clone();
    assert_eq!(headers.len(), 1, "one call to the service");
    let call = &headers[0];
    let user = demo.catalog().user(1).expect("user 1 exists");
    assert_eq!(call["x-auth-subject"], "user-1");
    assert_eq!(
        call["x-auth-tenant"],
        user.tenant.as_str(),
        "the verified tenant, not the forged one"
    );
    let scopes = call["x-auth-scopes"].to_str().expect("ascii");
    assert!(
        scopes.split(' ').any(|scope| scope == "products:read"),
        "{scopes}"
    );
    let traceparent = call["traceparent"].to_str().expect("ascii");
    assert!(
        traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
            && !traceparent.contains("00f067aa0ba902b7"),
        "the caller's trace, a child span: {traceparent}"
    );
    assert_eq!(call["x-request-id"], answer.header("x-request-id"));

    // The BFF's other routes work beside the new one.
    let page = get_with_token(
        &format!("{}/api/product-page/42", base_url(&storefront)),
        &token,
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.body["product"]["id"], 42);

    let metrics = reqwest::get(format!("http://{}/metrics", storefront.admin_addr()))
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(
            r#"downstream_request_duration_seconds_count{bff="bff-storefront",service="suggestions",outcome="200"} 1"#
        ),
        "{metrics}"
    );
    shutdown.trigger();
    storefront.wait().await;
}

#[tokio::test]
async fn a_bffs_own_layers_see_every_routed_request_before_authentication() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let (suggestions, received) = suggestions_service().await;
    let storefront = start_storefront(&demo, suggestions, &shutdown).await;
    let url = format!("{}/api/suggestions/7", base_url(&storefront));

    let refused = send(reqwest::Client::new().get(&url)).await;
    refused.assert_problem(401, "AUTH_MISSING", "no credential");
    assert_eq!(
        refused.header("x-storefront"),
        "1",
        "the layer is outside authentication"
    );
    assert!(
        received.lock().expect("not poisoned").is_empty(),
        "nothing was called"
    );

    let token = issue_token(&demo, "user-1", "bff-web", "RS256");
    let served = get_with_token(&url, &token).await;
    assert_eq!(served.status, 200, "{}", served.body);
    assert_eq!(served.header("x-storefront"), "1");
    shutdown.trigger();
    storefront.wait().await;
}

fn load(name: &str, contents: &str) -> Result<BffConfig<Storefront>, String> {
    config::load(Some(&write_temp_file(name, contents))).map_err(|error| error.to_string())
}

#[test]
fn the_added_service_and_the_own_section_load_through_the_real_loader() {
    let defaults = BffConfig::<Storefront>::default();
    assert_eq!(
        defaults.downstream[SUGGESTIONS.name].url.as_str(),
        "http://127.0.0.1:7010/",
        "a one-machine run finds the service on its local port"
    );

    let config = load(
        "valid.toml",
        "[storefront]\nshown = 4\n\n[downstream.suggestions]\nurl = \"http://recs.internal:7010\"\ntimeout = \"300ms\"\n",
    )
    .expect("valid");
    assert_eq!(config.own.shown, 4);
    let suggestions = &config.downstream[SUGGESTIONS.name];
    assert_eq!(suggestions.url.as_str(), "http://recs.internal:7010/");
    assert_eq!(
        suggestions.timeout.get(),
        std::time::Duration::from_millis(300)
    );
    assert_eq!(
        config.downstream.len(),
        8,
        "the other services keep their defaults"
    );
}

#[test]
fn a_bad_own_section_or_service_is_one_line_naming_the_key() {
    let error = load("invalid.toml", "[storefront]\nshown = 0\n").expect_err("out of range");
    assert_eq!(error, "storefront.shown: must be 1 to 10");

    let error = load("typo.toml", "[storefront]\nshowen = 4\n").expect_err("unknown key");
    assert!(error.starts_with("storefront.showen (in "), "{error}");
    assert!(
        error.contains("typo.toml") && !error.contains('\n'),
        "{error}"
    );

    let error = load("section.toml", "[storefronts]\nshown = 4\n").expect_err("unknown section");
    assert!(error.starts_with("storefronts (in "), "{error}");

    let error = load(
        "service.toml",
        "[downstream.search]\nurl = \"http://search:7011\"\n",
    )
    .expect_err("a service the storefront does not call");
    assert_eq!(
        error,
        "downstream.search: bff-storefront does not call a service named search \
         (it calls products, inventory, pricing, reviews, users, orders, recommendations, suggestions) and no route forwards to it"
    );
}

#[test]
fn the_own_section_is_shown_with_its_secrets_masked() {
    let config = load(
        "secret.toml",
        "[storefront]\nsuggestions_key = \"hunter2-hunter2\"\n",
    )
    .expect("valid");
    assert_eq!(
        config.own.suggestions_key.as_ref().map(Secret::expose),
        Some("hunter2-hunter2")
    );
    let shown = render_masked(&config);
    assert!(
        shown.contains("[storefront]\nshown = 3\nsuggestions_key = \"***\"\n"),
        "{shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("[downstream.suggestions]"), "{shown}");
}

#[tokio::test]
async fn each_bffs_own_section_changes_what_it_serves() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let web = start_bff::<bff_web::Web>(&demo, &shutdown, |web| {
        web.own.product_page_reviews = 2;
    })
    .await;
    let mobile = start_bff::<bff_mobile::Mobile>(&demo, &shutdown, |mobile| {
        mobile.own.max_query_depth = 3;
        mobile.own.introspection = true;
    })
    .await;
    let partner = start_bff::<bff_partner::Partner>(&demo, &shutdown, |partner| {
        partner.own.public_url = "https://partners.example.com/".to_owned();
    })
    .await;

    let reviews = demo.catalog().reviews(42, 0, 5).expect("product 42 exists");
    assert!(
        reviews.items.len() > 2,
        "the product has more reviews than the page shows"
    );
    let page = get_with_token(
        &format!("{}/api/product-page/42", base_url(&web)),
        &issue_token(&demo, "user-1", "bff-web", "RS256"),
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        page.body["reviews"]["top"].as_array().map(Vec::len),
        Some(2)
    );

    let graphql = |query: &str| {
        send(
            reqwest::Client::new()
                .post(format!("{}/graphql", base_url(&mobile)))
                .bearer_auth(issue_token(&demo, "user-1", "bff-mobile", "RS256"))
                .header("content-type", "application/json")
                .body(json!({ "query": query }).to_string()),
        )
    };
    let shallow = graphql("{ product(id: 42) { name } }").await;
    assert_eq!(shallow.status, 200);
    assert!(
        shallow.body["data"]["product"]["name"].is_string(),
        "{}",
        shallow.body
    );
    let at_the_limit = graphql("{ __schema { queryType { name } } }").await;
    assert_eq!(
        at_the_limit.body["data"]["__schema"]["queryType"]["name"], "Query",
        "{}",
        at_the_limit.body
    );
    let deep = graphql("{ __schema { types { fields { name } } } }").await;
    assert_eq!(deep.status, 200);
    assert!(deep.body["data"].is_null(), "{}", deep.body);
    assert!(
        deep.body["errors"][0]["message"]
            .as_str()
            .is_some_and(|message| message.contains("deep")),
        "refused for its depth: {}",
        deep.body
    );

    let document =
        send(reqwest::Client::new().get(format!("{}/v1/openapi.json", base_url(&partner)))).await;
    assert_eq!(document.status, 200);
    assert_eq!(
        document.body["servers"],
        json!([{ "url": "https://partners.example.com" }])
    );
    assert!(document.body["paths"].get("/v1/products/{id}").is_some());

    shutdown.trigger();
    for running in [web, mobile, partner] {
        running.wait().await;
    }
}

#[tokio::test]
async fn bff_web_answers_cors_for_its_configured_origins_before_authentication() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let web = start_bff::<bff_web::Web>(&demo, &shutdown, |web| {
        web.own.allowed_origins =
            vec![Origin::parse("https://shop.example.com").expect("an origin")];
    })
    .await;
    let url = format!("{}/api/product-page/42", base_url(&web));
    let preflight = |origin: &str| {
        send(
            reqwest::Client::new()
                .request(reqwest::Method::OPTIONS, &url)
                .header("origin", origin)
                .header("access-control-request-method", "GET")
                .header("access-control-request-headers", "authorization"),
        )
    };

    let allowed = preflight("https://shop.example.com").await;
    assert_eq!(
        allowed.status, 200,
        "a preflight needs no credential: {}",
        allowed.body
    );
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        "https://shop.example.com"
    );
    assert_eq!(allowed.header("access-control-allow-credentials"), "true");
    assert!(
        allowed
            .header("access-control-allow-methods")
            .contains("GET")
    );
    assert!(
        allowed
            .header("access-control-allow-headers")
            .contains("authorization")
    );

    let other = preflight("https://evil.example").await;
    assert_eq!(
        other.header("access-control-allow-origin"),
        "",
        "another origin is not allowed"
    );

    let token = issue_token(&demo, "user-1", "bff-web", "RS256");
    let page = send(
        reqwest::Client::new()
            .get(&url)
            .bearer_auth(&token)
            .header("origin", "https://shop.example.com"),
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        page.header("access-control-allow-origin"),
        "https://shop.example.com"
    );
    assert!(
        page.header("access-control-expose-headers")
            .contains("x-request-id")
    );
    // Caches keep one answer per origin and per coding.
    let vary: Vec<String> = page
        .headers
        .get_all("vary")
        .iter()
        .flat_map(|value| value.to_str().expect("ASCII").split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    assert!(
        vary.iter().any(|name| name == "origin")
            && vary.iter().any(|name| name == "accept-encoding"),
        "{vary:?}"
    );

    // Checkout from the web app's origin: a POST with an Idempotency-Key.
    let checkout = send(
        reqwest::Client::new()
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/api/orders", base_url(&web)),
            )
            .header("origin", "https://shop.example.com")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,idempotency-key",
            ),
    )
    .await;
    assert_eq!(checkout.status, 200, "{}", checkout.body);
    assert!(
        checkout
            .header("access-control-allow-methods")
            .contains("POST")
    );
    assert!(
        checkout
            .header("access-control-allow-headers")
            .contains("idempotency-key")
    );

    let refused = send(
        reqwest::Client::new()
            .get(&url)
            .header("origin", "https://shop.example.com"),
    )
    .await;
    refused.assert_problem(401, "AUTH_MISSING", "no credential");
    assert_eq!(
        refused.header("access-control-allow-origin"),
        "https://shop.example.com",
        "the browser may read the error"
    );
    shutdown.trigger();
    web.wait().await;
}

#[tokio::test]
async fn no_service_is_called_for_a_request_without_a_verified_identity() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let (suggestions, received) = suggestions_service().await;
    let storefront = start_storefront(&demo, suggestions, &shutdown).await;
    let public = format!("{}/api/public/suggestions/42", base_url(&storefront));

    let anonymous = send(reqwest::Client::new().get(&public)).await;
    anonymous.assert_problem(500, "INTERNAL", "a public route calling a service");
    // Not even with a tenant header of the caller's choosing.
    let forged = send(
        reqwest::Client::new()
            .get(&public)
            .header("x-auth-tenant", "acme"),
    )
    .await;
    forged.assert_problem(500, "INTERNAL", "a forged tenant");
    assert!(
        received.lock().expect("not poisoned").is_empty(),
        "the service received a request without a verified tenant"
    );
    let metrics = reqwest::get(format!("http://{}/metrics", storefront.admin_addr()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.lines().any(
            |line| line.starts_with("downstream_request_duration_seconds_count")
                && line.contains("service=\"suggestions\"")
                && line.contains("outcome=\"not_sent\"")
                && line.ends_with(" 2")
        ),
        "{metrics}"
    );
    shutdown.trigger();
}
