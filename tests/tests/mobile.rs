//! bff-mobile's GraphQL endpoint as the internet sees it: every hard limit
//! refuses its query with a stable code before any service is called,
//! answers carry a bounded list of errors, and the schema tells nothing
//! about itself unless configured to.

use demo_services::{DemoServices, FaultConfig, ServiceName};
use gateway_core::{lifecycle::Shutdown, server::Running};
use platform_tests::{
    Answer, RedisServer, base_url, instances_sharing_redis, issue_token, send, slow_limits,
    start_bff, start_demo, write_temp_file,
};
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
    let product = "product(id: 42) { name price { amountMinor } }";
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
        .map(|id| format!("p{id}: product(id: {id}) {{ name price {{ formatted }} }}"))
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
        settings.graphiql = true;
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

    // GraphiQL: only when configured, its page and files without a
    // credential, from the binary itself, under a policy allowing nothing
    // but this origin's scripts.
    let get = |running: &Running, path: &str| {
        let url = format!("{}{path}", base_url(running));
        async move { reqwest::get(url).await.expect("sent") }
    };
    for path in ["/graphiql", "/graphiql/graphiql.min.js"] {
        assert_eq!(get(&closed, path).await.status(), 404, "{path}");
    }
    for (path, media_type, contains) in [
        ("/graphiql", "text/html", "/graphiql/graphiql-init.js"),
        (
            "/graphiql/graphiql-init.js",
            "text/javascript",
            "createFetcher({ url: '/graphql' })",
        ),
        ("/graphiql/graphiql.min.js", "text/javascript", "GraphiQL"),
        (
            "/graphiql/graphiql.min.css",
            "text/css",
            ".graphiql-container",
        ),
        (
            "/graphiql/react.production.min.js",
            "text/javascript",
            "React",
        ),
        (
            "/graphiql/react-dom.production.min.js",
            "text/javascript",
            "react-dom",
        ),
    ] {
        let served = get(&open, path).await;
        assert_eq!(served.status(), 200, "{path}");
        let header = |name: &str| {
            served
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert!(header("content-type").starts_with(media_type), "{path}");
        let policy = header("content-security-policy");
        assert!(policy.contains("script-src 'self';"), "{path}: {policy}");
        assert!(!policy.contains("unsafe-eval"), "{path}: {policy}");
        let text = served.text().await.expect("a body");
        assert!(text.contains(contains), "{path}");
        assert!(
            !text.contains("https://unpkg.com"),
            "{path}: nothing from a CDN"
        );
    }
    let unknown = get(&open, "/graphiql/secrets.txt").await;
    assert_eq!(unknown.status(), 404);
    shutdown.trigger();
    for running in [closed, open] {
        running.wait().await;
    }
}

