//! End-to-end harness: the whole platform on one machine.
//!
//! [`Platform`] starts `demo-services` and the three BFFs in this process,
//! each on its own listeners and talking to the others over real HTTP on
//! loopback, exactly as separate processes would. Tests start it on free
//! ports ([`PlatformOptions::default`]); the `devstack` binary starts it on
//! the documented ports ([`PlatformOptions::dev`]).
//!
//! [`BffProcess`] runs a BFF *binary* as a child process, for what only a
//! real process shows: the command line, environment configuration and
//! signal handling.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    process::{ExitStatus, Stdio},
    time::Duration,
};

use demo_services::{
    DemoConfig, DemoServices, FaultConfig, IssuerConfig, Ports, ServiceName, ServicesConfig,
    TokenRequest, WebhooksConfig,
};
use gateway_core::{
    auth::{
        ApiKeyConfig, Es256Key, Es256KeyError, Hs256Config, InternalTokenConfig,
        IntrospectionConfig,
    },
    bff::{self, Bff, BffConfig, StartError},
    clock::Clock,
    config::{Delay, HumanDuration, Secret, ServiceUrl},
    lifecycle::Shutdown,
    ratelimit::{PlanConfig, RateLimitConfig},
    server::{Running, ServerConfig},
    stores::RedisUrl,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

pub mod pki;

/// Where the platform listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Free ports on 127.0.0.1, for tests.
    Ephemeral,
    /// The documented ports (`docs/architecture.md`), for local runs.
    Dev,
}

/// The demo partner API key `devstack` configures (tenant `acme`). A
/// development convenience only: production keys are configured by hash.
pub const DEMO_PARTNER_API_KEY: &str = "demo-acme-3f9c1e7a5b2d4086";

/// How to start the platform.
#[derive(Debug, Clone)]
pub struct PlatformOptions {
    /// Ports.
    pub layout: Layout,
    /// Downstream timeout of every BFF client; the BFF default when `None`.
    pub downstream_timeout: Option<HumanDuration>,
    /// Faults injected in the demo services from the start.
    pub faults: BTreeMap<ServiceName, FaultConfig>,
    /// The demo issuer's settings.
    pub issuer: IssuerConfig,
    /// An HS256 secret every BFF accepts (and the issuer signs with).
    pub hs256_secret: Option<String>,
    /// bff-partner's API keys.
    pub partner_api_keys: Vec<ApiKeyConfig>,
    /// JWKS refresh interval of every BFF; the default when `None`.
    pub jwks_refresh_interval: Option<HumanDuration>,
    /// JWKS minimum refetch interval of every BFF; the default when `None`.
    pub jwks_min_refetch_interval: Option<HumanDuration>,
    /// How long every BFF trusts its last good keys; the default when `None`.
    pub jwks_max_stale: Option<HumanDuration>,
    /// bff-web's own section.
    pub web: bff_web::WebSettings,
    /// bff-mobile's own section.
    pub mobile: bff_mobile::MobileSettings,
    /// bff-partner's own section.
    pub partner: bff_partner::PartnerSettings,
    /// Whether every BFF introspects opaque tokens at the demo issuer.
    pub opaque_tokens: bool,
    /// Whether the BFFs sign the caller into an internal token (one key
    /// for the three) and, on the documented ports, the services require it.
    pub signed_identity: bool,
}

impl Default for PlatformOptions {
    fn default() -> Self {
        Self {
            layout: Layout::Ephemeral,
            downstream_timeout: None,
            faults: BTreeMap::new(),
            issuer: test_issuer(),
            hs256_secret: None,
            partner_api_keys: Vec::new(),
            jwks_refresh_interval: None,
            jwks_min_refetch_interval: None,
            jwks_max_stale: None,
            web: bff_web::WebSettings::default(),
            mobile: bff_mobile::MobileSettings::default(),
            partner: bff_partner::PartnerSettings::default(),
            opaque_tokens: false,
            signed_identity: false,
        }
    }
}

