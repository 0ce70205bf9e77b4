//! Pass-through routes (`[[routes]]`) served by a BFF against real services:
//! what the service gets and the client gets back, streaming both ways,
//! and weighted canaries that stick to their caller.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    Router,
    body::{Body, Bytes},
    http::StatusCode,
    routing::{get, post},
};
use demo_services::{DemoServices, ServiceName};
use futures_util::{future::join_all, stream};
use gateway_core::{
    bff::BffConfig,
    config::{HumanDuration, ServiceUrl},
    downstream::DownstreamConfig,
    lifecycle::Shutdown,
    proxy::{DEFAULT_CANARY_SCOPE, RouteConfig},
    server::Running,
};
use platform_tests::{
    Answer, base_url, eventually, metric, send, serve_on_free_port, start_bff, start_demo,
};
use serde_json::{Value, json};
use tokio::{io::AsyncWriteExt, sync::oneshot};

/// A token for `subject` of tenant `acme` with `scope`, signed ES256 by the
/// demo issuer (any subject, not only the demo users).
fn token(demo: &DemoServices, subject: &str, scope: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let claims = json!({
        "iss": demo.issuer().issuer(), "sub": subject, "tid": "acme", "aud": "bff-web",
        "scope": scope, "iat": now, "nbf": now, "exp": now + 600
    });
    demo.issuer()
        .sign_raw("ES256", &json!({}), &claims)
        .expect("signs")
}

fn route(prefix: &str, service: &str) -> RouteConfig {
    RouteConfig {
        prefix: prefix.to_owned(),
        service: service.to_owned(),
        strip_prefix: false,
        scope: None,
        split: BTreeMap::new(),
        canary_scope: DEFAULT_CANARY_SCOPE.to_owned(),
    }
}

/// Starts bff-web against `demo` with `routes` (and the extra services they
/// name at their URLs), and a rate limit no test here comes near.
async fn start_web(
    demo: &DemoServices,
    shutdown: &Shutdown,
    routes: Vec<RouteConfig>,
    extra_services: &[(&str, String)],
) -> Running {
    start_bff::<bff_web::Web>(demo, shutdown, |config: &mut BffConfig<bff_web::Web>| {
        config.routes = routes;
        for (name, url) in extra_services {
            config.downstream.insert(
                (*name).to_owned(),
                DownstreamConfig::at(ServiceUrl::parse(url).expect("a valid URL")),
            );
        }
        for plan in config.rate_limit.plans.values_mut() {
            plan.capacity = 1_000_000;
            plan.refill_per_second = 1_000_000.0;
        }
    })
    .await
}

async fn get_as(web: &Running, path: &str, token: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = reqwest::Client::new()
        .get(format!("{}{path}", base_url(web)))
        .bearer_auth(token);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(request).await
}