/// `path` with `method`, `headers` and `body` on bff-mobile.
async fn request(
    running: &Running,
    demo: &DemoServices,
    method: reqwest::Method,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Answer {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path_and_query}", base_url(running)))
        .bearer_auth(issue_token(demo, "user-1", "bff-mobile", "ES256"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    send(request).await
}

#[tokio::test]
async fn graphql_over_http_follows_the_specification() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let running = mobile(&demo, &shutdown, |_| {}).await;
    let query = json!({ "query": "{ product(id: 42) { name } }" }).to_string();
    let post = |headers: &'static [(&'static str, &'static str)], body: String| {
        request(
            &running,
            &demo,
            reqwest::Method::POST,
            "/graphql",
            headers,
            Some(body),
        )
    };
    const JSON: (&str, &str) = ("content-type", "application/json");
    const GRAPHQL_RESPONSE: (&str, &str) = ("accept", "application/graphql-response+json");

    // POST reads JSON only: no content type, text/plain or a form (what a
    // page may send cross-site without a preflight) is a 415.
    for headers in [
        &[][..],
        &[("content-type", "text/plain")][..],
        &[("content-type", "application/x-www-form-urlencoded")][..],
    ] {
        post(headers, query.clone()).await.assert_problem(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            &format!("{headers:?}"),
        );
    }

    // GET runs queries, never mutations.
    let get_path = |query: &str| {
        let url = reqwest::Url::parse_with_params("http://bff/graphql", [("query", query)])
            .expect("a URL");
        format!("/graphql?{}", url.query().unwrap_or_default())
    };
    let get = |path_and_query: String| {
        let (running, demo) = (&running, &demo);
        async move {
            request(
                running,
                demo,
                reqwest::Method::GET,
                &path_and_query,
                &[],
                None,
            )
            .await
        }
    };
    let read = get(get_path("{ product(id: 42) { name } }")).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert!(read.body["data"]["product"]["name"].is_string());
    let mutation = get(get_path("mutation { __typename }")).await;
    mutation.assert_problem(405, "METHOD_NOT_ALLOWED", "a mutation over GET");
    assert_eq!(mutation.header("allow"), "POST");

    // application/graphql-response+json: 400 for a request that cannot
    // run, with no data entry; 200 once it ran, field errors included.
    let answered = post(&[JSON, GRAPHQL_RESPONSE], query.clone()).await;
    assert_eq!(answered.status, 200, "{}", answered.body);
    assert_eq!(
        answered.content_type(),
        "application/graphql-response+json; charset=utf-8"
    );
    for (case, query) in [
        ("does not parse", "{ product(id: 42) { name }"),
        ("fails validation", "{ product(id: 42) { nam } }"),
        (
            "over a limit",
            &format!("{{ {} }}", "product(id: 1) { name } ".repeat(11)) as &str,
        ),
    ] {
        let refused = post(
            &[JSON, GRAPHQL_RESPONSE],
            json!({ "query": query }).to_string(),
        )
        .await;
        assert_eq!(refused.status, 400, "{case}: {}", refused.body);
        assert!(
            refused.body.get("data").is_none(),
            "{case}: {}",
            refused.body
        );
        assert!(
            refused.body["errors"][0]["message"].is_string(),
            "{case}: {}",
            refused.body
        );
        // As application/json, the same answer with a 200.
        let legacy = post(&[JSON], json!({ "query": query }).to_string()).await;
        assert_eq!(legacy.status, 200, "{case}");
        assert_eq!(legacy.content_type(), "application/json");
        assert_eq!(legacy.body, refused.body, "{case}");
    }
    demo.faults(ServiceName::Pricing).set(FaultConfig {
        down: true,
        ..FaultConfig::default()
    });
    let partial = post(
        &[JSON, GRAPHQL_RESPONSE],
        json!({ "query": "{ product(id: 42) { name price { formatted } } }" }).to_string(),
    )
    .await;
    assert_eq!(partial.status, 200, "it ran: {}", partial.body);
    assert!(partial.body["data"]["product"]["name"].is_string());
    assert!(partial.body["errors"][0]["path"].is_array());

    post(&[JSON, ("accept", "text/html")], query.clone())
        .await
        .assert_problem(406, "NOT_ACCEPTABLE", "neither media type accepted");
    let preferred = post(
        &[
            JSON,
            (
                "accept",
                "application/json;q=0.5, application/graphql-response+json",
            ),
        ],
        query,
    )
    .await;
    assert_eq!(
        preferred.content_type(),
        "application/graphql-response+json; charset=utf-8"
    );
    shutdown.trigger();
    running.wait().await;
}

#[tokio::test]
async fn a_batch_runs_each_operation_on_its_own_up_to_its_limit() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let running = mobile(&demo, &shutdown, |_| {}).await;
    let max = bff_mobile::MobileSettings::default().max_batch_operations;
    let post = |body: Value| {
        request(
            &running,
            &demo,
            reqwest::Method::POST,
            "/graphql",
            &[("content-type", "application/json")],
            Some(body.to_string()),
        )
    };
    let over_a_limit = format!("{{ {} }}", "product(id: 1) { name } ".repeat(11));
    let batch = post(json!([
        { "query": "{ product(id: 7) { name } }" },
        { "query": over_a_limit },
        { "query": "query P($id: ID!) { product(id: $id) { name } }", "variables": { "id": "3" } },
    ]))
    .await;
    assert_eq!(batch.status, 200, "{}", batch.body);
    let answers = batch.body.as_array().expect("one answer per operation");
    assert_eq!(answers.len(), 3);
    assert_eq!(
        answers[0]["data"]["product"]["name"],
        demo.catalog().product(7).expect("exists").name
    );
    assert_eq!(codes(&answers[1]), ["QUERY_TOO_MANY_ROOT_FIELDS"]);
    assert!(answers[1].get("data").is_none(), "{}", answers[1]);
    assert_eq!(
        answers[2]["data"]["product"]["name"],
        demo.catalog().product(3).expect("exists").name
    );

    let before = calls_to_services(&demo);
    let too_many = post(Value::Array(vec![
        json!({ "query": "{ product(id: 7) { name } }" });
        max + 1
    ]))
    .await;
    assert_eq!(too_many.status, 200, "{}", too_many.body);
    assert_eq!(codes(&too_many.body), ["BATCH_TOO_LARGE"]);
    assert_eq!(calls_to_services(&demo), before, "none of it ran");

    post(json!([]))
        .await
        .assert_problem(400, "BAD_REQUEST", "an empty batch");
    shutdown.trigger();
    running.wait().await;
}