impl PlatformOptions {
    /// The documented ports, the demo partner API key and a GraphQL schema
    /// that answers introspection and suggests fields, as `devstack` uses.
    pub fn dev() -> Self {
        Self {
            layout: Layout::Dev,
            mobile: bff_mobile::MobileSettings {
                introspection: true,
                suggestions: true,
                graphiql: true,
                ..bff_mobile::MobileSettings::default()
            },
            partner: bff_partner::PartnerSettings {
                allow_http_webhooks: true,
                docs: true,
                ..bff_partner::PartnerSettings::default()
            },
            issuer: IssuerConfig::default(),
            signed_identity: true,
            partner_api_keys: vec![api_key(
                "demo-acme",
                DEMO_PARTNER_API_KEY,
                "acme",
                &[
                    "products:read",
                    "orders:read",
                    "orders:write",
                    "webhooks:manage",
                ],
            )],
            ..Self::default()
        }
    }
}

/// The demo issuer's settings in tests: its RSA key comes from a file made
/// once (`tests/keys/demo-issuer-rsa.pem`), because generating an RSA-2048
/// key at every start was a third of the test suite's CPU. Its P-256 key is
/// generated, which is cheap, and key rotation still generates both.
pub fn test_issuer() -> IssuerConfig {
    IssuerConfig {
        rsa_key_file: Some(
            [env!("CARGO_MANIFEST_DIR"), "keys", "demo-issuer-rsa.pem"]
                .iter()
                .collect(),
        ),
        ..IssuerConfig::default()
    }
}

/// The configuration of an API key, as an operator writes it: by its SHA-256.
pub fn api_key(name: &str, key: &str, tenant: &str, scopes: &[&str]) -> ApiKeyConfig {
    ApiKeyConfig {
        name: name.to_owned(),
        sha256: ring::digest::digest(&ring::digest::SHA256, key.as_bytes())
            .as_ref()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect(),
        tenant: tenant.to_owned(),
        plan: "standard".to_owned(),
        scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
        revoked: false,
    }
}

