//! The binaries as an operator runs them: command line, environment, signals.
//!
//! These run the real executables, which `scripts/test` builds first.

use std::{
    collections::BTreeMap,
    process::{Command, Output},
    time::Duration,
};

use demo_services::{FaultConfig, ServiceName};
use gateway_core::config::HumanDuration;
use platform_tests::{
    BffProcess, RedisServer, api_key, binary, eventually_within, issue_token, metric, send,
    start_demo, write_temp_file,
};

fn run(name: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(binary(name));
    command.env_clear().args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the binary runs")
}

#[test]
fn check_config_prints_the_effective_configuration() {
    let path = write_temp_file(
        "web.toml",
        "[server]\nrequest_timeout = \"5s\"\n\n[downstream.pricing]\nurl = \"http://pricing.internal:7003\"\n",
    );
    let output = run(
        "bff-web",
        &[
            "--config",
            path.to_str().expect("utf-8 path"),
            "--check-config",
        ],
        &[("BFF_SERVER__LISTEN", "0.0.0.0:18080")],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("request_timeout = \"5s\""),
        "file value: {stdout}"
    );
    assert!(
        stdout.contains("url = \"http://pricing.internal:7003/\""),
        "file value: {stdout}"
    );
    assert!(
        stdout.contains("listen = \"0.0.0.0:18080\""),
        "environment wins: {stdout}"
    );
    assert!(
        stdout.contains("header_read_timeout = \"10s\""),
        "defaults shown: {stdout}"
    );
}