fn sha256_hex(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `body` posted to `running` with `token`.
async fn post_as(running: &Running, token: &str, body: &Value) -> Answer {
    send(
        reqwest::Client::new()
            .post(format!("{}/graphql", base_url(running)))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string()),
    )
    .await
}

fn persisted(hash: &str, query: Option<&str>) -> Value {
    let mut body =
        json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash } } });
    if let Some(query) = query {
        body["query"] = json!(query);
    }
    body
}

#[tokio::test]
async fn automatic_persisted_queries_round_trip_per_tenant_and_across_instances() {
    let redis = RedisServer::start().await;
    let (demo, shutdown) = start_demo(Default::default()).await;
    let instances =
        instances_sharing_redis::<bff_mobile::Mobile, 2>(&demo, &shutdown, &redis.url()).await;
    let tenant_of = |id: u64| demo.catalog().user(id).expect("a demo user").tenant;
    let other_tenants_user = (2..100)
        .find(|id| tenant_of(*id) != tenant_of(1))
        .expect("users of two tenants");
    let token = issue_token(&demo, "user-1", "bff-mobile", "ES256");
    let other_token = issue_token(
        &demo,
        &format!("user-{other_tenants_user}"),
        "bff-mobile",
        "ES256",
    );
    let query = "{ product(id: 42) { name } }";
    let hash = sha256_hex(query);
    let name = demo.catalog().product(42).expect("exists").name;

    let unknown = post_as(&instances[0], &token, &persisted(&hash, None)).await;
    assert_eq!(
        codes(&unknown.body),
        ["PERSISTED_QUERY_NOT_FOUND"],
        "{}",
        unknown.body
    );
    let mismatch = post_as(
        &instances[0],
        &token,
        &persisted(&hash, Some("{ product(id: 43) { name } }")),
    )
    .await;
    assert_eq!(codes(&mismatch.body), ["PERSISTED_QUERY_HASH_MISMATCH"]);
    let still_unknown = post_as(&instances[0], &token, &persisted(&hash, None)).await;
    assert_eq!(
        codes(&still_unknown.body),
        ["PERSISTED_QUERY_NOT_FOUND"],
        "a mismatch registers nothing"
    );

    let registered = post_as(&instances[0], &token, &persisted(&hash, Some(query))).await;
    assert_eq!(
        registered.body["data"]["product"]["name"], name,
        "{}",
        registered.body
    );
    // Every instance knows it now, by its hash alone, over POST and GET.
    let elsewhere = post_as(&instances[1], &token, &persisted(&hash, None)).await;
    assert_eq!(
        elsewhere.body["data"]["product"]["name"], name,
        "{}",
        elsewhere.body
    );
    let extensions = persisted(&hash, None)["extensions"].to_string();
    let url = reqwest::Url::parse_with_params(
        &format!("{}/graphql", base_url(&instances[1])),
        [("extensions", extensions.as_str())],
    )
    .expect("a URL");
    let over_get = send(reqwest::Client::new().get(url).bearer_auth(&token)).await;
    assert_eq!(
        over_get.body["data"]["product"]["name"], name,
        "{}",
        over_get.body
    );

    // Another tenant does not see it.
    let other = post_as(&instances[1], &other_token, &persisted(&hash, None)).await;
    assert_eq!(
        codes(&other.body),
        ["PERSISTED_QUERY_NOT_FOUND"],
        "{}",
        other.body
    );
    shutdown.trigger();
    for running in instances {
        running.wait().await;
    }
}