/// The service names in a `Server-Timing` header, `total` left out.
fn timed_services(answer: &Answer) -> Vec<String> {
    answer
        .header("server-timing")
        .split(", ")
        .skip(1)
        .filter_map(|entry| entry.split(';').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_route_forwards_the_request_as_the_client_sent_it_with_the_verified_caller() {
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let catalog = RouteConfig {
        strip_prefix: true,
        scope: Some("products:read".to_owned()),
        ..route("/api/catalog", "products")
    };
    let admin = RouteConfig {
        scope: Some("catalog:admin".to_owned()),
        ..route("/api/catalog-admin", "products")
    };
    let shadowed = route("/api/product-page", "products");
    let nested = route("/api/catalog/reviews", "reviews");
    let web = start_web(
        &demo,
        &shutdown,
        vec![catalog, admin, shadowed, nested],
        &[],
    )
    .await;
    let token = token(&demo, "user-7", "products:read");
    let answer = get_as(
        &web,
        "/api/catalog/products/42?fields=all",
        &token,
        &[
            ("cookie", "theme=dark"),
            ("connection", "x-hop"),
            ("x-hop", "1"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-host", "evil.example"),
            ("x-auth-subject", "admin"),
            ("accept", "application/json"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let product = demo.catalog().product(42).expect("product 42");
    assert_eq!(answer.body["id"], 42);
    assert_eq!(answer.body["name"], product.name);
    assert_eq!(timed_services(&answer), ["products"]);

    let received = demo
        .requests(ServiceName::Products)
        .last()
        .expect("the service got the request");
    assert_eq!(received.method, "GET");
    assert_eq!(received.uri, "/products/42?fields=all", "prefix stripped");
    let header = |name: &str| received.header_values(name).join(",");
    assert_eq!(header("x-auth-subject"), "user-7", "the forged one is gone");
    assert_eq!(header("x-auth-tenant"), "acme");
    // The client's own claims are not believed: the peer is no trusted proxy.
    assert_eq!(header("x-forwarded-for"), "127.0.0.1");
    assert_eq!(header("x-forwarded-proto"), "http");
    assert!(
        header("x-forwarded-host").starts_with("127.0.0.1:"),
        "{received:?}"
    );
    assert_eq!(header("accept"), "application/json");
    for kept_here in ["authorization", "cookie", "x-hop", "connection"] {
        assert_eq!(header(kept_here), "", "{kept_here} is not forwarded");
    }
    let service_authority = demo.url(ServiceName::Products);
    let service_authority = service_authority
        .trim_start_matches("http://")
        .trim_end_matches('/');
    assert_eq!(header("host"), service_authority, "the service's own Host");

    // The route's scope, authentication and the routing table's edges.
    let refused = get_as(&web, "/api/catalog-admin/products/1", &token, &[]).await;
    refused.assert_problem(
        403,
        "AUTH_INSUFFICIENT_SCOPE",
        "the route needs catalog:admin",
    );
    let anonymous =
        send(reqwest::Client::new().get(format!("{}/api/catalog/products/1", base_url(&web))))
            .await;
    anonymous.assert_problem(401, "AUTH_MISSING", "routes are never public");
    let beside = get_as(&web, "/api/catalogue/products/1", &token, &[]).await;
    beside.assert_problem(404, "ROUTE_NOT_FOUND", "a prefix is whole segments");
    assert_eq!(demo.requests(ServiceName::Products).received(), 1);

    // The BFF's own routes win over a prefix covering them; the paths it
    // does not serve are passed through (here to a path products lacks).
    let page = get_as(&web, "/api/product-page/1", &token, &[]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.body["product"]["id"], 1, "the BFF's own page");
    let passed = get_as(&web, "/api/product-page", &token, &[]).await;
    assert_eq!(passed.status, 404, "{}", passed.body);
    assert_eq!(
        timed_services(&passed),
        ["products"],
        "answered by products"
    );
    assert_eq!(
        demo.requests(ServiceName::Products)
            .last()
            .map(|request| request.uri),
        Some("/api/product-page".to_owned())
    );

    // Of nested prefixes the longest wins, with or without a trailing slash.
    for (path, service, received) in [
        ("/api/catalog/", "products", "/"),
        ("/api/catalog/reviews/", "reviews", "/api/catalog/reviews/"),
        (
            "/api/catalog/reviews/x",
            "reviews",
            "/api/catalog/reviews/x",
        ),
    ] {
        let answer = get_as(&web, path, &token, &[]).await;
        assert_eq!(timed_services(&answer), [service], "{path}");
        let served = match service {
            "products" => ServiceName::Products,
            _ => ServiceName::Reviews,
        };
        assert_eq!(
            demo.requests(served).last().map(|request| request.uri),
            Some(received.to_owned()),
            "{path}"
        );
    }
    shutdown.trigger();
}

/// Each chunk of the 10 MiB download.
const CHUNK: usize = 128 * 1024;
const CHUNKS: usize = 80;

/// A service streaming 10 MiB from `GET /files/big`, pausing after half of
/// it until `resume` fires; and answering `POST /files/upload` with the
/// size it received, or a 422 of its own for an empty upload.
fn files_service(resume: oneshot::Receiver<()>) -> Router {
    let resume = Arc::new(Mutex::new(Some(resume)));
    Router::new()
        .route(
            "/files/big",
            get(move || {
                let resume = resume.lock().expect("not poisoned").take();
                let chunks = stream::unfold((0, resume), |(sent, resume)| async move {
                    if sent == CHUNKS {
                        return None;
                    }
                    let resume = match (sent == CHUNKS / 2, resume) {
                        (true, Some(resume)) => {
                            let _ = resume.await;
                            None
                        }
                        (_, resume) => resume,
                    };
                    let chunk = Bytes::from(vec![(sent % 251) as u8; CHUNK]);
                    Some((Ok::<_, std::io::Error>(chunk), (sent + 1, resume)))
                });
                async move { Body::from_stream(chunks) }
            }),
        )
        .route(
            "/files/upload",
            post(|body: Bytes| async move {
                match body.len() {
                    0 => (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        [("content-type", "application/json")],
                        json!({ "error": "empty upload" }).to_string(),
                    ),
                    size => (
                        StatusCode::OK,
                        [("content-type", "application/json")],
                        json!({ "received": size }).to_string(),
                    ),
                }
            }),
        )
}

#[tokio::test]
async fn a_large_answer_streams_through_without_being_held_whole() {
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let (resume, resumed) = oneshot::channel();
    let files = serve_on_free_port(files_service(resumed)).await;
    let web = start_web(
        &demo,
        &shutdown,
        vec![route("/files", "files")],
        &[("files", format!("http://{files}"))],
    )
    .await;
    let token = token(&demo, "user-1", "");
    let mut response = reqwest::Client::new()
        .get(format!("{}/files/big", base_url(&web)))
        .bearer_auth(&token)
        .send()
        .await
        .expect("the head arrives while the service is still sending");
    assert_eq!(response.status(), 200);
    // The first mebibyte arrives while the service holds back its second
    // half: nothing waits for the whole body. (Held whole, it would never
    // arrive and the call would time out.)
    let mut received = Vec::new();
    while received.len() < 1024 * 1024 {
        let chunk = response.chunk().await.expect("readable").expect("more");
        received.extend_from_slice(&chunk);
    }
    assert_eq!(
        metric(
            web.admin_addr(),
            "downstream_in_flight",
            &[("service", "files")]
        )
        .await,
        Some(1.0),
        "the call keeps its concurrency slot while its body streams"
    );
    resume.send(()).expect("the service waits");
    while let Some(chunk) = response.chunk().await.expect("readable") {
        received.extend_from_slice(&chunk);
    }
    assert_eq!(received.len(), CHUNK * CHUNKS);
    for (index, chunk) in received.chunks(CHUNK).enumerate() {
        assert!(
            chunk.iter().all(|byte| usize::from(*byte) == index % 251),
            "chunk {index} arrived whole and in order"
        );
    }
    eventually("the slot is given back with the last byte", async || {
        metric(
            web.admin_addr(),
            "downstream_in_flight",
            &[("service", "files")],
        )
        .await
            == Some(0.0)
    })
    .await;

    // An upload reaches the service whole; the service's own 4xx is passed through.
    let upload = |body: Vec<u8>| {
        send(
            reqwest::Client::new()
                .post(format!("{}/files/upload", base_url(&web)))
                .bearer_auth(&token)
                .body(body),
        )
    };
    let stored = upload(vec![7; 512 * 1024]).await;
    assert_eq!(stored.status, 200, "{}", stored.body);
    assert_eq!(stored.body, json!({ "received": 512 * 1024 }));
    let rejected = upload(Vec::new()).await;
    assert_eq!(rejected.status, 422);
    assert_eq!(rejected.content_type(), "application/json");
    assert_eq!(
        rejected.body,
        json!({ "error": "empty upload" }),
        "the service's own answer"
    );

    // Clients that give up halfway through their upload are their own
    // failure: however many, the service's circuit stays closed.
    for _ in 0..8 {
        let mut stream = tokio::net::TcpStream::connect(web.public_addr())
            .await
            .expect("connects");
        let head = format!(
            "POST /files/upload HTTP/1.1\r\nhost: bff\r\nauthorization: Bearer {token}\r\n\
             content-length: 1000000\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("sent");
        stream.write_all(&[7; 10_000]).await.expect("sent");
        drop(stream);
    }
    let stored = upload(vec![7; 1024]).await;
    assert_eq!(stored.status, 200, "{}", stored.body);
    let admin = web.admin_addr();
    let circuit = metric(admin, "downstream_circuit_state", &[("service", "files")]).await;
    assert_eq!(circuit, Some(0.0), "closed");
    let opened = metric(
        admin,
        "downstream_circuit_transitions_total",
        &[("service", "files"), ("to", "open")],
    )
    .await;
    assert_eq!(opened.unwrap_or_default(), 0.0, "never opened");
    shutdown.trigger();
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_and_frees_the_services_slot() {
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    // No pause: the service sends its 10 MiB as fast as it is read.
    let files = serve_on_free_port(files_service(oneshot::channel().1)).await;
    let web =
        start_bff::<bff_web::Web>(&demo, &shutdown, |config: &mut BffConfig<bff_web::Web>| {
            config.routes = vec![route("/files", "files")];
            config.downstream.insert(
                "files".to_owned(),
                DownstreamConfig::at(ServiceUrl::parse(&format!("http://{files}")).expect("a URL")),
            );
            config.server.send_timeout = HumanDuration::from_millis(300);
        })
        .await;
    let token = token(&demo, "user-1", "");
    let mut stalled = tokio::net::TcpStream::connect(web.public_addr())
        .await
        .expect("connects");
    let head =
        format!("GET /files/big HTTP/1.1\r\nhost: bff\r\nauthorization: Bearer {token}\r\n\r\n");
    stalled.write_all(head.as_bytes()).await.expect("sent");
    let admin = web.admin_addr();
    let calls = &[("service", "files"), ("outcome", "200")];
    eventually("the download started", async || {
        metric(admin, "downstream_request_duration_seconds_count", calls)
            .await
            .is_some_and(|count| count >= 1.0)
    })
    .await;
    // The client never reads: once its socket is full the connection is
    // closed after the send timeout, and the call's slot comes back.
    eventually("the stalled download gives its slot back", async || {
        metric(admin, "downstream_in_flight", &[("service", "files")]).await == Some(0.0)
    })
    .await;
    drop(stalled);
    shutdown.trigger();
}

/// Which side served `subject`'s request, by its `Server-Timing` entry;
/// `force` asks for a side with `BFF-Canary`, as a tester when `tester`.
async fn side_of(
    web: &Running,
    demo: &DemoServices,
    subject: &str,
    force: Option<&str>,
    tester: bool,
) -> String {
    let headers: Vec<(&str, &str)> = force.map(|side| ("bff-canary", side)).into_iter().collect();
    let scope = if tester { DEFAULT_CANARY_SCOPE } else { "" };
    let answer = get_as(
        web,
        "/api/catalog/products/3",
        &token(demo, subject, scope),
        &headers,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let services = timed_services(&answer);
    assert_eq!(services.len(), 1, "{services:?}");
    services.into_iter().next().unwrap_or_default()
}

#[tokio::test]
async fn a_weighted_canary_splits_callers_by_weight_and_each_sticks_to_its_side() {
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let (canary_demo, canary_shutdown) = start_demo(BTreeMap::new()).await;
    let split = RouteConfig {
        strip_prefix: true,
        split: BTreeMap::from([("products".to_owned(), 95), ("products-v2".to_owned(), 5)]),
        ..route("/api/catalog", "products")
    };
    let web = start_web(
        &demo,
        &shutdown,
        vec![split],
        &[("products-v2", canary_demo.url(ServiceName::Products))],
    )
    .await;

    // 2,000 callers, 32 at a time: the split's own unit test checks the
    // weights over 10,000 callers without HTTP; here each caller's request
    // is counted at the side the BFF sent it to.
    const CALLERS: usize = 2_000;
    let subjects: Vec<String> = (0..CALLERS).map(|n| format!("caller-{n}")).collect();
    let mut sides = Vec::with_capacity(CALLERS);
    for batch in subjects.chunks(32) {
        let batch = batch
            .iter()
            .map(|subject| side_of(&web, &demo, subject, None, false));
        sides.extend(join_all(batch).await);
    }
    let on_canary = sides.iter().filter(|side| *side == "products-v2").count();
    assert!(
        (CALLERS * 4 / 100..=CALLERS * 6 / 100).contains(&on_canary),
        "5% of {CALLERS} callers within 4-6%: {on_canary}"
    );
    let canary_received = canary_demo.requests(ServiceName::Products).received();
    assert_eq!(
        canary_received, on_canary as u64,
        "counted at the canary itself"
    );
    assert_eq!(
        demo.requests(ServiceName::Products).received(),
        (CALLERS - on_canary) as u64
    );

    // A caller always lands on the same side: ten of each side, five more times.
    let of_side = |wanted: &str| -> Vec<String> {
        subjects
            .iter()
            .zip(&sides)
            .filter(|(_, side)| *side == wanted)
            .map(|(subject, _)| subject.clone())
            .take(10)
            .collect()
    };
    let (stable, canary) = (of_side("products"), of_side("products-v2"));
    assert_eq!((stable.len(), canary.len()), (10, 10));
    for (side, callers) in [("products", &stable), ("products-v2", &canary)] {
        for subject in callers {
            for _ in 0..5 {
                let again = side_of(&web, &demo, subject, None, false).await;
                assert_eq!(again, side, "{subject}");
            }
        }
    }

    // A tester forces either side; anyone else's header changes nothing;
    // a name that is not a side is refused.
    for subject in stable.iter().chain(&canary) {
        for side in ["products-v2", "products"] {
            assert_eq!(side_of(&web, &demo, subject, Some(side), true).await, side);
        }
    }
    for (on_stable, on_canary) in stable.iter().zip(&canary) {
        let ignored = side_of(&web, &demo, on_stable, Some("products-v2"), false).await;
        assert_eq!(ignored, "products", "{on_stable}");
        let ignored = side_of(&web, &demo, on_canary, Some("products"), false).await;
        assert_eq!(ignored, "products-v2", "{on_canary}");
    }
    let unknown = get_as(
        &web,
        "/api/catalog/products/3",
        &token(&demo, "caller-1", DEFAULT_CANARY_SCOPE),
        &[("bff-canary", "orders")],
    )
    .await;
    unknown.assert_problem(400, "BAD_REQUEST", "not a side of the route");
    assert_eq!(
        unknown.body["detail"],
        Value::from(
            "bad request: BFF-Canary must name a service of this route: products, products-v2"
        )
    );
    shutdown.trigger();
    canary_shutdown.trigger();
}
