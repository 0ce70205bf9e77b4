//! What `Idempotency-Key` costs a request: the latency the idempotency layer
//! adds around a handler, with its records in process and in a real Redis
//! on loopback, for a new key (a miss: claim, run, keep the answer) and a
//! retried one (a hit: the kept answer, the handler not run), side by side
//! with the same handler without the layer.
//!
//! `cargo bench -p platform-tests --bench idempotency` (needs
//! `redis-server`). Not criterion: the figures wanted are latency
//! percentiles per request under concurrency, and the added cost as the
//! difference of medians.

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::Request,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use gateway_core::{
    idempotency::{IdempotencyConfig, IdempotencyLayer},
    identity::VerifiedIdentity,
    lifecycle::Shutdown,
    stores::SharedStores,
};
use http_body_util::BodyExt;
use platform_tests::RedisServer;
use shared_schema::{AuthMethod, Identity};
use tower::{Layer, Service, ServiceExt, service_fn};

/// Requests of each measurement, in all (split among its tasks), in
/// process and in Redis: a few seconds each on a 2-core machine.
const IN_PROCESS_REQUESTS: u64 = 400_000;
const REDIS_REQUESTS: u64 = 40_000;
/// A placed order's answer, about the size of a partner order.
const ANSWER: &str = r#"{"id":1000000001,"status":"pending","lines":[{"product_id":42,"quantity":2,"unit_price":{"amount_minor":27100,"currency":"EUR"}}],"total":{"amount_minor":54200,"currency":"EUR"},"created_at":"2026-12-07T23:35:42Z"}"#;
/// The order's body.
const BODY: &str = r#"{"lines":[{"product_id":42,"quantity":2}]}"#;

/// What a request keys on: a new key each time, or one key retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    New,
    Retried,
}

/// The handler: answers a placed order at once, so what is measured is the layer.
async fn place(_request: Request) -> Result<Response, Infallible> {
    Ok((
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        ANSWER,
    )
        .into_response())
}

fn identity(task: usize) -> Arc<VerifiedIdentity> {
    Arc::new(
        VerifiedIdentity::new(Identity {
            subject: format!("partner-{task}"),
            tenant: "acme".to_owned(),
            scopes: vec!["orders:write".to_owned()],
            client: None,
            auth_method: AuthMethod::ApiKey,
        })
        .expect("a valid identity"),
    )
}

/// `tasks` loops sending `requests` between them through `layer` (or
/// straight to the handler without one); returns requests per second and
/// the 50th and 99th percentile latencies.
async fn measure(
    layer: Option<&IdempotencyLayer>,
    keys: Keys,
    tasks: usize,
    requests: u64,
) -> (f64, Duration, Duration) {
    static NEXT_KEY: AtomicU64 = AtomicU64::new(0);
    let started = Instant::now();
    let loops: Vec<_> = (0..tasks)
        .map(|task| {
            let layer = layer.cloned();
            let caller = identity(task);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(1 << 18);
                let retried_key = format!("retried-{}", NEXT_KEY.fetch_add(1, Ordering::Relaxed));
                for _ in 0..requests / tasks as u64 {
                    let key = match keys {
                        Keys::New => format!("new-{}", NEXT_KEY.fetch_add(1, Ordering::Relaxed)),
                        Keys::Retried => retried_key.clone(),
                    };
                    let mut request = Request::post("/v1/orders")
                        .header("idempotency-key", key)
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Body::from(BODY))
                        .expect("a request");
                    request.extensions_mut().insert(caller.clone());
                    let before = Instant::now();
                    let response = match &layer {
                        Some(layer) => layer.layer(service_fn(place)).oneshot(request).await,
                        None => service_fn(place).call(request).await,
                    }
                    .expect("answered");
                    let status = response.status();
                    let body = response.into_body().collect().await.expect("a body");
                    latencies.push(before.elapsed());
                    assert_eq!(status, StatusCode::CREATED);
                    assert_eq!(body.to_bytes(), ANSWER.as_bytes());
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = Vec::new();
    for handle in loops {
        latencies.extend(handle.await.expect("the loop completes"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let percentile =
        |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    (
        latencies.len() as f64 / elapsed,
        percentile(0.50),
        percentile(0.99),
    )
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let redis = RedisServer::start().await;
        let shutdown = Shutdown::new();
        let stores = SharedStores::open(&redis.url(), &shutdown).expect("a valid URL");
        if let Some(store) = stores.redis() {
            store.connected().await;
        }
        let config = IdempotencyConfig::default();
        let in_process = IdempotencyLayer::new("bench", &config, &SharedStores::default());
        let in_redis = IdempotencyLayer::new("bench", &config, &stores);
        println!(
            "{:<22} {:<8} {:>5} {:>12} {:>10} {:>10} {:>14}",
            "records", "key", "tasks", "requests/s", "p50", "p99", "added p50"
        );
        for tasks in [1, 32] {
            let (rate, p50, p99) = measure(None, Keys::New, tasks, IN_PROCESS_REQUESTS).await;
            println!(
                "{:<22} {:<8} {tasks:>5} {rate:>12.0} {p50:>10.2?} {p99:>10.2?} {:>14}",
                "none (the handler)", "-", "-"
            );
            for (label, layer, requests) in [
                ("in process", &in_process, IN_PROCESS_REQUESTS),
                ("redis (loopback)", &in_redis, REDIS_REQUESTS),
            ] {
                for (name, keys) in [("new", Keys::New), ("retried", Keys::Retried)] {
                    let (rate, layered, p99) = measure(Some(layer), keys, tasks, requests).await;
                    println!(
                        "{label:<22} {name:<8} {tasks:>5} {rate:>12.0} {layered:>10.2?} {p99:>10.2?} {:>14.2?}",
                        layered.saturating_sub(p50)
                    );
                }
            }
        }
        shutdown.trigger();
    });
}