#[tokio::test]
async fn the_safelist_runs_only_its_operations_and_hashes_can_be_turned_off() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let listed = "{ product(id: 42) { name } }";
    let safelist = write_temp_file(
        "safelist.json",
        &json!({ sha256_hex(listed): listed }).to_string(),
    );
    let safelisted = mobile(&demo, &shutdown, |settings| {
        settings.persisted_queries = bff_mobile::PersistedQueryMode::Safelist;
        settings.safelist_file = Some(safelist);
    })
    .await;
    let off = mobile(&demo, &shutdown, |settings| {
        settings.persisted_queries = bff_mobile::PersistedQueryMode::Off;
    })
    .await;
    let in_process = mobile(&demo, &shutdown, |_| {}).await;
    let token = issue_token(&demo, "user-1", "bff-mobile", "ES256");
    let name = demo.catalog().product(42).expect("exists").name;

    let runs = post_as(&safelisted, &token, &persisted(&sha256_hex(listed), None)).await;
    assert_eq!(runs.body["data"]["product"]["name"], name, "{}", runs.body);
    let before = calls_to_services(&demo);
    for (case, body) in [
        ("a query as text", json!({ "query": listed })),
        (
            "another hash",
            persisted(&sha256_hex("{ product(id: 1) { name } }"), None),
        ),
        (
            "a listed hash with another text",
            persisted(&sha256_hex(listed), Some("{ product(id: 1) { name } }")),
        ),
    ] {
        let refused = post_as(&safelisted, &token, &body).await;
        assert_eq!(
            codes(&refused.body),
            ["PERSISTED_QUERY_REQUIRED"],
            "{case}: {}",
            refused.body
        );
    }
    assert_eq!(calls_to_services(&demo), before, "nothing else ran");

    let not_supported = post_as(&off, &token, &persisted(&sha256_hex(listed), None)).await;
    assert_eq!(
        codes(&not_supported.body),
        ["PERSISTED_QUERY_NOT_SUPPORTED"]
    );
    let plain = post_as(&off, &token, &json!({ "query": listed })).await;
    assert_eq!(plain.body["data"]["product"]["name"], name);

    // Without Redis, texts are kept in process.
    let hash = sha256_hex(listed);
    post_as(&in_process, &token, &persisted(&hash, Some(listed))).await;
    let kept = post_as(&in_process, &token, &persisted(&hash, None)).await;
    assert_eq!(kept.body["data"]["product"]["name"], name, "{}", kept.body);
    shutdown.trigger();
    for running in [safelisted, off, in_process] {
        running.wait().await;
    }
}

#[tokio::test]
async fn a_query_takes_what_it_costs_from_the_callers_rate_limit() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let running = start_bff::<bff_mobile::Mobile>(&demo, &shutdown, |config| {
        config.rate_limit = slow_limits(&[("standard", 20)]);
    })
    .await;
    // 1 + 20 × (edges 1 + node 1 + name 1) = 61 points: 7 tokens at 10
    // points a token, one by the route and six by the query.
    let listing = r#"{ products(first: 20, category: "audio") { edges { node { name } } } }"#;
    let mut admitted = 0;
    let refused = loop {
        let answer = graphql(&running, &demo, listing).await;
        if answer.status != 200 {
            break answer;
        }
        assert_eq!(
            answer.body["data"]["products"]["edges"]
                .as_array()
                .map(Vec::len),
            Some(20),
            "{}",
            answer.body
        );
        admitted += 1;
        assert!(admitted <= 20, "the bucket never ran out");
    };
    assert_eq!(admitted, 2, "20 tokens buy two listings of 7");
    refused.assert_problem(429, "RATE_LIMITED", "the third costs more than is left");
    assert!(!refused.header("retry-after").is_empty());
    // The refused listing took its route's token; what is left (5 tokens)
    // still buys five product screens of one token each.
    for _ in 0..5 {
        let small = graphql(
            &running,
            &demo,
            "{ product(id: 42) { name price { formatted } } }",
        )
        .await;
        assert_eq!(small.status, 200, "{}", small.body);
    }
    let empty = graphql(&running, &demo, "{ product(id: 42) { name } }").await;
    empty.assert_problem(429, "RATE_LIMITED", "the bucket is empty");
    shutdown.trigger();
    running.wait().await;
}

#[tokio::test]
async fn every_product_of_a_query_comes_from_one_batch_call_per_service() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let running = mobile(&demo, &shutdown, |_| {}).await;
    let received = |service: ServiceName| demo.requests(service).received();
    let before = [
        received(ServiceName::Products),
        received(ServiceName::Pricing),
        received(ServiceName::Inventory),
        received(ServiceName::Reviews),
    ];
    let products = (1..=8)
        .map(|id| format!("p{id}: product(id: {id}) {{ name price {{ amountMinor currency }} stock rating {{ average }} }}"))
        .collect::<Vec<_>>()
        .join(" ");
    let answer = graphql(&running, &demo, &format!("{{ {products} }}")).await;
    assert_eq!(answer.body["errors"], Value::Null, "{}", answer.body);
    for id in 1..=8 {
        assert_eq!(
            answer.body["data"][format!("p{id}")]["name"],
            demo.catalog().product(id).expect("exists").name
        );
        assert!(answer.body["data"][format!("p{id}")]["stock"].is_string());
    }
    let calls = [
        received(ServiceName::Products) - before[0],
        received(ServiceName::Pricing) - before[1],
        received(ServiceName::Inventory) - before[2],
        received(ServiceName::Reviews) - before[3],
    ];
    assert_eq!(calls, [1, 1, 1, 1], "eight products, one call per service");
    let priced = demo
        .last_request(ServiceName::Pricing)
        .expect("pricing was called")
        .uri;
    assert!(priced.starts_with("/prices?ids="), "{priced}");
    assert_eq!(priced.split(',').count(), 8, "{priced}");
    shutdown.trigger();
    running.wait().await;
}
