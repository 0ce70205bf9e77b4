//! Authentication end to end: real keys, a real JWKS over HTTP, real BFFs.
//!
//! Tokens are signed by the demo issuer's own keys (`Issuer::sign_raw`) or,
//! for attacks, by an attacker's keys or with a key used the wrong way.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use demo_services::{
    DemoConfig, DemoServices, FaultConfig, IssuerConfig, Ports, ServiceName, TokenRequest,
};
use gateway_core::{
    config::{HumanDuration, Origin},
    lifecycle::Shutdown,
};
use platform_tests::{
    Answer, Platform, PlatformOptions, api_key, base_url, eventually_within, send,
};
use serde_json::{Value, json};

/// The HS256 secret the platform accepts in these tests.
const SECRET: &str = "hs256-test-secret-that-is-long-enough-0123456789";
const ALGORITHMS: [&str; 3] = ["RS256", "ES256", "HS256"];
/// Upper bound on any wait for something to happen eventually.
const PATIENCE: Duration = Duration::from_secs(20);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

async fn platform_with(options: PlatformOptions) -> Platform {
    Platform::start_with(PlatformOptions {
        hs256_secret: Some(SECRET.to_owned()),
        ..options
    })
    .await
    .expect("the platform starts")
}

async fn platform() -> Platform {
    platform_with(PlatformOptions::default()).await
}

/// Claims of a valid token for `user-1` and `audience`.
fn claims(platform: &Platform, audience: &str) -> Value {
    let tenant = platform.demo().catalog().user(1).expect("user 1").tenant;
    let now = now();
    json!({
        "iss": platform.demo().issuer().issuer(), "sub": "user-1", "tid": tenant, "aud": audience,
        "scope": "products:read", "iat": now, "nbf": now, "exp": now + 300
    })
}

