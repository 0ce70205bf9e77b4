//! bff-mobile's GraphQL endpoint as the internet sees it: every hard limit
//! refuses its query with a stable code before any service is called,
//! answers carry a bounded list of errors, and the schema tells nothing
//! about itself unless configured to.

use demo_services::{DemoServices, FaultConfig, ServiceName};
use gateway_core::{lifecycle::Shutdown, server::Running};
use platform_tests::{Answer, base_url, issue_token, send, start_bff, start_demo};
use serde_json::{Value, json};

async fn mobile(
    demo: &DemoServices,
    shutdown: &Shutdown,
    configure: impl FnOnce(&mut bff_mobile::MobileSettings),
) -> Running {
    start_bff::<bff_mobile::Mobile>(demo, shutdown, |config| configure(&mut config.own)).await
}

async fn graphql(running: &Running, demo: &DemoServices, query: &str) -> Answer {
    send(
        reqwest::Client::new()
            .post(format!("{}/graphql", base_url(running)))
            .bearer_auth(issue_token(demo, "user-1", "bff-mobile", "ES256"))
            .header("content-type", "application/json")
            .body(json!({ "query": query }).to_string()),
    )
    .await
}

fn calls_to_services(demo: &DemoServices) -> u64 {
    [
        ServiceName::Products,
        ServiceName::Pricing,
        ServiceName::Inventory,
    ]
    .into_iter()
    .map(|service| demo.requests(service).received())
    .sum()
}

fn codes(body: &Value) -> Vec<&str> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|error| error["extensions"]["code"].as_str().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn each_limit_refuses_its_query_with_its_code_before_any_service_is_called() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let running = mobile(&demo, &shutdown, |_| {}).await;
    let defaults = bff_mobile::MobileSettings::default();
    let product = "product(id: 42) { name price }";
    let aliased = |count: usize| {
        (0..count)
            .map(|n| format!("p{n}: {product}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let cases = [
        (
            "oversized (200 KB)",
            format!("{{ {product} }} #{}", "x".repeat(200_000)),
            "QUERY_TOO_LARGE",
        ),
        (
            "too many tokens",
            format!(
                "{{ product(id: 42) {{ {} }} }}",
                "name ".repeat(defaults.max_query_tokens)
            ),
            "QUERY_TOO_MANY_TOKENS",
        ),
        (
            "deep",
            format!(
                "{{ {}name{} }}",
                "product(id: 42) { ".repeat(defaults.max_query_depth),
                " }".repeat(defaults.max_query_depth)
            ),
            "QUERY_TOO_DEEP",
        ),
        (
            "aliased",
            format!(
                "{{ product(id: 42) {{ {} }} }}",
                (0..=defaults.max_aliases)
                    .map(|n| format!("n{n}: name"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            "QUERY_TOO_MANY_ALIASES",
        ),
        (
            "wide",
            format!("{{ {} }}", product.repeat(defaults.max_root_fields + 1)),
            "QUERY_TOO_MANY_ROOT_FIELDS",
        ),
        (
            "too many directives",
            format!(
                "{{ product(id: 42) {{ name {} }} }}",
                "@include(if: true) ".repeat(defaults.max_directives + 1)
            ),
            "QUERY_TOO_MANY_DIRECTIVES",
        ),
        (
            // Refused for its 19 KB before its tokens or directives are counted.
            "directive-flooded (1,000 directives)",
            format!(
                "{{ product(id: 42) {{ name {} }} }}",
                "@include(if: true) ".repeat(1_000)
            ),
            "QUERY_TOO_LARGE",
        ),
    ];
    for (case, query, code) in cases {
        let before = calls_to_services(&demo);
        let answer = graphql(&running, &demo, &query).await;
        assert_eq!(answer.status, 200, "{case}: {}", answer.body);
        assert_eq!(codes(&answer.body), [code], "{case}: {}", answer.body);
        assert!(answer.body["data"].is_null(), "{case}: nothing executed");
        assert_eq!(
            calls_to_services(&demo),
            before,
            "{case}: no service called"
        );
    }

    // At each limit the query runs.
    let at_the_limits = format!(
        "{{ {} }}",
        aliased(defaults.max_aliases.min(defaults.max_root_fields))
    );
    let answer = graphql(&running, &demo, &at_the_limits).await;
    assert_eq!(answer.body["errors"], Value::Null, "{}", answer.body);
    assert!(answer.body["data"]["p0"]["name"].is_string());
    shutdown.trigger();
    running.wait().await;
}

#[tokio::test]
async fn an_answer_carries_at_most_max_errors_errors() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let running = mobile(&demo, &shutdown, |settings| settings.max_errors = 3).await;
    demo.faults(ServiceName::Pricing).set(FaultConfig {
        down: true,
        ..FaultConfig::default()
    });
    // Ten products, each with a price that fails on its own: ten errors.
    let products = (1..=10)
        .map(|id| format!("p{id}: product(id: {id}) {{ name price }}"))
        .collect::<Vec<_>>()
        .join(" ");
    let answer = graphql(&running, &demo, &format!("{{ {products} }}")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer.body["data"]["p10"]["name"].is_string(),
        "{}",
        answer.body
    );
    assert!(answer.body["data"]["p10"]["price"].is_null());
    let errors = answer.body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 3, "the first three of ten: {}", answer.body);
    assert!(
        errors
            .iter()
            .all(|error| error["path"][1] == "price" && error["extensions"]["code"].is_string()),
        "{}",
        answer.body
    );
    shutdown.trigger();
    running.wait().await;
}

#[tokio::test]
async fn the_schema_tells_nothing_about_itself_unless_configured_to() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let closed = mobile(&demo, &shutdown, |_| {}).await;
    let open = mobile(&demo, &shutdown, |settings| {
        settings.introspection = true;
        settings.suggestions = true;
    })
    .await;
    let introspection = "{ __schema { queryType { name } } }";
    let misspelt = "{ product(id: 42) { nam } }";

    let refused = graphql(&closed, &demo, introspection).await;
    assert_eq!(refused.status, 200);
    assert_eq!(
        refused.body["data"],
        json!({"__schema": null}),
        "nothing of the schema: {}",
        refused.body
    );
    let answered = graphql(&open, &demo, introspection).await;
    assert_eq!(
        answered.body["data"]["__schema"]["queryType"]["name"], "Query",
        "{}",
        answered.body
    );

    let quiet = graphql(&closed, &demo, misspelt).await;
    let message = quiet.body["errors"][0]["message"]
        .as_str()
        .expect("an error");
    assert!(message.contains("nam"), "{message}");
    assert!(
        !message.contains("Did you mean"),
        "no suggestion: {message}"
    );
    let suggested = graphql(&open, &demo, misspelt).await;
    let message = suggested.body["errors"][0]["message"]
        .as_str()
        .expect("an error");
    assert!(message.contains("Did you mean \"name\""), "{message}");
    shutdown.trigger();
    for running in [closed, open] {
        running.wait().await;
    }
}