/// The platform could not start.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// demo-services could not start.
    #[error("demo-services: {0}")]
    Demo(#[from] demo_services::StartError),
    /// The internal-token key could not be generated.
    #[error("the internal-token key: {0}")]
    Key(#[from] Es256KeyError),
    /// A BFF could not start.
    #[error("{bff}: {source}")]
    Bff {
        /// Which BFF.
        bff: &'static str,
        /// Why.
        source: StartError,
    },
}

/// demo-services and the three BFFs, running in this process.
#[derive(Debug)]
pub struct Platform {
    demo: DemoServices,
    web: Running,
    mobile: Running,
    partner: Running,
    shutdown: Shutdown,
}

impl Platform {
    /// Starts everything on free ports with default settings.
    pub async fn start() -> Self {
        Self::start_with(PlatformOptions::default())
            .await
            .expect("the platform starts")
    }

    /// Starts everything as `options` say.
    pub async fn start_with(options: PlatformOptions) -> Result<Self, PlatformError> {
        let shutdown = Shutdown::new();
        let internal_token = match options.signed_identity {
            true => InternalTokenConfig {
                enabled: true,
                key_file: Some(write_temp_file(
                    "internal-token-key.pem",
                    &Es256Key::generate()?.to_pkcs8_pem(),
                )),
                ..InternalTokenConfig::default()
            },
            false => InternalTokenConfig::default(),
        };
        // The services must know where the keys are before the BFFs start:
        // only the documented ports say so in advance.
        let services = match (options.signed_identity, options.layout) {
            (true, Layout::Dev) => ServicesConfig {
                require_gateway_token: true,
                gateway_jwks_url: Some(
                    ServiceUrl::parse(&format!(
                        "http://127.0.0.1:{}/.well-known/jwks.json",
                        bff_web::Web::ADMIN_PORT
                    ))
                    .expect("a valid URL"),
                ),
                ..ServicesConfig::default()
            },
            _ => ServicesConfig::default(),
        };
        let demo_config = DemoConfig {
            services,
            ports: match options.layout {
                Layout::Ephemeral => Ports::ephemeral(),
                Layout::Dev => Ports::default(),
            },
            faults: options.faults.clone(),
            issuer: IssuerConfig {
                hs256_secret: options.hs256_secret.as_deref().map(Secret::new),
                ..options.issuer.clone()
            },
            webhooks: test_webhooks(),
            ..DemoConfig::default()
        };
        let demo = DemoServices::start(demo_config, shutdown.clone()).await?;
        let mut web = bff_config::<bff_web::Web>(&demo, &options);
        web.own = options.web.clone();
        web.auth.internal_token = internal_token.clone();
        let mut mobile = bff_config::<bff_mobile::Mobile>(&demo, &options);
        mobile.own = options.mobile.clone();
        mobile.auth.internal_token = internal_token.clone();
        let mut partner = bff_config::<bff_partner::Partner>(&demo, &options);
        partner.auth.internal_token = internal_token;
        partner.auth.api_keys = options.partner_api_keys.clone();
        partner.own = options.partner.clone();

        let failed = |bff| move |source| PlatformError::Bff { bff, source };
        let web = bff::start(web, shutdown.clone())
            .await
            .map_err(failed(bff_web::Web::NAME))?;
        let mobile = bff::start(mobile, shutdown.clone())
            .await
            .map_err(failed(bff_mobile::Mobile::NAME))?;
        let partner = bff::start(partner, shutdown.clone())
            .await
            .map_err(failed(bff_partner::Partner::NAME))?;
        Ok(Self {
            demo,
            web,
            mobile,
            partner,
            shutdown,
        })
    }

    /// The demo services (issuer, faults, data).
    pub fn demo(&self) -> &DemoServices {
        &self.demo
    }

    /// An RS256 token for demo user `user-1` and `audience` (a BFF's name).
    pub fn token(&self, audience: &str) -> String {
        self.token_for("user-1", audience, "RS256")
    }

    /// A token for `subject` and `audience`, signed with `alg`.
    pub fn token_for(&self, subject: &str, audience: &str, alg: &str) -> String {
        issue_token(&self.demo, subject, audience, alg)
    }

    /// bff-web.
    pub fn web(&self) -> &Running {
        &self.web
    }

    /// bff-mobile.
    pub fn mobile(&self) -> &Running {
        &self.mobile
    }

    /// bff-partner.
    pub fn partner(&self) -> &Running {
        &self.partner
    }

    /// The shutdown signal of every part.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Drains and stops everything.
    pub async fn stop(self) {
        self.shutdown.trigger();
        self.wait().await;
    }

    /// Completes once every part has stopped (after the shutdown triggered).
    pub async fn wait(self) {
        self.web.wait().await;
        self.mobile.wait().await;
        self.partner.wait().await;
        self.demo.wait().await;
    }
}

/// The configuration of BFF `B` pointing at `demo`.
pub fn bff_config<B: Bff>(demo: &DemoServices, options: &PlatformOptions) -> BffConfig<B> {
    let mut config = BffConfig::<B>::default();
    if options.layout == Layout::Ephemeral {
        config.server = ephemeral_server();
    }
    // No load balancer to wait for: stop accepting as soon as a drain starts.
    config.server.drain_delay = Delay::default();
    config.auth.issuer = options.issuer.issuer.clone();
    let jwks = &mut config.auth.jwks;
    jwks.url = ServiceUrl::parse(&demo.jwks_url()).expect("the JWKS URL is valid");
    if let Some(interval) = options.jwks_refresh_interval {
        jwks.refresh_interval = interval;
    }
    if let Some(interval) = options.jwks_min_refetch_interval {
        jwks.min_refetch_interval = interval;
    }
    if let Some(max_stale) = options.jwks_max_stale {
        jwks.max_stale = max_stale;
    }
    if let Some(secret) = &options.hs256_secret {
        config.auth.hs256 = Some(Hs256Config {
            secret: Some(Secret::new(secret.clone())),
            secret_file: None,
            kid: None,
        });
    }
    if options.opaque_tokens {
        config.auth.introspection = introspecting_at(demo);
    }
    for (service, downstream) in &mut config.downstream {
        if let Some(served) = ServiceName::named(service) {
            downstream.url =
                ServiceUrl::parse(&demo.url(served)).expect("demo-services URLs are valid");
        }
        if let Some(timeout) = options.downstream_timeout {
            downstream.timeout = timeout;
        }
    }
    config
}

/// Introspection of opaque tokens at `demo`'s issuer, with its dev client secret.
pub fn introspecting_at(demo: &DemoServices) -> IntrospectionConfig {
    IntrospectionConfig {
        enabled: true,
        url: ServiceUrl::parse(&format!("{}/introspect", demo.url(ServiceName::Auth)))
            .expect("a valid URL"),
        client_secret: Some(Secret::new("dev-introspection-secret".to_owned())),
        ..IntrospectionConfig::default()
    }
}

/// Starts BFF `B` in this process against `demo`, configured by
/// `configure` on top of [`bff_config`], and waits until it is ready.
pub async fn start_bff<B: Bff>(
    demo: &DemoServices,
    shutdown: &Shutdown,
    configure: impl FnOnce(&mut BffConfig<B>),
) -> Running {
    let running = start_bff_unready(demo, shutdown, configure).await;
    wait_until_ready(&running).await;
    running
}

/// `N` instances of BFF `B` against `demo` whose process Redis is
/// `redis_url` (shared rate limits, cache and idempotency records), each ready.
pub async fn instances_sharing_redis<B: Bff, const N: usize>(
    demo: &DemoServices,
    shutdown: &Shutdown,
    redis_url: &str,
) -> [Running; N] {
    let mut instances = Vec::with_capacity(N);
    for _ in 0..N {
        instances.push(
            start_bff::<B>(demo, shutdown, |config| {
                config.redis.url = RedisUrl::parse(redis_url).expect("a valid Redis URL");
            })
            .await,
        );
    }
    instances
        .try_into()
        .unwrap_or_else(|_| unreachable!("N instances were started"))
}

/// [`start_bff`] without waiting for readiness: it returns once the
/// listeners are open, as a load balancer first sees an instance.
pub async fn start_bff_unready<B: Bff>(
    demo: &DemoServices,
    shutdown: &Shutdown,
    configure: impl FnOnce(&mut BffConfig<B>),
) -> Running {
    let mut config = bff_config::<B>(demo, &PlatformOptions::default());
    configure(&mut config);
    bff::start(config, shutdown.clone())
        .await
        .expect("the BFF starts")
}

/// [`start_bff`] with the time of day read from `clock` (a manual one the
/// test moves, to pass midnight or a sunset).
pub async fn start_bff_at<B: Bff>(
    demo: &DemoServices,
    shutdown: &Shutdown,
    clock: &Clock,
    configure: impl FnOnce(&mut BffConfig<B>),
) -> Running {
    let mut config = bff_config::<B>(demo, &PlatformOptions::default());
    configure(&mut config);
    let running = bff::start_at(config, shutdown.clone(), clock.clone())
        .await
        .expect("the BFF starts");
    wait_until_ready(&running).await;
    running
}

/// What a steady load against a rate limit got; see [`sustained_load`].
#[derive(Debug)]
pub struct SustainedLoad {
    /// Answers 200.
    pub admitted: u64,
    /// Answers 429.
    pub refused: u64,
    /// The longest the limiter can have been deciding: from the first
    /// request sent to the last answer received.
    pub longest_window: Duration,
    /// The shortest: from the first answer received to the last request sent.
    pub shortest_window: Duration,
}

impl SustainedLoad {
    /// Asserts that what was admitted is what token buckets of `capacity`
    /// and `refill_per_second` in all (`buckets` of them, one per instance
    /// deciding alone) allow while demand always exceeds supply: their
    /// capacity plus their refill over the window the decisions fell in,
    /// with both bounds, and within 1 % of capacity + rate × the midpoint of
    /// those windows.
    pub fn assert_admitted_as_buckets(&self, capacity: f64, refill_per_second: f64, buckets: u64) {
        let admitted = self.admitted as f64;
        let most = capacity + refill_per_second * self.longest_window.as_secs_f64();
        let least =
            capacity + refill_per_second * self.shortest_window.as_secs_f64() - buckets as f64;
        // The decisions fell somewhere between the two windows; the midpoint
        // is the best single estimate of how long the buckets refilled.
        let window = (self.shortest_window + self.longest_window) / 2;
        let due = capacity + refill_per_second * window.as_secs_f64();
        let summary = format!(
            "{} admitted, {} refused over {:.2?}: due {due:.1} (ratio {:.4}), bounds {least:.1}..={most:.1}",
            self.admitted,
            self.refused,
            window,
            admitted / due
        );
        println!("{summary}");
        assert!(admitted <= most, "over the limit: {summary}");
        assert!(admitted >= least, "under the limit: {summary}");
        assert!(
            (admitted - due).abs() <= due / 100.0,
            "not within 1 % of capacity + rate x duration: {summary}"
        );
    }
}

/// Sends `rate` requests a second for `duration` to `path` with `token`,
/// round robin over `instances`, each request on its own task (an open
/// loop: a slow answer delays no other request), and counts the answers,
/// every one of which must be a 200 or a 429.
pub async fn sustained_load(
    instances: &[Running],
    path: &str,
    token: &str,
    rate: f64,
    duration: Duration,
) -> SustainedLoad {
    let urls: Vec<String> = instances
        .iter()
        .map(|instance| format!("{}{path}", base_url(instance)))
        .collect();
    sustained_load_at(&urls, token, rate, duration).await
}

/// [`sustained_load`] round robin over `urls` (one: a load balancer's).
pub async fn sustained_load_at(
    urls: &[String],
    token: &str,
    rate: f64,
    duration: Duration,
) -> SustainedLoad {
    let client = reqwest::Client::new();
    let total = (rate * duration.as_secs_f64()).round() as usize;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut requests = Vec::with_capacity(total);
    for index in 0..total {
        ticks.tick().await;
        let request = client.get(&urls[index % urls.len()]).bearer_auth(token);
        requests.push(tokio::spawn(async move {
            let sent = tokio::time::Instant::now();
            let answer = send(request).await;
            (sent, tokio::time::Instant::now(), answer)
        }));
    }
    let mut answers = Vec::with_capacity(total);
    for request in requests {
        answers.push(
            tokio::time::timeout(Duration::from_secs(20), request)
                .await
                .expect("every request is answered")
                .expect("the request task runs to its end"),
        );
    }
    let first_sent = answers.iter().map(|(sent, _, _)| *sent).min();
    let last_sent = answers.iter().map(|(sent, _, _)| *sent).max();
    let first_answered = answers.iter().map(|(_, answered, _)| *answered).min();
    let last_answered = answers.iter().map(|(_, answered, _)| *answered).max();
    let (Some(first_sent), Some(last_sent), Some(first_answered), Some(last_answered)) =
        (first_sent, last_sent, first_answered, last_answered)
    else {
        panic!("no request was sent");
    };
    let status = |code| {
        answers
            .iter()
            .filter(|(_, _, answer)| answer.status == code)
            .count() as u64
    };
    let (admitted, refused) = (status(200), status(429));
    if let Some((_, _, other)) = answers
        .iter()
        .find(|(_, _, answer)| ![200, 429].contains(&answer.status))
    {
        panic!("an answer neither admitted nor refused: {other:?}");
    }
    SustainedLoad {
        admitted,
        refused,
        longest_window: last_answered - first_sent,
        shortest_window: last_sent.saturating_duration_since(first_answered),
    }
}

/// Rate limits with `plans` (name, capacity), the first the default, each
/// refilling so slowly that nothing refills while a test runs.
pub fn slow_limits(plans: &[(&str, u32)]) -> RateLimitConfig {
    RateLimitConfig {
        default_plan: plans[0].0.to_owned(),
        plans: plans
            .iter()
            .map(|(name, capacity)| {
                let plan = PlanConfig {
                    capacity: *capacity,
                    refill_per_second: 0.001,
                    daily_quota: None,
                };
                ((*name).to_owned(), plan)
            })
            .collect(),
        ..RateLimitConfig::default()
    }
}

/// bff-web's settings for tests that watch one service's calls through the
/// product page: no related products, so the page calls each of products,
/// inventory, pricing and reviews once.
pub fn web_without_related_products() -> bff_web::WebSettings {
    bff_web::WebSettings {
        related_products: 0,
        ..bff_web::WebSettings::default()
    }
}

/// The plan of the sustained-rate tests: a 60-token burst refilled at 20
/// tokens a second. Three seconds of tokens in the bucket: demand paused by
/// a busy machine for less than that is not lost.
pub const STEADY_CAPACITY: u32 = 60;
/// See [`STEADY_CAPACITY`].
pub const STEADY_REFILL_PER_SECOND: f64 = 20.0;

/// Rate limits whose default plan is [`STEADY_CAPACITY`] at
/// [`STEADY_REFILL_PER_SECOND`].
pub fn steady_limits() -> RateLimitConfig {
    RateLimitConfig {
        plans: BTreeMap::from([(
            "standard".to_owned(),
            PlanConfig {
                capacity: STEADY_CAPACITY,
                refill_per_second: STEADY_REFILL_PER_SECOND,
                daily_quota: None,
            },
        )]),
        ..RateLimitConfig::default()
    }
}

/// A token from `demo`'s issuer for `subject` and `audience`, signed with `alg`.
pub fn issue_token(demo: &DemoServices, subject: &str, audience: &str, alg: &str) -> String {
    demo.token(&TokenRequest {
        subject: subject.to_owned(),
        audience: audience.to_owned(),
        alg: Some(alg.to_owned()),
        scope: None,
        ttl: None,
        format: None,
    })
    .expect("the demo issuer issues tokens for demo users and partners")
    .access_token
}

/// demo-services alone on free ports, with `faults` from the start.
pub async fn start_demo(faults: BTreeMap<ServiceName, FaultConfig>) -> (DemoServices, Shutdown) {
    let shutdown = Shutdown::new();
    let config = DemoConfig {
        ports: Ports::ephemeral(),
        faults,
        issuer: test_issuer(),
        webhooks: test_webhooks(),
        ..DemoConfig::default()
    };
    let demo = DemoServices::start(config, shutdown.clone())
        .await
        .expect("demo services start");
    (demo, shutdown)
}

/// Webhook deliveries in tests: retried after 50 ms, not a second.
pub fn test_webhooks() -> WebhooksConfig {
    WebhooksConfig {
        initial_backoff: HumanDuration::from_millis(50),
        ..WebhooksConfig::default()
    }
}

/// Server settings on free loopback ports, with a short drain.
pub fn ephemeral_server() -> ServerConfig {
    let mut server = ServerConfig::with_ports(0, 0);
    server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    server.drain_grace = HumanDuration::from_secs(5);
    server.drain_delay = Delay::default();
    server
}

/// Waits until a server's `/readyz` answers 200 (its signing keys are loaded).
pub async fn wait_until_ready(running: &Running) {
    wait_for_readyz(running.admin_addr()).await;
}

async fn wait_for_readyz(admin: SocketAddr) {
    let url = format!("http://{admin}/readyz");
    eventually_within("/readyz answers 200", Duration::from_secs(20), async || {
        reqwest::get(&url)
            .await
            .is_ok_and(|response| response.status() == 200)
    })
    .await;
}

/// An HTTP answer with its body parsed as JSON (`Null` when it is not JSON).
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body.
    pub body: serde_json::Value,
}