fn with(mut claims: Value, changes: Value) -> Value {
    for (name, value) in changes.as_object().expect("an object of changes") {
        if value.is_null() {
            claims.as_object_mut().expect("object").remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

fn hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    let message = format!("{}.{}", b64(header), b64(claims));
    let key = jsonwebtoken::EncodingKey::from_secret(secret);
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
            .expect("signs");
    format!("{message}.{signature}")
}

/// A token signed with `alg` by the issuer (or the shared secret for HS256).
fn sign(platform: &Platform, alg: &str, header: Value, claims: &Value) -> String {
    if alg == "HS256" {
        let header = with(json!({ "alg": "HS256", "typ": "JWT" }), header);
        return hs256(SECRET.as_bytes(), &header, claims);
    }
    platform
        .demo()
        .issuer()
        .sign_raw(alg, &header, claims)
        .expect("signs")
}

/// The checks every rejection must pass: status, code, problem+json, trace id.
trait Rejected {
    fn assert_rejected(&self, status: u16, code: &str, context: &str);
    fn challenge(&self) -> &str;
}

impl Rejected for Answer {
    #[track_caller]
    fn assert_rejected(&self, status: u16, code: &str, context: &str) {
        self.assert_problem(status, code, context);
    }

    fn challenge(&self) -> &str {
        self.header("www-authenticate")
    }
}

/// `GET /api/product-page/1` on bff-web with `token`.
async fn web(platform: &Platform, token: &str) -> Answer {
    let url = format!("{}/api/product-page/1", base_url(platform.web()));
    send(reqwest::Client::new().get(url).bearer_auth(token)).await
}

#[tokio::test]
async fn valid_tokens_are_accepted_for_every_algorithm() {
    let platform = platform().await;
    for alg in ALGORITHMS {
        let token = sign(&platform, alg, json!({}), &claims(&platform, "bff-web"));
        let answer = web(&platform, &token).await;
        assert_eq!(answer.status, 200, "{alg}: {}", answer.body);
    }
    // And tokens from the issuer's token endpoint, over HTTP.
    for alg in ["RS256", "ES256", "HS256"] {
        let issued: Value = reqwest::Client::new()
            .post(format!("{}/token", platform.demo().url(ServiceName::Auth)))
            .body(json!({ "subject": "user-7", "audience": "bff-web", "alg": alg }).to_string())
            .send()
            .await
            .expect("issued")
            .json_value()
            .await;
        let answer = web(&platform, issued["access_token"].as_str().expect("a token")).await;
        assert_eq!(answer.status, 200, "{alg}: {}", answer.body);
    }
}

trait JsonValue {
    async fn json_value(self) -> Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Value {
        serde_json::from_str(&self.text().await.expect("body")).expect("json")
    }
}

/// Signs valid claims changed by `changes` with every algorithm and checks
/// bff-web refuses each token with `code` and the reason `detail`.
async fn rejected_for_every_algorithm(
    platform: &Platform,
    changes: Value,
    code: &str,
    detail: &str,
) {
    for alg in ALGORITHMS {
        let claims = with(claims(platform, "bff-web"), changes.clone());
        let answer = web(platform, &sign(platform, alg, json!({}), &claims)).await;
        answer.assert_rejected(401, code, alg);
        assert_eq!(answer.body["detail"], detail, "{alg}");
        assert_eq!(
            answer.challenge(),
            format!(r#"Bearer error="invalid_token", error_description="{detail}""#),
            "{alg}"
        );
    }
}

#[tokio::test]
async fn expired_tokens_are_rejected() {
    let platform = platform().await;
    let expired = json!({ "exp": now() - 120, "iat": now() - 600, "nbf": now() - 600 });
    rejected_for_every_algorithm(&platform, expired, "AUTH_TOKEN_EXPIRED", "token expired").await;
}

#[tokio::test]
async fn tokens_not_yet_valid_are_rejected() {
    let platform = platform().await;
    let early = json!({ "nbf": now() + 300 });
    rejected_for_every_algorithm(
        &platform,
        early,
        "AUTH_TOKEN_NOT_YET_VALID",
        "token not yet valid",
    )
    .await;
    let from_the_future = json!({ "iat": now() + 300 });
    rejected_for_every_algorithm(
        &platform,
        from_the_future,
        "AUTH_TOKEN_NOT_YET_VALID",
        "token issued in the future",
    )
    .await;
}

#[tokio::test]
async fn tokens_without_exp_are_rejected() {
    let platform = platform().await;
    rejected_for_every_algorithm(
        &platform,
        json!({ "exp": null }),
        "AUTH_INVALID_CLAIMS",
        "missing claim exp",
    )
    .await;
}

#[tokio::test]
async fn tokens_from_another_issuer_are_rejected() {
    let platform = platform().await;
    let foreign = json!({ "iss": "https://evil.example" });
    rejected_for_every_algorithm(&platform, foreign, "AUTH_WRONG_ISSUER", "wrong issuer").await;
}

#[tokio::test]
async fn tokens_for_another_audience_are_rejected() {
    let platform = platform().await;
    let for_mobile = json!({ "aud": "bff-mobile" });
    rejected_for_every_algorithm(
        &platform,
        for_mobile,
        "AUTH_WRONG_AUDIENCE",
        "wrong audience",
    )
    .await;
    // Tokens the issuer minted for one BFF are refused by the others.
    let client = reqwest::Client::new();
    let mobile_token = platform.token("bff-mobile");
    web(&platform, &mobile_token).await.assert_rejected(
        401,
        "AUTH_WRONG_AUDIENCE",
        "mobile token at web",
    );
    let web_token = platform.token("bff-web");
    send(
        client
            .get(format!("{}/v1/products/1", base_url(platform.partner())))
            .bearer_auth(&web_token),
    )
    .await
    .assert_rejected(401, "AUTH_WRONG_AUDIENCE", "web token at partner");
    let partner_token = platform.token_for("partner-acme", "bff-partner", "ES256");
    send(
        client
            .post(format!("{}/graphql", base_url(platform.mobile())))
            .bearer_auth(&partner_token)
            .body(json!({ "query": "{ product(id: 1) { name } }" }).to_string()),
    )
    .await
    .assert_rejected(401, "AUTH_WRONG_AUDIENCE", "partner token at mobile");
}

#[tokio::test]
async fn alg_none_is_rejected_with_and_without_a_signature() {
    let platform = platform().await;
    let claims = claims(&platform, "bff-web");
    for none in ["none", "None", "NONE"] {
        let header = b64(&json!({ "alg": none, "typ": "JWT" }));
        let unsigned = format!("{header}.{}.", b64(&claims));
        assert_eq!(
            web(&platform, &unsigned).await.status,
            401,
            "{none} without a signature"
        );
        // A real signature, with the header swapped for alg none.
        let signed = sign(&platform, "RS256", json!({}), &claims);
        let signature = signed.rsplit('.').next().expect("signature");
        let swapped = format!("{header}.{}.{signature}", b64(&claims));
        web(&platform, &swapped)
            .await
            .assert_rejected(401, "AUTH_ALGORITHM_REJECTED", none);
    }
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_rejected() {
    let platform = platform().await;
    let (der, pem) = platform.demo().issuer().rsa_public_key();
    let (rsa_kid, _) = platform.demo().issuer().active_kids();
    let claims = claims(&platform, "bff-web");
    for (form, secret) in [("PEM", pem.as_bytes()), ("DER", der.as_slice())] {
        // Naming the RSA key: the key is pinned to RS256, so HS256 is refused outright.
        let with_kid = hs256(secret, &json!({ "alg": "HS256", "kid": rsa_kid }), &claims);
        web(&platform, &with_kid)
            .await
            .assert_rejected(401, "AUTH_ALGORITHM_REJECTED", form);
        // Without a kid the only HS256 key is the configured secret, which this is not.
        let without_kid = hs256(secret, &json!({ "alg": "HS256" }), &claims);
        web(&platform, &without_kid)
            .await
            .assert_rejected(401, "AUTH_BAD_SIGNATURE", form);
    }
    // Where no HS256 secret is configured, HS256 has no key at all.
    let no_hs256 = Platform::start().await;
    let claims = self::claims(&no_hs256, "bff-web");
    let (der, _) = no_hs256.demo().issuer().rsa_public_key();
    let token = hs256(&der, &json!({ "alg": "HS256" }), &claims);
    web(&no_hs256, &token)
        .await
        .assert_rejected(401, "AUTH_UNKNOWN_KEY", "no HS256 configured");
}

#[tokio::test]
async fn unknown_kids_are_rejected() {
    let platform = platform().await;
    for alg in ["RS256", "ES256"] {
        let token = sign(
            &platform,
            alg,
            json!({ "kid": "no-such-key" }),
            &claims(&platform, "bff-web"),
        );
        web(&platform, &token)
            .await
            .assert_rejected(401, "AUTH_UNKNOWN_KEY", alg);
    }
    let hs = sign(
        &platform,
        "HS256",
        json!({ "kid": "no-such-key" }),
        &claims(&platform, "bff-web"),
    );
    web(&platform, &hs)
        .await
        .assert_rejected(401, "AUTH_UNKNOWN_KEY", "HS256 with a kid");
}

#[tokio::test]
async fn kids_carrying_paths_or_sql_are_just_unknown_keys() {
    let platform = platform().await;
    for kid in [
        "../../../../etc/passwd",
        "/dev/null",
        "' OR '1'='1",
        "1; DROP TABLE keys; --",
        "%2e%2e%2f%00",
        "k\u{0}id",
    ] {
        for alg in ["RS256", "ES256"] {
            let token = sign(
                &platform,
                alg,
                json!({ "kid": kid }),
                &claims(&platform, "bff-web"),
            );
            web(&platform, &token)
                .await
                .assert_rejected(401, "AUTH_UNKNOWN_KEY", kid);
        }
    }
    let good = sign(&platform, "RS256", json!({}), &claims(&platform, "bff-web"));
    assert_eq!(web(&platform, &good).await.status, 200, "still serving");
}

#[tokio::test]
async fn headers_pointing_at_attacker_keys_are_never_followed() {
    let platform = platform().await;
    // The attacker's issuer generates keys of its own (the platform's
    // issuer loads the tests' key file).
    let shutdown = Shutdown::new();
    let attacker_config = DemoConfig {
        ports: Ports::ephemeral(),
        ..DemoConfig::default()
    };
    let attacker = DemoServices::start(attacker_config, shutdown.clone())
        .await
        .expect("the attacker's services start");
    let attacker_jwks = attacker.issuer().jwks();
    let fetches_before = attacker.issuer().jwks_fetches();
    let claims = claims(&platform, "bff-web");
    for alg in ["RS256", "ES256"] {
        let attacker_key = attacker_jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .find(|key| key["alg"] == alg)
            .expect("a key")
            .clone();
        for header in [
            json!({ "jku": attacker.jwks_url() }),
            json!({ "x5u": format!("{}/cert.pem", attacker.url(ServiceName::Auth)) }),
            json!({ "jwk": attacker_key }),
            json!({ "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"] }),
        ] {
            let token = attacker
                .issuer()
                .sign_raw(alg, &header, &claims)
                .expect("signs");
            web(&platform, &token).await.assert_rejected(
                401,
                "AUTH_HEADER_REJECTED",
                &header.to_string(),
            );
        }
    }
    // Signed by the attacker and naming only the attacker's kid: an unknown key.
    let token = attacker
        .issuer()
        .sign_raw("RS256", &json!({}), &claims)
        .expect("signs");
    web(&platform, &token)
        .await
        .assert_rejected(401, "AUTH_UNKNOWN_KEY", "attacker kid");
    assert_eq!(
        attacker.issuer().jwks_fetches(),
        fetches_before,
        "the gateway never fetched the attacker's keys"
    );
    shutdown.trigger();
}

#[tokio::test]
async fn unknown_critical_headers_are_rejected() {
    let platform = platform().await;
    for alg in ALGORITHMS {
        for header in [
            json!({ "crit": ["exp"], "exp": now() }),
            json!({ "crit": ["https://example.com/ext"] }),
            json!({ "crit": [] }),
        ] {
            let token = sign(&platform, alg, header, &claims(&platform, "bff-web"));
            web(&platform, &token)
                .await
                .assert_rejected(401, "AUTH_HEADER_REJECTED", alg);
        }
    }
}

#[tokio::test]
async fn stripped_signatures_are_rejected() {
    let platform = platform().await;
    for alg in ALGORITHMS {
        let token = sign(&platform, alg, json!({}), &claims(&platform, "bff-web"));
        let (unsigned, _) = token.rsplit_once('.').expect("three segments");
        web(&platform, &format!("{unsigned}."))
            .await
            .assert_rejected(401, "AUTH_TOKEN_MALFORMED", alg);
        web(&platform, unsigned)
            .await
            .assert_rejected(401, "AUTH_TOKEN_MALFORMED", alg);
    }
}

#[tokio::test]
async fn payloads_altered_after_signing_are_rejected() {
    let platform = platform().await;
    for alg in ALGORITHMS {
        let token = sign(&platform, alg, json!({}), &claims(&platform, "bff-web"));
        let mut segments: Vec<&str> = token.split('.').collect();
        let altered = b64(&with(
            claims(&platform, "bff-web"),
            json!({ "tid": "globex", "sub": "admin" }),
        ));
        segments[1] = &altered;
        web(&platform, &segments.join("."))
            .await
            .assert_rejected(401, "AUTH_BAD_SIGNATURE", alg);
    }
}

#[tokio::test]
async fn forged_tokens_learn_nothing_of_the_issuer_or_audience() {
    let platform = platform().await;
    platform_tests::wait_until_ready(platform.web()).await;
    for (claim, value) in [("iss", "https://guess.example"), ("aud", "guess")] {
        for alg in ALGORITHMS {
            let wrong = with(claims(&platform, "bff-web"), json!({ claim: value }));
            // Correctly signed: the caller holds a key, and may learn what is wrong.
            let signed = sign(&platform, alg, json!({}), &wrong);
            let expected = if claim == "iss" {
                "AUTH_WRONG_ISSUER"
            } else {
                "AUTH_WRONG_AUDIENCE"
            };
            web(&platform, &signed)
                .await
                .assert_rejected(401, expected, alg);
            // The same claims with a forged signature: only that is said.
            let (signing_input, _) = signed.rsplit_once('.').expect("three segments");
            let forged = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode([7u8; 64]));
            let answer = web(&platform, &forged).await;
            answer.assert_rejected(401, "AUTH_BAD_SIGNATURE", alg);
            assert!(
                !answer
                    .body
                    .to_string()
                    .contains(platform.demo().issuer().issuer())
                    && !answer.body.to_string().contains("bff-web"),
                "{alg}: {}",
                answer.body
            );
            // A key the gateway does not know: nothing is fetched for it either.
            let unknown = sign(&platform, alg, json!({ "kid": "guessed-kid" }), &wrong);
            web(&platform, &unknown)
                .await
                .assert_rejected(401, "AUTH_UNKNOWN_KEY", alg);
        }
    }
    // A forged token that also breaks another rule answers the same whether
    // the guessed issuer or audience is right or wrong.
    for missing in ["sub", "tid", "exp"] {
        let answers = [
            json!({ missing: null }),
            json!({ missing: null, "iss": "https://guess.example" }),
            json!({ missing: null, "aud": "guess" }),
        ]
        .map(|changes| {
            let token = sign(
                &platform,
                "RS256",
                json!({}),
                &with(claims(&platform, "bff-web"), changes),
            );
            let (signing_input, _) = token.rsplit_once('.').expect("three segments").to_owned();
            format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode([7u8; 256]))
        });
        let mut codes = Vec::new();
        for forged in &answers {
            let answer = web(&platform, forged).await;
            codes.push((answer.status, answer.body["detail"].clone()));
        }
        assert!(
            codes.windows(2).all(|pair| pair[0] == pair[1]),
            "{missing}: {codes:?}"
        );
    }
}

#[tokio::test]
async fn oversized_tokens_are_rejected() {
    let platform = platform().await;
    for alg in ALGORITHMS {
        let padded = with(
            claims(&platform, "bff-web"),
            json!({ "pad": "x".repeat(9000) }),
        );
        let answer = web(&platform, &sign(&platform, alg, json!({}), &padded)).await;
        answer.assert_rejected(401, "AUTH_TOKEN_MALFORMED", alg);
        assert_eq!(answer.body["detail"], "token larger than 8192 bytes");
    }
}

#[tokio::test]
async fn garbage_in_any_segment_is_rejected() {
    let platform = platform().await;
    let token = sign(&platform, "RS256", json!({}), &claims(&platform, "bff-web"));
    let segments: Vec<&str> = token.split('.').collect();
    let garbage = [
        "!!!".to_owned(),
        "e30".to_owned(),
        URL_SAFE_NO_PAD.encode([0xff, 0xfe, 0x00, 0x80]),
        URL_SAFE_NO_PAD.encode("[1,2,3]"),
        URL_SAFE_NO_PAD.encode("{\"alg\":"),
        format!("{}==", segments[0]),
    ];
    for index in 0..3 {
        for junk in &garbage {
            let mut broken = segments.clone();
            broken[index] = junk;
            let answer = web(&platform, &broken.join(".")).await;
            assert_eq!(
                answer.status, 401,
                "segment {index} = {junk}: {}",
                answer.body
            );
        }
    }
    for shape in ["a", "a.b", "a.b.c.d", "....", ".."] {
        web(&platform, shape)
            .await
            .assert_rejected(401, "AUTH_TOKEN_MALFORMED", shape);
    }
}

#[tokio::test]
async fn a_bearer_scheme_missing_or_doubled_is_rejected() {
    let platform = platform().await;
    let token = sign(&platform, "ES256", json!({}), &claims(&platform, "bff-web"));
    let url = format!("{}/api/product-page/1", base_url(platform.web()));
    let client = reqwest::Client::new();
    for value in [
        token.clone(),
        format!("Bearer Bearer {token}"),
        format!("Basic {token}"),
        "Bearer".to_owned(),
    ] {
        send(client.get(&url).header("authorization", &value))
            .await
            .assert_rejected(401, "AUTH_TOKEN_MALFORMED", &value[..value.len().min(20)]);
    }
    let twice = send(
        client
            .get(&url)
            .header("authorization", format!("Bearer {token}"))
            .header("authorization", format!("Bearer {token}")),
    )
    .await;
    twice.assert_rejected(400, "AUTH_AMBIGUOUS", "two Authorization headers");
    assert!(twice.challenge().contains("invalid_request"));
}

#[tokio::test]
async fn requests_without_credentials_get_a_bearer_challenge_on_every_bff() {
    let platform = platform().await;
    let client = reqwest::Client::new();
    for request in [
        client.get(format!("{}/api/product-page/1", base_url(platform.web()))),
        client
            .post(format!("{}/graphql", base_url(platform.mobile())))
            .body("{}"),
        client.get(format!("{}/v1/products/1", base_url(platform.partner()))),
    ] {
        let answer = send(request).await;
        answer.assert_rejected(401, "AUTH_MISSING", "no credentials");
        assert_eq!(answer.challenge(), "Bearer");
        assert_eq!(answer.body["trace_id"].as_str().map(str::len), Some(32));
    }
}

#[tokio::test]
async fn rejections_never_echo_the_token() {
    let platform = platform().await;
    let expired = with(claims(&platform, "bff-web"), json!({ "exp": now() - 3600 }));
    let token = sign(&platform, "RS256", json!({}), &expired);
    let answer = web(&platform, &token).await;
    let everything = format!("{}{:?}", answer.body, answer.headers);
    for segment in token.split('.') {
        assert!(
            !everything.contains(segment),
            "the answer contains part of the token"
        );
    }
}

#[tokio::test]
async fn the_web_session_cookie_carries_the_token() {
    let platform = platform().await;
    let token = platform.token("bff-web");
    let client = reqwest::Client::new();
    let url = format!("{}/api/product-page/1", base_url(platform.web()));
    let answer = send(
        client
            .get(&url)
            .header("cookie", format!("theme=dark; bff_session={token}")),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let other = platform.token_for("user-2", "bff-web", "ES256");
    send(
        client
            .get(&url)
            .header("cookie", format!("bff_session={token}"))
            .bearer_auth(&other),
    )
    .await
    .assert_rejected(400, "AUTH_AMBIGUOUS", "cookie and header disagree");
    // bff-mobile has no session cookie.
    let mobile = send(
        client
            .post(format!("{}/graphql", base_url(platform.mobile())))
            .header(
                "cookie",
                format!("bff_session={}", platform.token("bff-mobile")),
            )
            .body(json!({ "query": "{ product(id: 1) { name } }" }).to_string()),
    )
    .await;
    mobile.assert_rejected(401, "AUTH_MISSING", "cookie at mobile");
}

#[tokio::test]
async fn api_keys_authenticate_partners() {
    let mut revoked = api_key("old-erp", "key-revoked-0001", "globex", &["products:read"]);
    revoked.revoked = true;
    let platform = platform_with(PlatformOptions {
        partner_api_keys: vec![
            api_key("acme-erp", "key-acme-0001", "acme", &["products:read"]),
            revoked,
        ],
        ..PlatformOptions::default()
    })
    .await;
    let client = reqwest::Client::new();
    let partner = format!("{}/v1/products/3", base_url(platform.partner()));
    let answer = send(client.get(&partner).header("x-api-key", "key-acme-0001")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let forwarded = platform
        .demo()
        .last_request(ServiceName::Products)
        .expect("a call reached products");
    assert_eq!(forwarded.header_values("x-auth-tenant"), vec!["acme"]);
    assert_eq!(forwarded.header_values("x-auth-subject"), vec!["acme-erp"]);

    for (key, context) in [
        ("key-revoked-0001", "revoked"),
        ("key-unknown", "unknown"),
        ("", "empty"),
    ] {
        send(client.get(&partner).header("x-api-key", key))
            .await
            .assert_rejected(401, "AUTH_INVALID_API_KEY", context);
    }
    send(
        client
            .get(&partner)
            .header("x-api-key", "key-acme-0001")
            .bearer_auth(platform.token("bff-partner")),
    )
    .await
    .assert_rejected(400, "AUTH_AMBIGUOUS", "key and token");
    // API keys are a partner credential only.
    send(
        client
            .get(format!("{}/api/product-page/1", base_url(platform.web())))
            .header("x-api-key", "key-acme-0001"),
    )
    .await
    .assert_rejected(401, "AUTH_METHOD_NOT_ACCEPTED", "API key at web");
}

#[tokio::test]
async fn partners_may_use_client_credentials_tokens() {
    let platform = platform().await;
    for partner in ["partner-acme", "partner-globex"] {
        for alg in ["RS256", "ES256"] {
            let token = platform.token_for(partner, "bff-partner", alg);
            let answer = send(
                reqwest::Client::new()
                    .get(format!("{}/v1/products/9", base_url(platform.partner())))
                    .bearer_auth(token),
            )
            .await;
            assert_eq!(answer.status, 200, "{partner} {alg}: {}", answer.body);
        }
    }
}

#[tokio::test]
async fn a_missing_scope_is_forbidden() {
    let platform = platform().await;
    let narrow = platform
        .demo()
        .token(&TokenRequest {
            subject: "user-1".to_owned(),
            audience: "bff-web".to_owned(),
            alg: None,
            scope: Some("orders:read".to_owned()),
            ttl: None,
            format: None,
        })
        .expect("issued")
        .access_token;
    let answer = web(&platform, &narrow).await;
    answer.assert_rejected(403, "AUTH_INSUFFICIENT_SCOPE", "orders:read only");
    assert_eq!(
        answer.challenge(),
        r#"Bearer error="insufficient_scope", error_description="missing scope products:read", scope="products:read""#
    );
}

#[tokio::test]
async fn the_openapi_document_is_public() {
    let platform = platform().await;
    let response = reqwest::get(format!("{}/v1/openapi.json", base_url(platform.partner())))
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn forged_identity_headers_never_reach_services() {
    let platform = platform().await;
    let tenant = platform.demo().catalog().user(1).expect("user 1").tenant;
    let answer = send(
        reqwest::Client::new()
            .get(format!("{}/api/product-page/1", base_url(platform.web())))
            .bearer_auth(platform.token("bff-web"))
            .header("x-auth-tenant", "evil-corp")
            .header("X-Auth-Subject", "admin")
            .header("x-auth-scopes", "admin:everything"),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    for service in [
        ServiceName::Products,
        ServiceName::Pricing,
        ServiceName::Inventory,
        ServiceName::Reviews,
    ] {
        let seen = platform
            .demo()
            .last_request(service)
            .expect("the service was called");
        assert_eq!(
            seen.header_values("x-auth-tenant"),
            vec![tenant.as_str()],
            "{service:?}"
        );
        assert_eq!(
            seen.header_values("x-auth-subject"),
            vec!["user-1"],
            "{service:?}"
        );
        assert_eq!(
            seen.header_values("x-auth-scopes"),
            vec!["products:read orders:read orders:write profile:read"],
            "{service:?}"
        );
        assert_eq!(seen.header_values("traceparent").len(), 1, "{service:?}");
    }
    // With no valid credential nothing reaches a service at all.
    let fresh = platform_with(PlatformOptions::default()).await;
    let rejected = send(
        reqwest::Client::new()
            .get(format!("{}/api/product-page/1", base_url(fresh.web())))
            .header("x-auth-tenant", "evil-corp"),
    )
    .await;
    assert_eq!(rejected.status, 401);
    assert!(fresh.demo().last_request(ServiceName::Products).is_none());
}

fn fast_jwks(issuer: IssuerConfig) -> PlatformOptions {
    PlatformOptions {
        issuer: IssuerConfig {
            jwks_max_age: HumanDuration::from_secs(1),
            ..issuer
        },
        jwks_refresh_interval: Some(HumanDuration::from_secs(1)),
        jwks_min_refetch_interval: Some(HumanDuration::from_millis(200)),
        ..PlatformOptions::default()
    }
}

#[tokio::test]
async fn signing_key_rotation_needs_no_restart() {
    let platform = platform_with(fast_jwks(IssuerConfig {
        rotation_grace: HumanDuration::from_secs(2),
        ..platform_tests::test_issuer()
    }))
    .await;
    let old = platform.token_for("user-1", "bff-web", "RS256");
    assert_eq!(web(&platform, &old).await.status, 200);

    let rotated = reqwest::Client::new()
        .post(format!(
            "{}/admin/keys/rotate",
            platform.demo().url(ServiceName::Auth)
        ))
        .send()
        .await
        .expect("rotated");
    assert_eq!(rotated.status(), 200);
    let new = platform.token_for("user-1", "bff-web", "RS256");
    assert_ne!(new.split('.').next(), old.split('.').next(), "a new kid");

    eventually_within("a token with the new kid verifies", PATIENCE, || async {
        web(&platform, &new).await.status == 200
    })
    .await;
    assert_eq!(
        web(&platform, &old).await.status,
        200,
        "the old key is still published"
    );
    eventually_within(
        "the old key has left the JWKS and stops verifying",
        PATIENCE,
        || async { web(&platform, &old).await.code() == "AUTH_UNKNOWN_KEY" },
    )
    .await;
    assert_eq!(web(&platform, &new).await.status, 200);
}

async fn metric(platform: &Platform, name: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", platform.web().admin_addr()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn verification_continues_with_cached_keys_when_the_jwks_is_down() {
    let platform = platform_with(fast_jwks(platform_tests::test_issuer())).await;
    assert_eq!(web(&platform, &platform.token("bff-web")).await.status, 200);
    platform.demo().faults(ServiceName::Auth).set(FaultConfig {
        down: true,
        ..FaultConfig::default()
    });
    eventually_within("a refresh has failed", PATIENCE, || async {
        metric(&platform, "auth_jwks_refresh_failures_total").await >= 1.0
    })
    .await;
    // Tokens never seen before, so the verified-token cache cannot answer.
    for alg in ["RS256", "ES256"] {
        let fresh = platform.token_for("user-3", "bff-web", alg);
        assert_eq!(
            web(&platform, &fresh).await.status,
            200,
            "{alg} with the last good keys"
        );
    }
    let readyz = reqwest::get(format!("http://{}/readyz", platform.web().admin_addr()))
        .await
        .expect("answered");
    assert_eq!(
        readyz.status(),
        200,
        "the last good keys are still fresh enough"
    );
    assert!(metric(&platform, "auth_jwks_age_seconds").await >= 0.0);
}

#[tokio::test]
async fn a_flood_of_unknown_kids_refetches_the_jwks_but_at_most_once_per_interval() {
    // The issuer's max-age and the refresh interval are minutes: within the
    // test no scheduled refresh happens, so every fetch is an unknown kid's.
    let interval = Duration::from_secs(1);
    let platform = platform_with(PlatformOptions {
        jwks_min_refetch_interval: Some(HumanDuration::try_from(interval).expect("non-zero")),
        ..PlatformOptions::default()
    })
    .await;
    platform_tests::wait_until_ready(platform.web()).await;
    let issuer = platform.demo().issuer();
    let claims = claims(&platform, "bff-web");
    let url = format!("{}/api/product-page/1", base_url(platform.web()));
    let client = reqwest::Client::new();
    let flood = |count: usize| {
        let requests: Vec<_> = (0..count)
            .map(|_| {
                let token = issuer
                    .sign_raw(
                        "RS256",
                        &json!({ "kid": format!("random-{}", fastrand::u64(..)) }),
                        &claims,
                    )
                    .expect("signs");
                let request = client.get(&url).bearer_auth(token);
                async move { request.send().await.expect("answered").status().as_u16() }
            })
            .collect();
        futures_util::future::join_all(requests)
    };
    let before = issuer.jwks_fetch_times().len();
    // Flood until unknown kids have caused two refetches: each flood is
    // refused whole, and the issuer records when each fetch arrived.
    eventually_within(
        "unknown kids have caused two refetches",
        PATIENCE,
        async || {
            let statuses = flood(100).await;
            assert!(statuses.iter().all(|status| *status == 401), "{statuses:?}");
            issuer.jwks_fetch_times().len() >= before + 2
        },
    )
    .await;
    let refetches = &issuer.jwks_fetch_times()[before..];
    // The gateway counts an interval from when it began a fetch; the issuer
    // sees each fetch a loopback trip later, which can differ by a little.
    let least = interval.mul_f64(0.9);
    for pair in refetches.windows(2) {
        let apart = pair[1] - pair[0];
        assert!(
            apart >= least,
            "refetches {apart:?} apart, with at most one per {interval:?}"
        );
    }
}

#[tokio::test]
async fn tokens_failing_cheap_checks_never_fetch_the_jwks() {
    // Any trigger may fetch at once: only the checks can keep the JWKS unfetched.
    let platform = platform_with(PlatformOptions {
        jwks_min_refetch_interval: Some(HumanDuration::from_millis(1)),
        ..PlatformOptions::default()
    })
    .await;
    platform_tests::wait_until_ready(platform.web()).await;
    let issuer = platform.demo().issuer();
    let before = issuer.jwks_fetches();
    let good = claims(&platform, "bff-web");
    for (round, bad_claims) in [
        with(good.clone(), json!({ "exp": now() - 3600 })),
        with(good.clone(), json!({ "iss": "https://evil.example" })),
        with(good.clone(), json!({ "aud": "bff-partner" })),
        with(good.clone(), json!({ "tid": null })),
    ]
    .into_iter()
    .enumerate()
    {
        let token = issuer
            .sign_raw(
                "RS256",
                &json!({ "kid": format!("unknown-{round}") }),
                &bad_claims,
            )
            .expect("signs");
        assert_eq!(web(&platform, &token).await.status, 401);
    }
    assert_eq!(issuer.jwks_fetches(), before);
    // The same unknown kid with good claims does fetch: the checks, not the
    // interval, kept the JWKS unfetched above.
    let token = issuer
        .sign_raw("RS256", &json!({ "kid": "unknown-good" }), &good)
        .expect("signs");
    assert_eq!(web(&platform, &token).await.status, 401);
    assert_eq!(issuer.jwks_fetches(), before + 1);
}

#[tokio::test]
async fn readiness_waits_for_the_signing_keys() {
    let platform = platform_with(PlatformOptions {
        faults: BTreeMap::from([(
            ServiceName::Auth,
            FaultConfig {
                down: true,
                ..FaultConfig::default()
            },
        )]),
        ..fast_jwks(platform_tests::test_issuer())
    })
    .await;
    let readyz = format!("http://{}/readyz", platform.web().admin_addr());
    let answer = send(reqwest::Client::new().get(&readyz)).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.body["waiting_for"], json!(["jwks"]));
    let waiting = web(&platform, &platform.token("bff-web")).await;
    waiting.assert_rejected(503, "AUTH_KEYS_UNAVAILABLE", "no keys yet");
    assert!(
        waiting
            .header("retry-after")
            .parse::<u64>()
            .is_ok_and(|seconds| seconds >= 1),
        "{:?}",
        waiting.header("retry-after")
    );
    // HS256 needs no JWKS.
    let hs = sign(&platform, "HS256", json!({}), &claims(&platform, "bff-web"));
    assert_eq!(web(&platform, &hs).await.status, 200);

    platform
        .demo()
        .faults(ServiceName::Auth)
        .set(FaultConfig::default());
    eventually_within("the keys are loaded", PATIENCE, || async {
        reqwest::get(&readyz)
            .await
            .is_ok_and(|response| response.status() == 200)
    })
    .await;
    assert_eq!(web(&platform, &platform.token("bff-web")).await.status, 200);
}

#[tokio::test]
async fn verification_outcomes_are_counted_by_reason() {
    let platform = platform().await;
    let token = platform.token("bff-web");
    assert_eq!(web(&platform, &token).await.status, 200);
    assert_eq!(web(&platform, &token).await.status, 200);
    let expired = with(claims(&platform, "bff-web"), json!({ "exp": now() - 3600 }));
    assert_eq!(
        web(&platform, &sign(&platform, "ES256", json!({}), &expired))
            .await
            .status,
        401
    );
    let text = reqwest::get(format!("http://{}/metrics", platform.web().admin_addr()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(text.contains(r#"auth_verifications_total{bff="bff-web",method="jwt",outcome="accepted",reason="ok"} 2"#), "{text}");
    assert!(text.contains(r#"auth_verifications_total{bff="bff-web",method="jwt",outcome="rejected",reason="expired"} 1"#), "{text}");
    assert!(
        text.contains(r#"auth_token_cache_total{bff="bff-web",result="hit"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn claims_with_duplicate_keys_or_wrong_types_are_rejected() {
    let platform = platform().await;
    let good = claims(&platform, "bff-web");
    let raw_claims = [
        // Two `sub`s: a parser keeping the last one would see an admin.
        format!(
            r#"{{"iss":{},"sub":"user-1","sub":"admin","tid":"acme","aud":"bff-web","scope":"products:read","exp":{}}}"#,
            good["iss"],
            now() + 300
        ),
        good.to_string().replace(
            &format!("\"exp\":{}", good["exp"]),
            &format!("\"exp\":\"{}\"", good["exp"]),
        ),
        good.to_string().replace(
            &format!("\"exp\":{}", good["exp"]),
            &format!("\"exp\":{}.5", good["exp"]),
        ),
        good.to_string()
            .replace(&format!("\"exp\":{}", good["exp"]), "\"exp\":1e300"),
        good.to_string().replace(
            "\"sub\":\"user-1\"",
            "\"sub\":\"user-1\\r\\nX-Auth-Tenant: evil\"",
        ),
        good.to_string()
            .replace("\"sub\":\"user-1\"", "\"sub\":12345"),
    ];
    for raw in raw_claims {
        let header = URL_SAFE_NO_PAD.encode(json!({ "alg": "HS256" }).to_string());
        let message = format!("{header}.{}", URL_SAFE_NO_PAD.encode(&raw));
        let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
                .expect("signs");
        let answer = web(&platform, &format!("{message}.{signature}")).await;
        assert_eq!(answer.status, 401, "{raw}: {}", answer.body);
        assert!(
            ["AUTH_TOKEN_MALFORMED", "AUTH_INVALID_CLAIMS"].contains(&answer.code()),
            "{raw}: {}",
            answer.body
        );
    }
}

#[tokio::test]
async fn an_identity_provider_outage_refuses_only_the_tokens_that_need_its_keys() {
    let platform = platform_with(PlatformOptions {
        jwks_max_stale: Some(HumanDuration::from_secs(2)),
        partner_api_keys: vec![api_key(
            "acme-erp",
            "key-acme-0001",
            "acme",
            &["products:read"],
        )],
        ..fast_jwks(platform_tests::test_issuer())
    })
    .await;
    platform_tests::wait_until_ready(platform.web()).await;
    platform_tests::wait_until_ready(platform.partner()).await;
    // Verified (and cached) before the outage: refused like the rest after max_stale.
    let cached = platform.token_for("user-3", "bff-web", "RS256");
    assert_eq!(web(&platform, &cached).await.status, 200);
    platform.demo().faults(ServiceName::Auth).set(FaultConfig {
        down: true,
        ..FaultConfig::default()
    });
    eventually_within("the keys are older than max_stale", PATIENCE, || async {
        metric(&platform, "auth_jwks_stale").await == 1.0
    })
    .await;

    // Every replica stays ready: a load balancer still has somewhere to send
    // the traffic that needs no identity provider.
    for bff in [platform.web(), platform.partner()] {
        let readyz = reqwest::get(format!("http://{}/readyz", bff.admin_addr()))
            .await
            .expect("answered");
        assert_eq!(readyz.status(), 200, "{}", bff.admin_addr());
    }
    web(&platform, &cached).await.assert_rejected(
        503,
        "AUTH_KEYS_UNAVAILABLE",
        "verified before the outage",
    );
    for alg in ["RS256", "ES256"] {
        let refused = web(&platform, &platform.token_for("user-9", "bff-web", alg)).await;
        refused.assert_rejected(503, "AUTH_KEYS_UNAVAILABLE", alg);
        assert!(
            refused.header("retry-after").parse::<u64>().is_ok(),
            "{alg}: {:?}",
            refused.header("retry-after")
        );
    }
    let hs = sign(&platform, "HS256", json!({}), &claims(&platform, "bff-web"));
    assert_eq!(web(&platform, &hs).await.status, 200, "HS256 needs no JWKS");
    let by_key = send(
        reqwest::Client::new()
            .get(format!("{}/v1/products/3", base_url(platform.partner())))
            .header("x-api-key", "key-acme-0001"),
    )
    .await;
    assert_eq!(by_key.status, 200, "API keys need no JWKS: {}", by_key.body);

    platform
        .demo()
        .faults(ServiceName::Auth)
        .set(FaultConfig::default());
    let fresh = platform.token_for("user-9", "bff-web", "ES256");
    eventually_within(
        "JWKS-signed tokens are accepted again",
        PATIENCE,
        || async { web(&platform, &fresh).await.status == 200 },
    )
    .await;
    assert_eq!(metric(&platform, "auth_jwks_stale").await, 0.0);
}

#[tokio::test]
async fn new_material_under_the_same_kid_is_a_new_key() {
    let platform = platform_with(fast_jwks(platform_tests::test_issuer())).await;
    platform_tests::wait_until_ready(platform.web()).await;
    let old = platform.token_for("user-1", "bff-web", "RS256");
    assert_eq!(web(&platform, &old).await.status, 200);
    let hits_before = metric(
        &platform,
        "auth_token_cache_total{bff=\"bff-web\",result=\"hit\"}",
    )
    .await;
    assert_eq!(web(&platform, &old).await.status, 200);
    assert_eq!(
        metric(
            &platform,
            "auth_token_cache_total{bff=\"bff-web\",result=\"hit\"}"
        )
        .await,
        hits_before + 1.0,
        "the old token is answered from the cache"
    );

    let kids = platform.demo().issuer().active_kids();
    platform
        .demo()
        .issuer()
        .rekey_keeping_kids()
        .expect("new keys");
    assert_eq!(platform.demo().issuer().active_kids(), kids, "same kids");
    let new = platform.token_for("user-1", "bff-web", "RS256");
    eventually_within("the new material is loaded", PATIENCE, || async {
        web(&platform, &new).await.status == 200
    })
    .await;
    web(&platform, &old).await.assert_rejected(
        401,
        "AUTH_BAD_SIGNATURE",
        "cached under the old material",
    );
}

#[tokio::test]
async fn an_api_key_only_partner_needs_no_identity_provider() {
    let (demo, shutdown) = platform_tests::start_demo(BTreeMap::from([(
        ServiceName::Auth,
        FaultConfig {
            down: true,
            ..FaultConfig::default()
        },
    )]))
    .await;
    let fetches_before = demo.issuer().jwks_fetches();
    // Ready (start_bff waits for /readyz) with the issuer down.
    let partner = platform_tests::start_bff::<bff_partner::Partner>(&demo, &shutdown, |config| {
        config.auth.jwks.enabled = false;
        config.auth.api_keys = vec![api_key(
            "acme-erp",
            "key-acme-0001",
            "acme",
            &["products:read"],
        )];
    })
    .await;
    let client = reqwest::Client::new();
    let product = format!("{}/v1/products/3", base_url(&partner));
    let by_key = send(client.get(&product).header("x-api-key", "key-acme-0001")).await;
    assert_eq!(by_key.status, 200, "{}", by_key.body);
    for alg in ["RS256", "ES256"] {
        let token = platform_tests::issue_token(&demo, "partner-acme", "bff-partner", alg);
        let refused = send(client.get(&product).bearer_auth(token)).await;
        refused.assert_rejected(401, "AUTH_METHOD_NOT_ACCEPTED", alg);
        assert_eq!(
            refused.body["detail"], "bearer tokens are not accepted here",
            "{alg}"
        );
    }
    assert_eq!(
        demo.issuer().jwks_fetches(),
        fetches_before,
        "no JWKS fetched"
    );
    shutdown.trigger();
}

#[tokio::test]
async fn the_session_cookie_can_be_turned_off() {
    let (demo, shutdown) = platform_tests::start_demo(BTreeMap::new()).await;
    let web_bff = platform_tests::start_bff::<bff_web::Web>(&demo, &shutdown, |config| {
        config.auth.session_cookie = String::new();
    })
    .await;
    let token = platform_tests::issue_token(&demo, "user-1", "bff-web", "RS256");
    let url = format!("{}/api/product-page/1", base_url(&web_bff));
    let client = reqwest::Client::new();
    send(
        client
            .get(&url)
            .header("cookie", format!("bff_session={token}")),
    )
    .await
    .assert_rejected(401, "AUTH_MISSING", "cookie off");
    assert_eq!(send(client.get(&url).bearer_auth(&token)).await.status, 200);
    shutdown.trigger();
}

#[tokio::test]
async fn cookie_requests_with_unsafe_methods_must_come_from_a_trusted_origin() {
    let (demo, shutdown) = platform_tests::start_demo(BTreeMap::new()).await;
    let web_bff = platform_tests::start_bff::<bff_web::Web>(&demo, &shutdown, |config| {
        config.auth.session_cookie_origins =
            vec![Origin::parse("https://shop.example.com").expect("an origin")];
    })
    .await;
    let token = platform_tests::issue_token(&demo, "user-1", "bff-web", "RS256");
    let url = format!("{}/api/product-page/1", base_url(&web_bff));
    let client = reqwest::Client::new();
    let cookie = format!("bff_session={token}");
    // The route has no POST: a request that passes authentication gets 405.
    for (context, headers, status, code) in [
        (
            "foreign origin",
            vec![("origin", "https://evil.example")],
            403,
            "AUTH_CROSS_SITE_COOKIE",
        ),
        ("no origin at all", vec![], 403, "AUTH_CROSS_SITE_COOKIE"),
        (
            "cross-site fetch metadata",
            vec![
                ("origin", "https://evil.example"),
                ("sec-fetch-site", "cross-site"),
            ],
            403,
            "AUTH_CROSS_SITE_COOKIE",
        ),
        (
            "trusted origin",
            vec![("origin", "https://shop.example.com")],
            405,
            "METHOD_NOT_ALLOWED",
        ),
        (
            "the page's own origin",
            vec![("sec-fetch-site", "same-origin")],
            405,
            "METHOD_NOT_ALLOWED",
        ),
    ] {
        let mut request = client.post(&url).header("cookie", &cookie);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        send(request).await.assert_rejected(status, code, context);
    }
    // A bearer token is never attached by a browser on its own: no origin needed.
    send(client.post(&url).bearer_auth(&token))
        .await
        .assert_rejected(405, "METHOD_NOT_ALLOWED", "bearer");
    // Safe methods read; CORS decides which pages may see the answer.
    let read = send(
        client
            .get(&url)
            .header("cookie", &cookie)
            .header("origin", "https://evil.example"),
    )
    .await;
    assert_eq!(read.status, 200, "{}", read.body);
    shutdown.trigger();
}