#[test]
fn check_config_names_the_bad_key_and_its_file() {
    for bff in ["bff-web", "bff-mobile", "bff-partner"] {
        let (code, _, stderr) =
            check_config_file(bff, "bad.toml", "[server]\nrequest_timeout = \"0s\"\n");
        assert_eq!(code, Some(2), "{bff}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains("server.request_timeout"), "{stderr}");
        assert!(stderr.contains("bad.toml"), "{stderr}");
    }
}

#[test]
fn check_config_names_a_bad_environment_variable() {
    let output = run(
        "bff-partner",
        &["--check-config"],
        &[("BFF_DOWNSTREAM__PRODUCTS__URL", "not a url")],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("BFF_DOWNSTREAM__PRODUCTS__URL"), "{stderr}");

    let output = run(
        "bff-mobile",
        &["--check-config"],
        &[("BFF_SERVER__LISTN", "0.0.0.0:1")],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("BFF_SERVER__LISTN"), "{stderr}");
}

#[test]
fn check_config_refuses_an_internal_token_key_that_is_not_p256() {
    let not_a_key = write_temp_file(
        "not-a-key.pem",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let (code, _, stderr) = check_config_file(
        "bff-web",
        "internal-token.toml",
        &format!(
            "[auth.internal_token]\nenabled = true\nkey_file = {:?}\n",
            not_a_key.to_str().expect("utf-8 path")
        ),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("auth.internal_token.key_file"), "{stderr}");
    assert!(
        stderr.contains("not a P-256 (ES256) private key"),
        "{stderr}"
    );
}

#[tokio::test]
async fn without_a_key_file_internal_tokens_are_signed_with_a_generated_key_and_a_warning() {
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let mut bff = BffProcess::spawn_against::<bff_web::Web>(
        &demo,
        &[("BFF_AUTH__INTERNAL_TOKEN__ENABLED", "true")],
    )
    .await;
    let warning = bff
        .log_event(|event| {
            event["message"].as_str().is_some_and(|message| {
                message.starts_with("auth.internal_token.key_file is not set")
            })
        })
        .await;
    assert_eq!(warning["level"], "WARN");
    let jwks =
        send(reqwest::Client::new().get(format!("http://{}/.well-known/jwks.json", bff.admin())))
            .await
            .body;
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        jwks["keys"][0]["kid"], warning["kid"],
        "the generated key is published"
    );
    bff.terminate().await;
    shutdown.trigger();
}

#[test]
fn check_config_refuses_a_setting_under_its_new_and_its_deprecated_name_at_once() {
    for (contents, key) in [
        (
            "[redis]\nurl = \"redis://127.0.0.1:6379\"\n\n[rate_limit]\nredis_url = \"redis://127.0.0.1:6380\"\n",
            "rate_limit.redis_url",
        ),
        (
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\"]\n\n[rate_limit]\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
            "rate_limit.trusted_proxies",
        ),
    ] {
        let (code, _, stderr) = check_config_file("bff-web", "both-names.toml", contents);
        assert_eq!(code, Some(2), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(key), "{stderr}");
        assert!(stderr.contains("deprecated name"), "{stderr}");
    }
}

#[tokio::test]
async fn the_deprecated_names_of_redis_and_trusted_proxies_still_work_with_a_warning_each() {
    let redis = RedisServer::start().await;
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let mut bff = BffProcess::spawn_against::<bff_web::Web>(
        &demo,
        &[
            ("BFF_RATE_LIMIT__REDIS_URL", &redis.url()),
            ("BFF_RATE_LIMIT__TRUSTED_PROXIES", "[10.0.0.0/8]"),
        ],
    )
    .await;
    for deprecated in ["rate_limit.redis_url", "rate_limit.trusted_proxies"] {
        let warning = bff
            .log_event(|event| {
                event["message"].as_str().is_some_and(|message| {
                    message.starts_with(&format!("{deprecated} is deprecated"))
                })
            })
            .await;
        assert_eq!(warning["level"], "WARN");
    }
    let admin = bff.admin();
    eventually_within(
        "the limiter decides in Redis",
        Duration::from_secs(10),
        async || metric(admin, "rate_limit_backend", &[("mode", "redis")]).await == Some(1.0),
    )
    .await;
    bff.terminate().await;
    shutdown.trigger();
}

#[test]
fn check_config_refuses_a_tls_pair_that_does_not_load_and_h2c_beside_tls() {
    let not_a_certificate = write_temp_file("not-a-cert.pem", "not PEM\n");
    let (code, _, stderr) = check_config_file(
        "bff-web",
        "tls.toml",
        &format!(
            "[server.tls]\ncert_file = {path:?}\nkey_file = {path:?}\n",
            path = not_a_certificate.to_str().expect("utf-8 path")
        ),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("server.tls"), "{stderr}");
    assert!(
        stderr.contains("cert_file holds no PEM certificate"),
        "{stderr}"
    );

    let (code, _, stderr) = check_config_file(
        "bff-web",
        "tls-and-h2c.toml",
        &format!(
            "[server]\nh2c = true\n\n[server.tls]\ncert_file = {path:?}\nkey_file = {path:?}\n",
            path = not_a_certificate.to_str().expect("utf-8 path")
        ),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("server.h2c"), "{stderr}");
}

/// `bff --config FILE --check-config`, FILE holding `contents`: the exit
/// code, stdout and stderr.
fn check_config_file(bff: &str, file: &str, contents: &str) -> (Option<i32>, String, String) {
    let path = write_temp_file(file, contents);
    let output = run(
        bff,
        &[
            "--config",
            path.to_str().expect("utf-8 path"),
            "--check-config",
        ],
        &[],
    );
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn each_bff_shows_and_checks_its_own_section() {
    for (bff, section, key, valid, invalid) in [
        ("bff-web", "web", "product_page_reviews", "3", "0"),
        ("bff-mobile", "mobile", "max_query_depth", "5", "1"),
        (
            "bff-partner",
            "partner",
            "public_url",
            "\"https://partners.example.com\"",
            "\"ftp://x\"",
        ),
    ] {
        let shown = format!("[{section}]\n{key} = {valid}\n");
        let (code, stdout, stderr) = check_config_file(bff, &format!("{section}.toml"), &shown);
        assert_eq!(code, Some(0), "{bff}: {stderr}");
        assert!(stdout.contains(&shown), "{bff}: {stdout}");

        let bad = format!("[{section}]\n{key} = {invalid}\n");
        let (code, _, stderr) = check_config_file(bff, &format!("{section}-bad.toml"), &bad);
        assert_eq!(code, Some(2), "{bff}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(&format!("{section}.{key}: ")),
            "{bff}: {stderr}"
        );

        let typo = format!("[{section}]\n{key}s = {valid}\n");
        let (code, _, stderr) = check_config_file(bff, &format!("{section}-typo.toml"), &typo);
        assert_eq!(code, Some(2), "{bff}");
        assert!(
            stderr.contains(&format!("{section}.{key}s (in ")),
            "{bff}: {stderr}"
        );
    }
    let output = run(
        "bff-web",
        &["--check-config"],
        &[("BFF_WEB__PRODUCT_PAGE_REVIEWS", "7")],
    );
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("[web]\nproduct_page_reviews = 7\n"));
}

#[test]
fn environment_values_load_as_written() {
    let output = run(
        "bff-partner",
        &["--check-config"],
        &[
            ("BFF_AUTH__AUDIENCE", "12345"),
            ("BFF_AUTH__ISSUER", "true"),
            (
                "BFF_AUTH__HS256__SECRET",
                "00112233445566778899001122334455",
            ),
            ("BFF_AUTH__HS256__KID", "007"),
            ("BFF_SERVER__MAX_CONNECTIONS", "123"),
            ("BFF_RATE_LIMIT__ENABLED", "false"),
            ("BFF_RATE_LIMIT__PLANS__STANDARD__REFILL_PER_SECOND", "2.5"),
            (
                "BFF_SERVER__TRUSTED_PROXIES",
                "[10.0.0.0/8, 192.168.0.0/16]",
            ),
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "audience = \"12345\"",
        "issuer = \"true\"",
        "kid = \"007\"",
        "max_connections = 123",
        "enabled = false",
        "refill_per_second = 2.5",
        "trusted_proxies = [\n    \"10.0.0.0/8\",\n    \"192.168.0.0/16\",\n]",
    ] {
        assert!(stdout.contains(expected), "{expected}: {stdout}");
    }
}

#[test]
fn a_bff_without_any_credential_source_does_not_start() {
    let output = run(
        "bff-partner",
        &["--check-config"],
        &[("BFF_AUTH__JWKS__ENABLED", "false")],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no credential source"), "{stderr}");
    // With an API key it is a valid API-key-only deployment.
    let with_key = write_temp_file(
        "partner-keys.toml",
        "[auth.jwks]\nenabled = false\n\n[[auth.api_keys]]\nname = \"acme-erp\"\nsha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\ntenant = \"acme\"\nplan = \"standard\"\n",
    );
    let output = run(
        "bff-partner",
        &[
            "--check-config",
            "--config",
            with_key.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn config_file_can_come_from_bff_config() {
    let path = write_temp_file("mobile.toml", "[observability]\nlog_format = \"pretty\"\n");
    let output = run(
        "bff-mobile",
        &["--check-config"],
        &[("BFF_CONFIG", path.to_str().expect("utf-8 path"))],
    );
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("log_format = \"pretty\""));
    let missing = run(
        "bff-mobile",
        &["--check-config"],
        &[("BFF_CONFIG", "/nonexistent.toml")],
    );
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn every_binary_has_help() {
    for name in [
        "bff-web",
        "bff-mobile",
        "bff-partner",
        "demo-services",
        "devstack",
    ] {
        let output = run(name, &["--help"], &[]);
        assert!(output.status.success(), "{name}");
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("Usage"),
            "{name}"
        );
    }
    let demo = run("demo-services", &["--check-config"], &[]);
    assert!(demo.status.success());
    assert!(String::from_utf8_lossy(&demo.stdout).contains("[ports]"));
}

/// SIGTERM while requests are in flight: every one of them completes, new
/// connections are refused, and the process exits 0.
#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let (demo, shutdown) = start_demo(BTreeMap::from([(
        ServiceName::Pricing,
        FaultConfig {
            latency: Some(HumanDuration::from_millis(1200)),
            ..FaultConfig::default()
        },
    )]))
    .await;
    let bff = BffProcess::spawn_against::<bff_partner::Partner>(
        &demo,
        &[("BFF_DOWNSTREAM__PRICING__TIMEOUT", "5s")],
    )
    .await;

    let client = reqwest::Client::new();
    let token = issue_token(&demo, "partner-acme", "bff-partner", "RS256");
    bff.wait_until_ready().await;
    let in_flight: Vec<_> = (1..=20)
        .map(|id| {
            let request = client
                .get(format!("http://{}/v1/products/{id}", bff.public()))
                .bearer_auth(&token);
            tokio::spawn(request.send())
        })
        .collect();
    // SIGTERM once all twenty are being served (they wait on slow pricing).
    let metrics = format!("http://{}/metrics", bff.admin());
    eventually_within(
        "all twenty requests are in flight",
        Duration::from_secs(10),
        async || {
            let text = client
                .get(&metrics)
                .send()
                .await
                .expect("metrics")
                .text()
                .await
                .expect("text");
            text.contains(r#"http_server_active_requests{bff="bff-partner"} 20"#)
        },
    )
    .await;
    bff.terminate().await;

    // drain_delay is 0 here: readiness fails and the listener closes at once,
    // while the admin port keeps answering.
    let readyz = format!("http://{}/readyz", bff.admin());
    eventually_within(
        "not ready and no new connections while draining",
        Duration::from_secs(10),
        async || {
            let ready = client
                .get(&readyz)
                .send()
                .await
                .expect("admin still answers")
                .status();
            let accepting = tokio::net::TcpStream::connect(bff.public()).await.is_ok();
            ready == 503 && !accepting
        },
    )
    .await;
    for request in in_flight {
        let response = request
            .await
            .expect("task")
            .expect("the in-flight request completes");
        assert_eq!(response.status(), 200);
    }
    let status = bff.wait().await;
    assert_eq!(status.code(), Some(0), "clean exit after the drain");
    shutdown.trigger();
    demo.wait().await;
}

/// One access-log line per request, as JSON, with the route template, the
/// trace id and the caller.
#[tokio::test]
async fn the_access_log_names_the_route_the_trace_and_the_caller() {
    // Through the background writer (the default) and written directly.
    for buffer in ["65536", "0"] {
        access_log_line(&[("BFF_OBSERVABILITY__LOG_BUFFER_LINES", buffer)]).await;
    }
}

async fn access_log_line(env: &[(&str, &str)]) {
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let mut bff = BffProcess::spawn_against::<bff_web::Web>(&demo, env).await;
    bff.wait_until_ready().await;
    let user = demo.catalog().user(5).expect("user 5");
    let token = issue_token(&demo, "user-5", "bff-web", "ES256");
    let response = reqwest::Client::new()
        .get(format!("http://{}/api/product-page/77", bff.public()))
        .bearer_auth(&token)
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    let access = bff.log_event(|event| event["target"] == "access").await;
    assert_eq!(access["route"], "/api/product-page/{id}");
    assert_eq!(access["status"], 200);
    assert_eq!(access["method"], "GET");
    assert_eq!(access["subject"], "user-5");
    assert_eq!(access["tenant"], user.tenant);
    assert_eq!(
        access["span"]["trace_id"],
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert!(
        access["latency_ms"]
            .as_f64()
            .is_some_and(|latency| latency > 0.0)
    );
    assert!(
        !access.to_string().contains(&token[..40]),
        "the token is never logged"
    );
    bff.terminate().await;
    assert_eq!(bff.wait().await.code(), Some(0));
    shutdown.trigger();
}

#[test]
fn check_config_masks_secrets() {
    let output = run(
        "bff-web",
        &["--check-config"],
        &[(
            "BFF_AUTH__HS256__SECRET",
            "a-very-secret-value-that-is-32-bytes-long",
        )],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("[auth.hs256]"), "{stdout}");
    assert!(stdout.contains("secret = \"***\""), "{stdout}");
    assert!(!stdout.contains("a-very-secret-value"), "{stdout}");

    let short = run(
        "bff-web",
        &["--check-config"],
        &[("BFF_AUTH__HS256__SECRET", "short")],
    );
    assert_eq!(short.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&short.stderr).contains("auth.hs256.secret"));
}

#[test]
fn hs256_secrets_can_come_from_a_file() {
    let path = write_temp_file("jwt-secret", "file-secret-that-is-at-least-32-bytes-long\n");
    let output = run(
        "bff-partner",
        &["--check-config"],
        &[(
            "BFF_AUTH__HS256__SECRET_FILE",
            path.to_str().expect("utf-8 path"),
        )],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let missing = run(
        "bff-partner",
        &["--check-config"],
        &[("BFF_AUTH__HS256__SECRET_FILE", "/nonexistent/secret")],
    );
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("auth.hs256.secret_file"));
}

/// bff-partner's configuration file with an API key for each of `keys`
/// (named after it, tenant `acme`) and a standard plan of `capacity`,
/// plus `extra` lines.
fn partner_config(keys: &[&str], capacity: u32, extra: &str) -> String {
    let mut text = format!(
        "{extra}\n[rate_limit.plans.standard]\ncapacity = {capacity}\nrefill_per_second = 50\n"
    );
    for key in keys {
        let config = api_key(key, &format!("key-{key}"), "acme", &["products:read"]);
        text.push_str(&format!(
            "\n[[auth.api_keys]]\nname = \"{key}\"\nsha256 = \"{}\"\ntenant = \"acme\"\nplan = \"standard\"\nscopes = [\"products:read\"]\n",
            config.sha256
        ));
    }
    text
}

#[tokio::test]
async fn a_changed_file_or_sighup_reloads_api_keys_and_plans_and_a_bad_file_is_refused() {
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let file = write_temp_file("partner-reload.toml", &partner_config(&["first"], 100, ""));
    let mut bff = BffProcess::spawn_against_with_args::<bff_partner::Partner>(
        &demo,
        &["--config", file.to_str().expect("utf-8 path")],
        &[],
    )
    .await;
    bff.wait_until_ready().await;
    let (public, admin) = (bff.public(), bff.admin());
    let product = async |key: &str| {
        send(
            reqwest::Client::new()
                .get(format!("http://{public}/v1/products/1"))
                .header("x-api-key", format!("key-{key}")),
        )
        .await
    };
    let reloads = async |result: &str| {
        metric(admin, "config_reloads_total", &[("result", result)])
            .await
            .unwrap_or(0.0)
    };
    assert_eq!(product("first").await.status, 200);
    assert_eq!(product("second").await.status, 401);

    // The file changes: a second key and a bigger plan, in effect without a restart.
    std::fs::write(&file, partner_config(&["first", "second"], 200, "")).expect("written");
    eventually_within(
        "the changed file is reloaded",
        Duration::from_secs(10),
        async || reloads("applied").await == 1.0,
    )
    .await;
    let answer = product("second").await;
    assert_eq!(answer.status, 200, "the new key: {}", answer.body);
    assert_eq!(answer.header("ratelimit-limit"), "200", "the new plan");

    // A file that does not load is refused; the running configuration stays.
    std::fs::write(&file, partner_config(&["first"], 0, "")).expect("written");
    eventually_within(
        "the bad file is refused",
        Duration::from_secs(10),
        async || reloads("rejected").await >= 1.0,
    )
    .await;
    let refused = bff
        .log_event(|event| {
            event["message"]
                == "configuration reload refused: still running the previous configuration"
        })
        .await;
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|error| error.contains("rate_limit.plans.standard.capacity")),
        "{refused}"
    );
    let answer = product("second").await;
    assert_eq!(answer.status, 200, "the previous keys stay");
    assert_eq!(
        answer.header("ratelimit-limit"),
        "200",
        "the previous plan stays"
    );

    // What needs a restart is named, and the rest applies; SIGHUP reloads too.
    let before = reloads("applied").await;
    std::fs::write(
        &file,
        partner_config(&["first"], 300, "[server]\nrequest_timeout = \"5s\"\n"),
    )
    .expect("written");
    bff.signal("HUP").await;
    let partial = bff
        .log_event(|event| {
            event["message"]
                == "configuration reloaded; changes to these sections need a restart and did not take effect"
        })
        .await;
    assert!(
        partial["needs_restart"]
            .as_str()
            .is_some_and(|sections| sections.contains("server")),
        "{partial}"
    );
    eventually_within(
        "the reload is counted",
        Duration::from_secs(10),
        async || reloads("applied").await > before,
    )
    .await;
    assert_eq!(
        product("second").await.status,
        401,
        "the removed key is refused"
    );
    assert_eq!(product("first").await.header("ratelimit-limit"), "300");
    bff.terminate().await;
    shutdown.trigger();
}