impl Answer {
    /// The problem's `code`, or empty.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    /// The `Content-Type`, or empty.
    pub fn content_type(&self) -> &str {
        self.header("content-type")
    }

    /// The value of header `name`, or empty.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    }

    /// Asserts this is a problem+json answer with `status` and `code` and a trace id.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str, context: &str) {
        assert_eq!(self.status, status, "{context}: {}", self.body);
        assert_eq!(self.content_type(), "application/problem+json", "{context}");
        assert_eq!(self.body["status"], status, "{context}");
        assert_eq!(self.code(), code, "{context}: {}", self.body);
        assert_eq!(
            self.body["trace_id"].as_str().map(str::len),
            Some(32),
            "{context}: {}",
            self.body
        );
    }
}

/// Sends `request` and reads the whole answer.
pub async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("the request is answered");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.expect("the body is readable");
    Answer {
        status,
        headers,
        body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    }
}

/// `GET url` with a bearer `token`.
pub async fn get_with_token(url: &str, token: &str) -> Answer {
    send(reqwest::Client::new().get(url).bearer_auth(token)).await
}

/// The `http://addr` base URL of a running server's public listener.
pub fn base_url(running: &Running) -> String {
    format!("http://{}", running.public_addr())
}

/// A real `redis-server` on a free loopback port, stopped when dropped.
///
/// It keeps nothing on disk, so a restart starts empty, as after a crash.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    /// Holds the port while the server is stopped (bound, not listening:
    /// connections are refused), so no other test's server can take it.
    reserved: Option<tokio::net::TcpSocket>,
}

