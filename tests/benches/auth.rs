//! Cost of verifying a caller, per token, side by side with a peer.
//!
//! The peer is `jsonwebtoken::decode` with a `Validation`: what a gateway
//! built directly on the library does per request (signature and claims,
//! with a key it already holds). Ours is measured three ways:
//!
//! - `cold`: the full verification with the token cache off (parse, claim
//!   checks, key lookup, signature);
//! - `cached`: a token already verified (hash lookup and a clock check);
//! - `extractor`: the whole credential extraction from request headers with
//!   a cached token, as every request pays it.
//!
//! Keys come from the demo issuer's JWKS over real HTTP, fetched once at
//! start as in production.
//!
//! `internal_token` measures what `[auth.internal_token]` adds to each
//! downstream call at steady state (the caller's cached token set on the
//! call), beside signing a token for every call.
//!
//! Run: `cargo bench -p platform-tests --bench auth`.

use std::{hint::black_box, time::Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use demo_services::{DemoConfig, DemoServices, IssuerConfig, Ports, TokenRequest};
use gateway_core::{
    auth::{
        AuthConfig, Authenticator, Es256Key, Hs256Config, InternalTokenConfig, InternalTokens,
        JwksConfig,
    },
    config::{Secret, ServiceUrl},
    identity::{AUTH_TOKEN, VerifiedIdentity},
    lifecycle::{Readiness, Shutdown},
    observability::Telemetry,
    tls::ClientTls,
};
use http::{HeaderMap, HeaderValue, header};
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;
use shared_schema::{AuthMethod, Identity};
use tokio::runtime::Runtime;

const SECRET: &str = "bench-hs256-secret-that-is-long-enough-0123456789";
const AUDIENCE: &str = "bff-web";

/// The claims the peer decodes.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct PeerClaims {
    sub: String,
    tid: String,
    scope: String,
    exp: u64,
}

struct Setup {
    runtime: Runtime,
    demo: DemoServices,
    cold: Authenticator,
    cached: Authenticator,
    _shutdown: Shutdown,
}

fn authenticator(
    runtime: &Runtime,
    demo: &DemoServices,
    cache: usize,
    shutdown: &Shutdown,
) -> Authenticator {
    let config = AuthConfig {
        hs256: Some(Hs256Config {
            secret: Some(Secret::new(SECRET)),
            secret_file: None,
            kid: None,
        }),
        jwks: JwksConfig::at(ServiceUrl::parse(&demo.jwks_url()).expect("url")),
        token_cache_capacity: cache,
        ..AuthConfig::for_audience(AUDIENCE)
    };
    let readiness = Readiness::default();
    let _guard = runtime.enter();
    let authenticator = Authenticator::start(
        &config,
        &ClientTls::load(None).expect("the public roots"),
        &Telemetry::new("bench"),
        &readiness,
        shutdown,
        &gateway_core::stores::SharedStores::default(),
    )
    .expect("valid config");
    runtime.block_on(async {
        while !readiness.is_ready() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    });
    authenticator
}

fn setup() -> Setup {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let shutdown = Shutdown::new();
    let demo = runtime
        .block_on(DemoServices::start(
            DemoConfig {
                ports: Ports::ephemeral(),
                issuer: IssuerConfig {
                    hs256_secret: Some(Secret::new(SECRET)),
                    ..IssuerConfig::default()
                },
                ..DemoConfig::default()
            },
            shutdown.clone(),
        ))
        .expect("demo services");
    let cold = authenticator(&runtime, &demo, 0, &shutdown);
    let cached = authenticator(&runtime, &demo, 10_000, &shutdown);
    Setup {
        runtime,
        demo,
        cold,
        cached,
        _shutdown: shutdown,
    }
}

fn token(demo: &DemoServices, alg: &str) -> String {
    demo.token(&TokenRequest {
        subject: "user-1".to_owned(),
        audience: AUDIENCE.to_owned(),
        alg: Some(alg.to_owned()),
        scope: None,
        ttl: None,
        format: None,
    })
    .expect("issued")
    .access_token
}

