//! The shared limiter: several BFF instances deciding in one real Redis, and
//! what they do while it is down or too slow.

use std::{collections::BTreeMap, num::NonZeroU32, time::Duration};

use demo_services::DemoServices;
use gateway_core::{
    bff::{Bff, BffConfig},
    config::{Delay, HumanDuration},
    lifecycle::{Readiness, Shutdown},
    observability::Telemetry,
    ratelimit::{OutagePolicy, PlanConfig, RateLimitConfig, RateLimiter},
    server::Running,
    stores::{RedisUrl, SharedStores},
};
use platform_tests::{
    Answer, BffProcess, RedisServer, STEADY_CAPACITY, STEADY_REFILL_PER_SECOND, api_key, base_url,
    eventually_within, issue_token, metric, send, slow_limits, start_bff, start_bff_unready,
    start_demo, steady_limits, sustained_load, wait_until_ready, web_without_related_products,
};
use serde_json::json;

/// Upper bound on any wait, so a hang fails the test instead of stalling it.
const HANG_GUARD: Duration = Duration::from_secs(10);

/// `config`'s process Redis is `redis`, its limits [`slow_limits`] under
/// `policy`. The decision timeout is generous unless a test makes Redis
/// slow on purpose: a debug build serving a burst on two cores can take
/// tens of milliseconds, and a decision that times out is the outage
/// policy's.
fn shared_limits<B: Bff>(
    config: &mut BffConfig<B>,
    redis: &RedisServer,
    plans: &[(&str, u32)],
    policy: OutagePolicy,
) {
    config.redis.url = RedisUrl::parse(&redis.url()).expect("a valid URL");
    config.rate_limit = RateLimitConfig {
        outage_policy: policy,
        decision_timeout: HumanDuration::from_secs(2),
        ..slow_limits(plans)
    };
}

/// `config`'s process Redis is `redis`, its limits [`steady_limits`] under
/// `policy`, with the same generous decision timeout as [`shared_limits`].
fn steady_shared_limits<B: Bff>(
    config: &mut BffConfig<B>,
    redis: &RedisServer,
    policy: OutagePolicy,
) {
    config.redis.url = RedisUrl::parse(&redis.url()).expect("a valid URL");
    config.rate_limit = RateLimitConfig {
        outage_policy: policy,
        decision_timeout: HumanDuration::from_secs(2),
        ..steady_limits()
    };
}

/// Five times the steady plan's rate for ten seconds, spread over
/// `instances`; asserts what `buckets` buckets of the plan admit in all.
async fn assert_sustained_overload_holds(instances: &[Running], token: &str, buckets: u64) {
    let load = sustained_load(
        instances,
        "/api/product-page/21",
        token,
        5.0 * STEADY_REFILL_PER_SECOND,
        Duration::from_secs(10),
    )
    .await;
    load.assert_admitted_as_buckets(
        f64::from(STEADY_CAPACITY),
        STEADY_REFILL_PER_SECOND,
        buckets,
    );
}

/// `count` instances of BFF `B`, configured by `configure`, each deciding in Redis.
async fn instances<B: Bff>(
    demo: &DemoServices,
    shutdown: &Shutdown,
    count: usize,
    configure: impl Fn(&mut BffConfig<B>),
) -> Vec<Running> {
    let mut running = Vec::new();
    for _ in 0..count {
        let instance = start_bff::<B>(demo, shutdown, |config| {
            // Only the limiter's commands are counted here.
            config.cache.shared = false;
            configure(config);
        })
        .await;
        wait_for_mode(&instance, "redis").await;
        running.push(instance);
    }
    // Each counts every instance, so each knows its share if Redis goes.
    for instance in &running {
        let counted = format!("rate_limit_live_instances{{bff=\"{}\"}} {count}", B::NAME);
        eventually_within("every instance is counted", HANG_GUARD, async || {
            metrics(instance).await.contains(&counted)
        })
        .await;
    }
    running
}