impl RedisServer {
    /// Starts `redis-server` and waits until it answers `PING`.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut server = Self {
            port,
            child: None,
            reserved: None,
        };
        server.restart().await;
        server
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it again on the same port (after [`Self::stop`]).
    pub async fn restart(&mut self) {
        self.reserved = None;
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server runs (install Debian's redis-server, as .ci/run does)");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).expect("a valid URL");
        eventually("redis-server answers PING", async || {
            let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
                return false;
            };
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .is_ok()
        })
        .await;
    }

    /// Kills it, as a crash would. Its port stays this server's: a client
    /// is refused until [`Self::restart`].
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("redis-server is killed");
        }
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        // The server's closed connections linger on the port (TIME_WAIT).
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], self.port)))
            .expect("the stopped server's port is free to hold");
        self.reserved = Some(socket);
    }

    /// How many times each command ran since the last [`Self::reset_stats`]
    /// (`INFO commandstats`, commands run by scripts included), by lower-case name.
    pub async fn command_calls(&self) -> BTreeMap<String, u64> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut self.connection().await)
            .await
            .expect("INFO answers");
        info.lines()
            .filter_map(|line| {
                let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = stats
                    .strip_prefix("calls=")?
                    .split(',')
                    .next()?
                    .parse()
                    .ok()?;
                Some((name.to_owned(), calls))
            })
            .collect()
    }

    /// Every key it holds, with every value, as bytes (`KEYS *`, `DUMP`).
    pub async fn contents(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut connection = self.connection().await;
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut connection)
            .await
            .expect("KEYS answers");
        let mut contents = Vec::with_capacity(keys.len());
        for key in keys {
            let value: Option<Vec<u8>> = redis::cmd("DUMP")
                .arg(&key)
                .query_async(&mut connection)
                .await
                .expect("DUMP answers");
            contents.push((key, value.unwrap_or_default()));
        }
        contents
    }

    /// Zeroes the command statistics.
    pub async fn reset_stats(&self) {
        redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .exec_async(&mut self.connection().await)
            .await
            .expect("stats reset");
    }

    async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("a valid URL")
            .get_multiplexed_async_connection()
            .await
            .expect("connected")
    }

    /// Makes it answer no client for `duration` (`CLIENT PAUSE`), as an
    /// overloaded server would.
    pub async fn pause(&self, duration: Duration) {
        let mut connection = self.connection().await;
        redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(duration.as_millis() as u64)
            .arg("ALL")
            .exec_async(&mut connection)
            .await
            .expect("paused");
    }
}