/// The peer's key for `alg`, as a gateway on `jsonwebtoken` alone would hold it.
fn peer_key(demo: &DemoServices, alg: &str) -> (DecodingKey, jsonwebtoken::Algorithm) {
    if alg == "HS256" {
        return (
            DecodingKey::from_secret(SECRET.as_bytes()),
            jsonwebtoken::Algorithm::HS256,
        );
    }
    let jwks = demo.issuer().jwks();
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|key| key["alg"] == alg)
        .expect("a key for alg");
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).expect("a JWK");
    let algorithm = if alg == "RS256" {
        jsonwebtoken::Algorithm::RS256
    } else {
        jsonwebtoken::Algorithm::ES256
    };
    (
        DecodingKey::from_jwk(&jwk).expect("a usable JWK"),
        algorithm,
    )
}

fn bench(criterion: &mut Criterion) {
    let setup = setup();
    for alg in ["HS256", "RS256", "ES256"] {
        let token = token(&setup.demo, alg);
        let mut group = criterion.benchmark_group(format!("verify/{alg}"));

        let (key, algorithm) = peer_key(&setup.demo, alg);
        let mut validation = Validation::new(algorithm);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[setup.demo.issuer().issuer()]);
        group.bench_function("peer_jsonwebtoken_decode", |b| {
            b.iter(|| {
                jsonwebtoken::decode::<PeerClaims>(black_box(&token), &key, &validation)
                    .expect("valid")
            });
        });

        let runtime = &setup.runtime;
        let measure = |authenticator: &Authenticator, iters: u64| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    black_box(
                        authenticator
                            .verify_token(black_box(&token))
                            .await
                            .expect("valid"),
                    );
                }
                started.elapsed()
            })
        };
        group.bench_function("cold", |b| {
            b.iter_custom(|iters| measure(&setup.cold, iters))
        });
        group.bench_function("cached", |b| {
            b.iter_custom(|iters| measure(&setup.cached, iters))
        });

        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("bff.example"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(header::USER_AGENT, HeaderValue::from_static("bench/1.0"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::try_from(format!("Bearer {token}")).expect("header"),
        );
        group.bench_function("extractor_cached", |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        black_box(
                            setup
                                .cached
                                .authenticate(&http::Method::GET, black_box(&headers))
                                .await
                                .expect("valid"),
                        );
                    }
                    started.elapsed()
                })
            });
        });
        group.finish();
    }
}

/// What `[auth.internal_token]` adds to each downstream call at steady
/// state (the caller's token from the per-caller cache, set on the call's
/// headers), beside what signing it on every call would cost instead.
fn internal_token(criterion: &mut Criterion) {
    let config = InternalTokenConfig {
        enabled: true,
        ..InternalTokenConfig::default()
    };
    let tokens = InternalTokens::new(&config, &Telemetry::new("bench")).expect("a signer");
    let caller = VerifiedIdentity::new(Identity {
        subject: "user-1".to_owned(),
        tenant: "acme".to_owned(),
        scopes: [
            "products:read",
            "orders:read",
            "orders:write",
            "profile:read",
        ]
        .map(str::to_owned)
        .to_vec(),
        client: None,
        auth_method: AuthMethod::Jwt,
    })
    .expect("a valid identity");
    let request_id = HeaderValue::from_static("4bf92f3577b34da6a3ce929d0e0e4736");
    let mut headers = HeaderMap::with_capacity(16);
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    headers.insert(AUTH_TOKEN, tokens.header_for(&caller, &request_id));

    let mut group = criterion.benchmark_group("internal_token");
    group.bench_function("steady_state_per_call", |b| {
        b.iter(|| {
            headers.insert(
                AUTH_TOKEN,
                tokens.header_for(black_box(&caller), black_box(&request_id)),
            );
        });
    });
    let key = Es256Key::generate().expect("a key");
    let claims = serde_json::json!({
        "iss": "bff-gateway", "aud": "internal", "sub": "user-1", "tid": "acme",
        "scope": "products:read orders:read orders:write profile:read",
        "auth_method": "jwt", "request_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "iat": 1_800_000_000u64, "exp": 1_800_000_060u64,
    });
    group.bench_function("signed_per_call", |b| {
        b.iter(|| {
            let token = key.sign(black_box(&claims)).expect("signed");
            headers.insert(AUTH_TOKEN, HeaderValue::try_from(token).expect("ascii"));
        });
    });
    group.finish();
}

criterion_group!(benches, bench, internal_token);
criterion_main!(benches);