async fn metrics(instance: &Running) -> String {
    reqwest::get(format!("http://{}/metrics", instance.admin_addr()))
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("text")
}

/// The mode the instance's `rate_limit_backend` gauge shows in force.
async fn mode(instance: &Running) -> String {
    metrics(instance)
        .await
        .lines()
        .filter(|line| line.starts_with("rate_limit_backend{") && line.ends_with("} 1"))
        .filter_map(|line| line.split("mode=\"").nth(1)?.split('"').next())
        .collect::<Vec<_>>()
        .join(",")
}

async fn wait_for_mode(instance: &Running, expected: &str) {
    eventually_within(
        &format!("the limiter switches to {expected}"),
        HANG_GUARD,
        async || mode(instance).await == expected,
    )
    .await;
}

/// Sends `total` requests at once, spread round robin over `instances`, and
/// returns every answer.
async fn burst(
    instances: &[Running],
    path: &str,
    total: usize,
    request: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> Vec<Answer> {
    let client = reqwest::Client::new();
    let requests = (0..total).map(|index| {
        let url = format!("{}{path}", base_url(&instances[index % instances.len()]));
        send(request(client.get(url)))
    });
    tokio::time::timeout(HANG_GUARD, futures_util::future::join_all(requests))
        .await
        .expect("every request is answered")
}

fn count(answers: &[Answer], status: u16) -> usize {
    answers
        .iter()
        .filter(|answer| answer.status == status)
        .count()
}

#[tokio::test]
async fn three_instances_admit_a_concurrent_burst_as_one_bucket_would() {
    let redis = RedisServer::start().await;
    let (demo, shutdown) = start_demo(Default::default()).await;
    let web = instances::<bff_web::Web>(&demo, &shutdown, 3, |config| {
        shared_limits(config, &redis, &[("standard", 60)], OutagePolicy::Local);
    })
    .await;
    let token = issue_token(&demo, "user-1", "bff-web", "ES256");
    let answers = burst(&web, "/api/product-page/9", 150, |request| {
        request.bearer_auth(&token)
    })
    .await;
    let admitted = count(&answers, 200);
    assert_eq!(
        admitted + count(&answers, 429),
        150,
        "every answer is a 200 or a 429"
    );
    assert!(
        (59..=61).contains(&admitted),
        "{admitted} admitted of a 60-token bucket"
    );
    for instance in &web {
        assert_eq!(mode(instance).await, "redis", "decided in Redis throughout");
    }

    // Another tenant's caller has its own bucket in the same Redis.
    let catalog = demo.catalog();
    let first = catalog.user(1).expect("user 1").tenant;
    let other = (2..100)
        .find(|id| catalog.user(*id).expect("a user").tenant != first)
        .expect("users of two tenants");
    let other_token = issue_token(&demo, &format!("user-{other}"), "bff-web", "ES256");
    let answers = burst(&web, "/api/product-page/9", 90, |request| {
        request.bearer_auth(&other_token)
    })
    .await;
    assert_eq!(
        count(&answers, 200),
        60,
        "a full bucket for the other tenant"
    );
    shutdown.trigger();
    for instance in web {
        instance.wait().await;
    }
}

/// `count` bff-web instances on the steady plan shared through `redis`,
/// their product pages four calls each.
async fn steady_web(
    demo: &DemoServices,
    shutdown: &Shutdown,
    redis: &RedisServer,
    count: usize,
) -> Vec<Running> {
    instances::<bff_web::Web>(demo, shutdown, count, |config| {
        steady_shared_limits(config, redis, OutagePolicy::Local);
        config.own = web_without_related_products();
    })
    .await
}

/// A sustained overload spread over `count` instances deciding in Redis
/// is admitted as one bucket, and they stay in Redis throughout.
async fn assert_overload_in_redis_holds(count: usize) {
    let redis = RedisServer::start().await;
    let (demo, shutdown) = start_demo(Default::default()).await;
    let web = steady_web(&demo, &shutdown, &redis, count).await;
    let token = issue_token(&demo, "user-1", "bff-web", "ES256");
    assert_sustained_overload_holds(&web, &token, 1).await;
    for instance in &web {
        assert_eq!(mode(instance).await, "redis", "decided in Redis throughout");
    }
    shutdown.trigger();
    for instance in web {
        instance.wait().await;
    }
}

#[tokio::test]
async fn a_sustained_overload_of_one_instance_is_admitted_at_the_plans_rate_in_redis() {
    assert_overload_in_redis_holds(1).await;
}

#[tokio::test]
async fn a_sustained_overload_spread_over_three_instances_is_admitted_at_one_plans_rate() {
    assert_overload_in_redis_holds(3).await;
}

#[tokio::test]
async fn while_redis_is_down_three_instances_at_their_share_admit_one_plans_rate() {
    let mut redis = RedisServer::start().await;
    let (demo, shutdown) = start_demo(Default::default()).await;
    let web = steady_web(&demo, &shutdown, &redis, 3).await;
    let token = issue_token(&demo, "user-1", "bff-web", "ES256");
    redis.stop().await;
    for instance in &web {
        wait_for_mode(instance, "local").await;
    }
    // Each instance decides alone on a third of the plan, and gets a third
    // of the requests.
    assert_sustained_overload_holds(&web, &token, 3).await;
    shutdown.trigger();
    for instance in web {
        instance.wait().await;
    }
}

#[tokio::test]
async fn decisions_as_fast_as_redis_answers_admit_exactly_the_plans_rate() {
    // The limiter itself, without HTTP: many decisions a millisecond on one
    // bucket, closer together than any HTTP client here sends them. The
    // bucket holds half a second of refill, so a pause of the deciders that
    // short (a busy machine) loses none of it.
    const CAPACITY: u32 = 500;
    const RATE: f64 = 1000.0;
    let redis = RedisServer::start().await;
    let shutdown = Shutdown::new();
    let mut config = RateLimitConfig {
        decision_timeout: HumanDuration::from_secs(2),
        ..RateLimitConfig::default()
    };
    config.plans.insert(
        "standard".to_owned(),
        PlanConfig {
            capacity: CAPACITY,
            refill_per_second: RATE,
            daily_quota: None,
        },
    );
    let stores = SharedStores::open(&redis.url(), &shutdown).expect("a Redis URL");
    let readiness = Readiness::default();
    let limiter = RateLimiter::start(
        "bff-test",
        &config,
        &[],
        &Telemetry::new("bff-test"),
        &readiness,
        &shutdown,
        &stores,
        &gateway_core::clock::Clock::system(),
    )
    .expect("a valid configuration");
    platform_tests::eventually("the limiter has heard from Redis", async || {
        readiness.is_ready()
    })
    .await;
    let charge = limiter.charge_for(None, Some([10, 0, 0, 1].into()), &http::HeaderMap::new());
    // A fixed number of decisions, each decider asking again as soon as it
    // is answered; the window is however long they took.
    const DECISIONS_PER_DECIDER: u64 = 2_000;
    let started = tokio::time::Instant::now();
    let deciders = (0..32).map(|_| {
        let charge = charge.clone();
        tokio::spawn(async move {
            let mut admitted = 0u64;
            for _ in 0..DECISIONS_PER_DECIDER {
                let decision = charge.charge(1).await;
                admitted += u64::from(matches!(decision, Ok(Some(_))));
            }
            (admitted, DECISIONS_PER_DECIDER)
        })
    });
    let counts = futures_util::future::join_all(deciders).await;
    let window = started.elapsed().as_secs_f64();
    let (admitted, decided) = counts
        .into_iter()
        .map(|counts| counts.expect("a decider runs to its end"))
        .fold((0, 0), |(a, d), (admitted, decided)| {
            (a + admitted, d + decided)
        });
    let most = f64::from(CAPACITY) + RATE * window;
    println!(
        "{admitted} admitted of {decided} decisions in {window:.2}s ({:.0} a second): at most {most:.0}",
        decided as f64 / window
    );
    // Demand exceeded supply throughout: most decisions were refusals.
    assert!(
        decided > 2 * admitted,
        "demand exceeded supply: {admitted} admitted of {decided} decisions"
    );
    assert!(
        admitted as f64 <= most,
        "{admitted} admitted, at most {most:.0}"
    );
    assert!(
        admitted as f64 >= 0.99 * most,
        "{admitted} admitted, at least 99 % of {most:.0}"
    );
    shutdown.trigger();
}

#[tokio::test]
async fn three_fresh_instances_admit_one_bucket_as_soon_as_they_are_ready() {
    let redis = RedisServer::start().await;
    let (demo, shutdown) = start_demo(Default::default()).await;
    let configure = |config: &mut BffConfig<bff_web::Web>| {
        config.cache.shared = false;
        shared_limits(config, &redis, &[("standard", 60)], OutagePolicy::Local);
    };
    // Started together; each is sent requests the moment it says it is ready.
    let web = futures_util::future::join_all(
        (0..3).map(|_| start_bff_unready::<bff_web::Web>(&demo, &shutdown, configure)),
    )
    .await;
    futures_util::future::join_all(web.iter().map(wait_until_ready)).await;
    let token = issue_token(&demo, "user-1", "bff-web", "ES256");
    let answers = burst(&web, "/api/product-page/9", 180, |request| {
        request.bearer_auth(&token)
    })
    .await;
    assert_eq!(
        count(&answers, 200) + count(&answers, 429),
        180,
        "every answer is a 200 or a 429"
    );
    assert_eq!(
        count(&answers, 200),
        60,
        "one 60-token bucket for all three"
    );
    shutdown.trigger();
    for instance in web {
        instance.wait().await;
    }
}

/// `/readyz` of `instance`: its status and body.
async fn readyz(instance: &Running) -> Answer {
    send(reqwest::Client::new().get(format!("http://{}/readyz", instance.admin_addr()))).await
}

#[tokio::test]
async fn an_instance_that_cannot_reach_redis_says_why_then_is_ready_on_its_expected_share() {
    let mut redis = RedisServer::start().await;
    redis.stop().await;
    let (demo, shutdown) = start_demo(Default::default()).await;
    let web = start_bff_unready::<bff_web::Web>(&demo, &shutdown, |config| {
        shared_limits(config, &redis, &[("standard", 60)], OutagePolicy::Local);
        config.rate_limit.startup_wait = Delay::from_secs(1);
        config.rate_limit.expected_instances = NonZeroU32::new(3).expect("not zero");
    })
    .await;
    let waiting = readyz(&web).await;
    assert_eq!(waiting.status, 503, "{}", waiting.body);
    assert!(
        waiting.body["waiting_for"]
            .as_array()
            .is_some_and(|gates| gates.contains(&json!("rate_limit_redis"))),
        "{}",
        waiting.body
    );
    let reason = waiting.body["reasons"]["rate_limit_redis"]
        .as_str()
        .unwrap_or_default();
    let address = redis.url().replace("redis://", "");
    assert!(
        reason.contains(&format!("no answer from Redis at {address}"))
            && reason.contains("1s")
            && reason.contains("local"),
        "{reason}"
    );

    // After startup_wait: ready, deciding in process on a third of the plan.
    wait_until_ready(&web).await;
    assert_eq!(mode(&web).await, "local");
    let token = issue_token(&demo, "user-1", "bff-web", "ES256");
    let answers = burst(
        std::slice::from_ref(&web),
        "/api/product-page/9",
        60,
        |request| request.bearer_auth(&token),
    )
    .await;
    assert_eq!(
        count(&answers, 200),
        20,
        "a third of 60: three instances expected"
    );
    shutdown.trigger();
    web.wait().await;
}

#[tokio::test]
async fn under_the_closed_policy_an_instance_is_ready_only_once_redis_answers() {
    let mut redis = RedisServer::start().await;
    redis.stop().await;
    let (demo, shutdown) = start_demo(Default::default()).await;
    let web = start_bff_unready::<bff_web::Web>(&demo, &shutdown, |config| {
        shared_limits(config, &redis, &[("standard", 5)], OutagePolicy::Closed);
        config.rate_limit.startup_wait = Delay::default();
    })
    .await;
    let waiting = readyz(&web).await;
    assert_eq!(waiting.status, 503, "{}", waiting.body);
    let reason = waiting.body["reasons"]["rate_limit_redis"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("the outage policy is closed"), "{reason}");
    // A startup_wait of 0s makes no difference under closed: still not ready
    // once several heartbeats have failed, startup_wait long past.
    wait_for_mode(&web, "closed").await;
    let admin = web.admin_addr();
    eventually_within("three heartbeats fail", HANG_GUARD, async || {
        metric(
            admin,
            "rate_limit_redis_heartbeats_total",
            &[("outcome", "failed")],
        )
        .await
        .is_some_and(|failed| failed >= 3.0)
    })
    .await;
    assert_eq!(
        mode(&web).await,
        "closed",
        "closed while Redis never answered"
    );
    assert_eq!(readyz(&web).await.status, 503);

    redis.restart().await;
    wait_until_ready(&web).await;
    assert_eq!(mode(&web).await, "redis");
    shutdown.trigger();
    web.wait().await;
}

#[tokio::test]
async fn each_decision_is_one_round_trip_and_idle_buckets_expire() {
    let redis = RedisServer::start().await;
    let (demo, shutdown) = start_demo(Default::default()).await;
    let web = instances::<bff_web::Web>(&demo, &shutdown, 1, |config| {
        shared_limits(config, &redis, &[("standard", 50)], OutagePolicy::Local);
    })
    .await;
    let token = issue_token(&demo, "user-1", "bff-web", "ES256");
    redis.reset_stats().await;
    let answers = burst(&web, "/api/product-page/15", 10, |request| {
        request.bearer_auth(&token)
    })
    .await;
    assert_eq!(count(&answers, 200), 10);
    let calls = redis.command_calls().await;
    let of = |name: &str| calls.get(name).copied().unwrap_or(0);
    // Each decision writes its bucket once (HSET) inside one EVALSHA; the
    // heartbeat's EVALSHA writes the instance set (ZADD) instead.
    assert_eq!(of("hset"), 10, "{calls:?}");
    assert_eq!(
        of("evalsha"),
        of("hset") + of("zadd"),
        "one command per decision: {calls:?}"
    );
    assert_eq!(
        of("eval") + of("script|load") + of("script"),
        0,
        "the script was loaded before: {calls:?}"
    );

    // The bucket expires once it would be full again (50 tokens at 0.001/s: 50,001 s).
    let mut connection = redis::Client::open(redis.url())
        .expect("a valid URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connected");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("rl:{bff-web:*")
        .query_async(&mut connection)
        .await
        .expect("KEYS answers");
    assert_eq!(keys.len(), 1, "one bucket: {keys:?}");
    // The bucket's clock is kept to the microsecond, as Redis's TIME gives it.
    let (tokens, updated): (String, String) = redis::cmd("HMGET")
        .arg(&keys[0])
        .arg("t")
        .arg("u")
        .query_async(&mut connection)
        .await
        .expect("HMGET answers");
    let updated: u64 = updated
        .parse()
        .unwrap_or_else(|_| panic!("whole microseconds: {updated}"));
    assert!(
        updated > 1_700_000_000_000_000,
        "microseconds since 1970: {updated}"
    );
    let tokens: f64 = tokens.parse().expect("a number");
    assert!(
        (39.0..41.0).contains(&tokens),
        "50 less 10 admitted: {tokens}"
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut connection)
        .await
        .expect("PTTL answers");
    assert!(
        (49_000_000..=50_001_000).contains(&ttl),
        "expires when full again: {ttl} ms"
    );
    shutdown.trigger();
    web.into_iter().next().expect("one instance").wait().await;
}

#[tokio::test]
async fn an_api_keys_plan_holds_across_instances() {
    let redis = RedisServer::start().await;
    let (demo, shutdown) = start_demo(Default::default()).await;
    let mut gold_key = api_key(
        "acme-erp",
        "acme-key-0123456789abcdef",
        "acme",
        &["products:read"],
    );
    gold_key.plan = "gold".to_owned();
    let partner = instances::<bff_partner::Partner>(&demo, &shutdown, 2, |config| {
        shared_limits(
            config,
            &redis,
            &[("standard", 2), ("gold", 12)],
            OutagePolicy::Local,
        );
        config.auth.api_keys = vec![gold_key.clone()];
    })
    .await;
    let by_key = burst(&partner, "/v1/products/4", 30, |request| {
        request.header("x-api-key", "acme-key-0123456789abcdef")
    })
    .await;
    assert_eq!(
        count(&by_key, 200),
        12,
        "the key's gold plan, shared by both instances"
    );
    let token = issue_token(&demo, "partner-acme", "bff-partner", "RS256");
    let by_token = burst(&partner, "/v1/products/4", 10, |request| {
        request.bearer_auth(&token)
    })
    .await;
    assert_eq!(
        count(&by_token, 200),
        2,
        "the same tenant's token: the default plan"
    );
    shutdown.trigger();
    for instance in partner {
        instance.wait().await;
    }
}

#[tokio::test]
async fn while_redis_is_down_instances_enforce_their_share_and_return_to_redis() {
    let mut redis = RedisServer::start().await;
    let (demo, shutdown) = start_demo(Default::default()).await;
    let web = instances::<bff_web::Web>(&demo, &shutdown, 3, |config| {
        shared_limits(config, &redis, &[("standard", 30)], OutagePolicy::Local);
    })
    .await;
    let token = issue_token(&demo, "user-1", "bff-web", "ES256");
    let path = "/api/product-page/11";

    redis.stop().await;
    let during = burst(&web, path, 90, |request| request.bearer_auth(&token)).await;
    assert_eq!(
        count(&during, 200) + count(&during, 429),
        90,
        "no 500, no 503"
    );
    for instance in &web {
        wait_for_mode(instance, "local").await;
    }
    let admitted = count(&during, 200);
    let ratio = admitted as f64 / 30.0;
    println!(
        "with Redis down, 3 instances admitted {admitted} of a 30-token plan: ratio {ratio:.2}"
    );
    assert!(
        (27..=33).contains(&admitted),
        "about one plan's worth: {admitted}"
    );

    redis.restart().await;
    for instance in &web {
        wait_for_mode(instance, "redis").await;
    }
    // The restarted Redis is empty: one fresh, shared bucket again.
    let after = burst(&web, path, 90, |request| request.bearer_auth(&token)).await;
    assert_eq!(
        count(&after, 200),
        30,
        "decided in Redis again: exactly one bucket"
    );
    shutdown.trigger();
    for instance in web {
        instance.wait().await;
    }
}

#[tokio::test]
async fn the_open_policy_admits_while_redis_is_down_or_too_slow() {
    let mut redis = RedisServer::start().await;
    let (demo, shutdown) = start_demo(Default::default()).await;
    let web = instances::<bff_web::Web>(&demo, &shutdown, 1, |config| {
        shared_limits(config, &redis, &[("standard", 2)], OutagePolicy::Open);
        config.rate_limit.decision_timeout = HumanDuration::from_millis(250);
    })
    .await;
    let token = issue_token(&demo, "user-1", "bff-web", "ES256");
    let path = "/api/product-page/12";
    let limited = burst(&web, path, 4, |request| request.bearer_auth(&token)).await;
    assert_eq!(count(&limited, 200), 2, "Redis decides while it answers");

    // Slower than decision_timeout: the request is not held, the policy decides.
    redis.pause(Duration::from_secs(3)).await;
    let slow = burst(&web, path, 3, |request| request.bearer_auth(&token)).await;
    assert_eq!(count(&slow, 200), 3, "admitted while Redis is too slow");
    assert!(
        slow.iter()
            .all(|answer| answer.header("ratelimit-limit").is_empty())
    );
    wait_for_mode(&web[0], "open").await;
    wait_for_mode(&web[0], "redis").await;

    redis.stop().await;
    let down = burst(&web, path, 5, |request| request.bearer_auth(&token)).await;
    assert_eq!(count(&down, 200), 5, "admitted while Redis is down");
    wait_for_mode(&web[0], "open").await;
    assert_eq!(
        reqwest::get(format!("http://{}/readyz", web[0].admin_addr()))
            .await
            .expect("readyz answers")
            .status(),
        200,
        "still ready under the open policy"
    );
    shutdown.trigger();
    web.into_iter().next().expect("one instance").wait().await;
}

#[tokio::test]
async fn the_closed_policy_refuses_with_503_and_is_not_ready_until_redis_returns() {
    let mut redis = RedisServer::start().await;
    let (demo, shutdown) = start_demo(Default::default()).await;
    let web = instances::<bff_web::Web>(&demo, &shutdown, 1, |config| {
        shared_limits(config, &redis, &[("standard", 5)], OutagePolicy::Closed);
    })
    .await;
    let token = issue_token(&demo, "user-1", "bff-web", "ES256");
    let path = "/api/product-page/13";
    let readyz = || async {
        reqwest::get(format!("http://{}/readyz", web[0].admin_addr()))
            .await
            .expect("readyz answers")
            .status()
            .as_u16()
    };
    assert_eq!(readyz().await, 200);

    redis.stop().await;
    let refused = burst(&web, path, 3, |request| request.bearer_auth(&token)).await;
    for answer in &refused {
        answer.assert_problem(
            503,
            "RATE_LIMIT_UNAVAILABLE",
            "Redis is down, policy closed",
        );
        assert_eq!(answer.header("retry-after"), "1");
    }
    wait_for_mode(&web[0], "closed").await;
    assert_eq!(readyz().await, 503, "not ready while it refuses everything");

    redis.restart().await;
    wait_for_mode(&web[0], "redis").await;
    assert_eq!(readyz().await, 200);
    let served = burst(&web, path, 1, |request| request.bearer_auth(&token)).await;
    assert_eq!(served[0].status, 200, "{}", served[0].body);
    shutdown.trigger();
    web.into_iter().next().expect("one instance").wait().await;
}

#[tokio::test]
async fn each_switch_is_logged_once_not_per_request() {
    let mut redis = RedisServer::start().await;
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let mut bff = BffProcess::spawn_against::<bff_web::Web>(
        &demo,
        &[
            ("BFF_REDIS__URL", &redis.url()),
            ("BFF_RATE_LIMIT__DECISION_TIMEOUT", "50ms"),
        ],
    )
    .await;
    bff.wait_until_ready().await;
    bff.log_event(|event| event["message"] == "rate limiting: deciding in Redis")
        .await;
    let token = issue_token(&demo, "user-1", "bff-web", "ES256");
    let url = format!("http://{}/api/product-page/14", bff.public());

    redis.stop().await;
    for _ in 0..20 {
        let answer = send(reqwest::Client::new().get(&url).bearer_auth(&token)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    redis.restart().await;
    let mut outage_lines = 0;
    bff.log_event(|event| {
        if event["message"] == "rate limiting: Redis unavailable, the outage policy decides" {
            outage_lines += 1;
        }
        event["message"] == "rate limiting: deciding in Redis"
    })
    .await;
    assert_eq!(outage_lines, 1, "one line for the switch, none per request");
    bff.terminate().await;
    assert!(bff.wait().await.success());
    shutdown.trigger();
    demo.wait().await;
}