/// The repository's root directory.
pub fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the repository root exists")
}

/// bff-web's product page of product 1, asked for by user 1 with a new
/// RS256 token.
pub async fn web_product_page(web: &Running, demo: &DemoServices) -> Answer {
    let token = issue_token(demo, "user-1", "bff-web", "RS256");
    get_with_token(&format!("{}/api/product-page/1", base_url(web)), &token).await
}

/// The value of metric `name` on the admin port `admin`, in the first series
/// carrying every label of `labels`; `None` while there is no such series.
pub async fn metric(admin: SocketAddr, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines().find_map(|line| {
        let (series, value) = line.strip_prefix(name)?.rsplit_once(' ')?;
        let labelled = series.is_empty() || series.starts_with('{');
        let matches = labels
            .iter()
            .all(|(label, wanted)| series.contains(&format!("{label}=\"{wanted}\"")));
        (labelled && matches).then(|| value.parse().expect("a metric value is a number"))
    })
}

/// Polls `check` every 50 ms until it holds, failing after ten seconds.
pub async fn eventually<F: AsyncFnMut() -> bool>(what: &str, check: F) {
    eventually_within(what, Duration::from_secs(10), check).await;
}

/// Polls `check` every 50 ms until it holds, failing after `patience`: the
/// one way the tests wait for a state they cannot be told of.
pub async fn eventually_within<F: AsyncFnMut() -> bool>(
    what: &str,
    patience: Duration,
    mut check: F,
) {
    let deadline = tokio::time::Instant::now() + patience;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        // The poll interval: the one pause of the suite's waits, between
        // two looks at the state waited for.
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// How often [`eventually_within`] looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Serves `router` on a free loopback port for the rest of the test: a
/// stand-in service or collector written in the test itself.
pub async fn serve_on_free_port(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// Writes `contents` to the file `name` in this test process's own temporary
/// directory and returns its path.
pub fn write_temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bff-platform-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("file written");
    path
}

/// The path of a workspace binary built next to the test executables.
///
/// `scripts/test` builds every binary before running the tests.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("tests run from target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (scripts/test does)",
        path.display()
    );
    path
}

/// A BFF binary running as a child process; killed if dropped while running.
#[derive(Debug)]
pub struct BffProcess {
    child: Child,
    public: SocketAddr,
    admin: SocketAddr,
    /// The JSON log lines the process writes (but `listening`).
    logs: tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
}

impl BffProcess {
    /// Starts BFF `B`'s binary configured through the environment to call
    /// `demo`'s services and JWKS, with `extra` variables on top.
    pub async fn spawn_against<B: Bff>(demo: &DemoServices, extra: &[(&str, &str)]) -> Self {
        Self::spawn_against_with_args::<B>(demo, &[], extra).await
    }

    /// [`Self::spawn_against`] with command-line `args` (`--config FILE`).
    pub async fn spawn_against_with_args<B: Bff>(
        demo: &DemoServices,
        args: &[&str],
        extra: &[(&str, &str)],
    ) -> Self {
        let mut env: Vec<(String, String)> = B::SERVICES
            .iter()
            .filter_map(|service| {
                let variable =
                    format!("BFF_DOWNSTREAM__{}__URL", service.name.to_ascii_uppercase());
                Some((variable, demo.url(ServiceName::named(service.name)?)))
            })
            .collect();
        env.push(("BFF_AUTH__JWKS__URL".to_owned(), demo.jwks_url()));
        env.extend(
            extra
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned())),
        );
        Self::spawn_with_args(B::NAME, args, &env).await
    }

    /// Starts binary `name` with `env` (on top of free loopback ports) and
    /// waits for its `listening` log line.
    pub async fn spawn(name: &str, env: &[(String, String)]) -> Self {
        Self::spawn_with_args(name, &[], env).await
    }

    /// [`Self::spawn`] with command-line `args` (`--config FILE`).
    pub async fn spawn_with_args(name: &str, args: &[&str], env: &[(String, String)]) -> Self {
        let mut command = Command::new(binary(name));
        command
            .args(args)
            .env_clear()
            .env("BFF_SERVER__LISTEN", "127.0.0.1:0")
            .env("BFF_SERVER__ADMIN_LISTEN", "127.0.0.1:0")
            .env("BFF_SERVER__DRAIN_DELAY", "0s")
            .env("BFF_OBSERVABILITY__LOG_FORMAT", "json")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("the binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        // Every event is kept for `log_event`, those before `listening` too:
        // background work (a Redis connection, say) may log first.
        let (log_sender, logs) = tokio::sync::mpsc::unbounded_channel();
        let listening = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.expect("stdout is readable") {
                let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if event["message"] == "listening" {
                    return event;
                }
                let _ = log_sender.send(event);
            }
            panic!("{name} exited before listening");
        })
        .await
        .expect("the binary listens within 20s");
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(event) = serde_json::from_str(&line) {
                    // The receiver may be gone; the pipe still has to be drained.
                    let _ = log_sender.send(event);
                }
            }
        });
        let addr = |field: &str| {
            listening[field]
                .as_str()
                .and_then(|addr| addr.parse().ok())
                .expect("the listening line has the addresses")
        };
        Self {
            public: addr("public"),
            admin: addr("admin"),
            child,
            logs,
        }
    }

    /// The public listener.
    pub fn public(&self) -> SocketAddr {
        self.public
    }

    /// The admin listener.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// The next log event for which `matches` holds, within 10 seconds.
    pub async fn log_event(
        &mut self,
        mut matches: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let search = async {
            while let Some(event) = self.logs.recv().await {
                if matches(&event) {
                    return event;
                }
            }
            panic!("the process exited before logging the event");
        };
        tokio::time::timeout(Duration::from_secs(10), search)
            .await
            .expect("the event is logged within 10s")
    }

    /// Waits until `/readyz` answers 200 (signing keys loaded).
    pub async fn wait_until_ready(&self) {
        wait_for_readyz(self.admin).await;
    }

    /// Sends SIGTERM.
    pub async fn terminate(&self) {
        self.signal("TERM").await;
    }

    /// Sends the signal `name` (`TERM`, `HUP`) to the process.
    pub async fn signal(&self, name: &str) {
        let pid = self.child.id().expect("the child is running");
        let status = Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .await
            .expect("kill runs");
        assert!(status.success(), "SIG{name} delivered");
    }

    /// Stops the process (SIGTERM) and returns every log event it wrote
    /// that was not read yet (but `listening`).
    pub async fn stop_and_read_logs(mut self) -> Vec<serde_json::Value> {
        self.terminate().await;
        let mut events = Vec::new();
        let reading = async {
            while let Some(event) = self.logs.recv().await {
                events.push(event);
            }
        };
        tokio::time::timeout(Duration::from_secs(30), reading)
            .await
            .expect("the process closes its output within 30s");
        let status = self.wait().await;
        assert!(status.success(), "a clean exit: {status}");
        events
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("the process is killed");
    }

    /// Waits for the process to exit.
    pub async fn wait(mut self) -> ExitStatus {
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the process exits within 30s")
            .expect("the exit status is readable")
    }
}
