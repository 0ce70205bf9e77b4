//! The fleet on one machine: three bff-web processes behind Debian's
//! haproxy in TCP mode (health checks on each admin port's `/readyz`), one
//! redis-server and demo-services, under a steady load sent through the
//! balancer. A rolling restart (SIGTERM, drain, start again on the same
//! ports) fails no request; a SIGKILL fails at most the requests the killed
//! instance had under way, and it rejoins when started again; the global
//! limit holds across the three as one bucket, also after Redis restarted
//! under load, the outage policy deciding meanwhile.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use demo_services::{DemoServices, FaultConfig, ServiceName};
use gateway_core::config::HumanDuration;
use platform_tests::{
    BffProcess, RedisServer, STEADY_CAPACITY, STEADY_REFILL_PER_SECOND, eventually_within,
    issue_token, metric, start_demo, sustained_load_at, write_temp_file,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::UnixStream,
    process::{Child, Command},
    task::JoinHandle,
};

/// How long a change of the fleet may take to show (a start, a drain, a
/// health check): generous for a loaded two-core machine.
const PATIENCE: Duration = Duration::from_secs(30);
const PAGE: &str = "/api/product-page/7";

/// One bff-web process of the fleet, started again on the same ports.
struct Instance {
    process: Option<BffProcess>,
    public: SocketAddr,
    admin: SocketAddr,
    env: Vec<(String, String)>,
}

impl Instance {
    async fn start(demo: &DemoServices, env: &[(String, String)]) -> Self {
        let process = spawn(demo, env).await;
        Self {
            public: process.public(),
            admin: process.admin(),
            process: Some(process),
            env: env.to_vec(),
        }
    }

    /// Starts it again where it listened before.
    async fn restart(&mut self, demo: &DemoServices) {
        let mut env = self.env.clone();
        env.push(("BFF_SERVER__LISTEN".to_owned(), self.public.to_string()));
        env.push((
            "BFF_SERVER__ADMIN_LISTEN".to_owned(),
            self.admin.to_string(),
        ));
        self.process = Some(spawn(demo, &env).await);
    }

    fn process(&mut self) -> BffProcess {
        self.process.take().expect("the instance runs")
    }

    /// Whether it served a request through `haproxy`: new connections
    /// (the load's own stay where they are, as keep-alive connections
    /// behind an L4 balancer do) until one reaches it.
    async fn serves_through(&self, haproxy: &Haproxy, token: &str) -> bool {
        let fresh = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("a client");
        let answered = fresh
            .get(haproxy.url(PAGE))
            .bearer_auth(token)
            .send()
            .await
            .is_ok_and(|response| response.status() == 200);
        answered && self.served().await > 0.0
    }

    async fn served(&self) -> f64 {
        metric(
            self.admin,
            "http_server_request_duration_seconds_count",
            &[("status", "200")],
        )
        .await
        .unwrap_or(0.0)
    }
}

async fn spawn(demo: &DemoServices, env: &[(String, String)]) -> BffProcess {
    let env: Vec<(&str, &str)> = env
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    BffProcess::spawn_against::<bff_web::Web>(demo, &env).await
}

/// Three instances sharing `redis`, each with `extra` settings, draining
/// for a second on SIGTERM so that the balancer's checks see it first.
async fn three_instances(
    demo: &DemoServices,
    redis: &RedisServer,
    extra: &[(&str, &str)],
) -> Vec<Instance> {
    let mut env = vec![
        ("BFF_REDIS__URL".to_owned(), redis.url()),
        ("BFF_SERVER__DRAIN_DELAY".to_owned(), "1s".to_owned()),
    ];
    env.extend(
        extra
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned())),
    );
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(Instance::start(demo, &env).await);
    }
    instances
}

const UNLIMITED: [(&str, &str); 2] = [
    ("BFF_RATE_LIMIT__PLANS__STANDARD__CAPACITY", "1000000000"),
    (
        "BFF_RATE_LIMIT__PLANS__STANDARD__REFILL_PER_SECOND",
        "1000000000",
    ),
];

/// Debian's haproxy in TCP mode, round robin over the instances, each
/// checked every 100 ms on its admin port's `/readyz`.
struct Haproxy {
    _process: Child,
    addr: SocketAddr,
    socket: PathBuf,
}

impl Haproxy {
    /// Starts it in front of `instances`, at most `per_server` connections
    /// each, and waits until it sees every instance up.
    async fn start(name: &str, instances: &[Instance], per_server: u32) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let socket = write_temp_file(&format!("{name}-haproxy.sock"), "");
        std::fs::remove_file(&socket).expect("the socket's path is free");
        let servers: String = instances
            .iter()
            .enumerate()
            .map(|(index, instance)| {
                format!(
                    "    server web{index} {} check port {}\n",
                    instance.public,
                    instance.admin.port()
                )
            })
            .collect();
        let config = format!(
            "global\n    stats socket {socket} mode 600 level admin\n    maxconn 4000\n\n\
             defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 30s\n    \
             timeout server 30s\n    timeout queue 10s\n    retries 3\n    option redispatch\n\n\
             frontend fleet\n    bind 127.0.0.1:{port}\n    default_backend bffs\n\n\
             backend bffs\n    balance roundrobin\n    option httpchk GET /readyz\n    \
             http-check expect status 200\n    \
             default-server inter 100ms fall 1 rise 1 maxconn {per_server}\n{servers}",
            socket = socket.display()
        );
        let file = write_temp_file(&format!("{name}-haproxy.cfg"), &config);
        let process = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("haproxy runs (install Debian's haproxy, as .ci/run does)");
        let haproxy = Self {
            _process: process,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            socket,
        };
        let count = instances.len();
        eventually_within("haproxy sees every instance up", PATIENCE, async || {
            haproxy.statuses().await == vec!["UP"; count]
        })
        .await;
        haproxy
    }

    /// The status of each server, in order (`UP`, `DOWN`...), from the
    /// runtime API; empty while haproxy does not answer yet.
    async fn statuses(&self) -> Vec<String> {
        let Ok(mut api) = UnixStream::connect(&self.socket).await else {
            return Vec::new();
        };
        if api.write_all(b"show stat\n").await.is_err() {
            return Vec::new();
        }
        let mut csv = String::new();
        let _ = api.read_to_string(&mut csv).await;
        let mut lines = csv.lines();
        let Some(header) = lines.next() else {
            return Vec::new();
        };
        let columns: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
        let column = |name: &str| columns.iter().position(|column| *column == name);
        let (Some(proxy), Some(server), Some(status)) =
            (column("pxname"), column("svname"), column("status"))
        else {
            return Vec::new();
        };
        lines
            .map(|line| line.split(',').collect::<Vec<_>>())
            .filter(|fields| {
                fields.get(proxy) == Some(&"bffs") && fields[server].starts_with("web")
            })
            .map(|fields| fields[status].to_owned())
            .collect()
    }

    /// Waits until server `index`'s status starts with `status` (`UP`, `DOWN`).
    async fn wait_for(&self, index: usize, status: &str, what: &str) {
        eventually_within(what, PATIENCE, async || {
            self.statuses()
                .await
                .get(index)
                .is_some_and(|current| current.starts_with(status))
        })
        .await;
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// What a steady load got.
#[derive(Debug, Default)]
struct Outcomes {
    admitted: AtomicU64,
    limited: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Outcomes {
    fn answered(&self) -> u64 {
        self.admitted.load(Ordering::SeqCst) + self.limited.load(Ordering::SeqCst)
    }

    fn failures(&self) -> Vec<String> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// `rate` requests a second to `url`, each on its own task, through one
/// pooled keep-alive client (as a BFF's clients send them), until stopped.
struct SteadyLoad {
    outcomes: Arc<Outcomes>,
    running: Arc<AtomicBool>,
    sender: JoinHandle<u64>,
}

impl SteadyLoad {
    fn start(url: String, token: String, rate: f64) -> Self {
        let outcomes = Arc::new(Outcomes::default());
        let running = Arc::new(AtomicBool::new(true));
        let sender = tokio::spawn({
            let (outcomes, running) = (outcomes.clone(), running.clone());
            async move {
                let client = reqwest::Client::new();
                let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
                let mut requests = Vec::new();
                while running.load(Ordering::SeqCst) {
                    ticks.tick().await;
                    let request = client
                        .get(&url)
                        .bearer_auth(&token)
                        .timeout(Duration::from_secs(15));
                    let outcomes = outcomes.clone();
                    requests.push(tokio::spawn(async move {
                        match request.send().await {
                            Ok(response) if response.status() == 200 => {
                                let _ = response.bytes().await;
                                outcomes.admitted.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(response) if response.status() == 429 => {
                                outcomes.limited.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(response) => outcomes
                                .failures
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .push(format!("status {}", response.status())),
                            Err(error) => outcomes
                                .failures
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .push(format!("{error:?}")),
                        }
                    }));
                }
                let sent = requests.len() as u64;
                for request in requests {
                    request.await.expect("the request task runs to its end");
                }
                sent
            }
        });
        Self {
            outcomes,
            running,
            sender,
        }
    }

    /// Waits until `more` answers came in on top of those so far: the load
    /// goes on through whatever happened.
    async fn wait_for_answers(&self, more: u64) {
        let target = self.outcomes.answered() + more;
        eventually_within("the load is answered", PATIENCE, async || {
            self.outcomes.answered() >= target
        })
        .await;
    }

    /// Stops sending, waits for every answer; returns what was sent and got.
    async fn stop(self) -> (u64, Arc<Outcomes>) {
        self.running.store(false, Ordering::SeqCst);
        let sent = self.sender.await.expect("the load runs to its end");
        (sent, self.outcomes)
    }
}

#[tokio::test]
async fn a_rolling_restart_behind_haproxy_fails_no_request() {
    let redis = RedisServer::start().await;
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let mut fleet = three_instances(&demo, &redis, &UNLIMITED).await;
    let haproxy = Haproxy::start("rolling", &fleet, 100).await;
    let token = issue_token(&demo, "user-1", "bff-web", "ES256");
    let load = SteadyLoad::start(haproxy.url(PAGE), token.clone(), 100.0);
    load.wait_for_answers(100).await;

    for (index, instance) in fleet.iter_mut().enumerate() {
        let process = instance.process();
        process.terminate().await;
        haproxy
            .wait_for(index, "DOWN", "the balancer sees the draining instance")
            .await;
        assert!(
            process.wait().await.success(),
            "a clean exit after the drain"
        );
        load.wait_for_answers(50).await;
        instance.restart(&demo).await;
        haproxy
            .wait_for(index, "UP", "the restarted instance rejoins")
            .await;
        let instance = &*instance;
        eventually_within("the restarted instance serves", PATIENCE, async || {
            instance.serves_through(&haproxy, &token).await
        })
        .await;
    }
    load.wait_for_answers(100).await;

    let (sent, outcomes) = load.stop().await;
    let failures = outcomes.failures();
    println!(
        "rolling restart: {sent} sent, {} admitted, {} failed",
        outcomes.admitted.load(Ordering::SeqCst),
        failures.len()
    );
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert_eq!(
        outcomes.admitted.load(Ordering::SeqCst),
        sent,
        "every request admitted"
    );
    assert!(sent >= 400, "the load ran throughout: {sent} sent");
    shutdown.trigger();
}

#[tokio::test]
async fn a_killed_instance_fails_at_most_its_requests_under_way_and_rejoins_when_started_again() {
    let redis = RedisServer::start().await;
    // Answers take a while, so requests are under way when the kill comes.
    let (demo, shutdown) = start_demo(BTreeMap::from([(
        ServiceName::Pricing,
        FaultConfig {
            latency: Some(HumanDuration::from_millis(150)),
            ..FaultConfig::default()
        },
    )]))
    .await;
    let mut fleet = three_instances(&demo, &redis, &UNLIMITED).await;
    // At most this many connections, so requests, on one instance at once.
    const PER_SERVER: u32 = 4;
    let haproxy = Haproxy::start("kill", &fleet, PER_SERVER).await;
    let token = issue_token(&demo, "user-1", "bff-web", "ES256");
    let load = SteadyLoad::start(haproxy.url(PAGE), token.clone(), 40.0);
    load.wait_for_answers(40).await;

    fleet[1].process().kill().await;
    haproxy
        .wait_for(1, "DOWN", "the balancer sees the killed instance")
        .await;
    load.wait_for_answers(40).await;
    let failed_while_down = outcomes_failures(&load);
    fleet[1].restart(&demo).await;
    haproxy
        .wait_for(1, "UP", "the restarted instance rejoins")
        .await;
    let restarted = &fleet[1];
    eventually_within("the restarted instance serves", PATIENCE, async || {
        restarted.serves_through(&haproxy, &token).await
    })
    .await;

    let (sent, outcomes) = load.stop().await;
    let failures = outcomes.failures();
    println!(
        "kill: {sent} sent, {} admitted, {} failed: {failures:?}",
        outcomes.admitted.load(Ordering::SeqCst),
        failures.len()
    );
    assert!(
        failures.len() <= PER_SERVER as usize,
        "at most the killed instance's {PER_SERVER} connections fail: {failures:?}"
    );
    assert_eq!(
        failures.len(),
        failed_while_down,
        "nothing failed once the balancer knew"
    );
    assert_eq!(
        outcomes.admitted.load(Ordering::SeqCst) + failures.len() as u64,
        sent
    );
    shutdown.trigger();
}

fn outcomes_failures(load: &SteadyLoad) -> usize {
    load.outcomes.failures().len()
}

#[tokio::test]
async fn the_global_limit_holds_across_the_fleet_and_again_after_redis_restarted_under_load() {
    let mut redis = RedisServer::start().await;
    let (demo, shutdown) = start_demo(BTreeMap::new()).await;
    let capacity = STEADY_CAPACITY.to_string();
    let refill = STEADY_REFILL_PER_SECOND.to_string();
    let fleet = three_instances(
        &demo,
        &redis,
        &[
            ("BFF_RATE_LIMIT__PLANS__STANDARD__CAPACITY", &capacity),
            (
                "BFF_RATE_LIMIT__PLANS__STANDARD__REFILL_PER_SECOND",
                &refill,
            ),
            // A debug build on two cores can take tens of milliseconds.
            ("BFF_RATE_LIMIT__DECISION_TIMEOUT", "2s"),
            ("BFF_RATE_LIMIT__EXPECTED_INSTANCES", "3"),
        ],
    )
    .await;
    let haproxy = Haproxy::start("limit", &fleet, 100).await;
    let url = haproxy.url(PAGE);
    let overload = 5.0 * STEADY_REFILL_PER_SECOND;

    let token = issue_token(&demo, "user-1", "bff-web", "ES256");
    sustained_load_at(
        std::slice::from_ref(&url),
        &token,
        overload,
        Duration::from_secs(6),
    )
    .await
    .assert_admitted_as_buckets(f64::from(STEADY_CAPACITY), STEADY_REFILL_PER_SECOND, 1);

    // Redis restarts under load: the outage policy decides meanwhile, and
    // every instance goes back to Redis by itself.
    let other = issue_token(&demo, "user-2", "bff-web", "ES256");
    let load = SteadyLoad::start(url.clone(), other, overload);
    load.wait_for_answers(50).await;
    redis.stop().await;
    for instance in &fleet {
        eventually_within("the outage policy decides", PATIENCE, async || {
            metric(instance.admin, "rate_limit_backend", &[("mode", "local")]).await == Some(1.0)
        })
        .await;
    }
    load.wait_for_answers(50).await;
    redis.restart().await;
    for instance in &fleet {
        eventually_within("back to deciding in Redis", PATIENCE, async || {
            metric(instance.admin, "rate_limit_backend", &[("mode", "redis")]).await == Some(1.0)
        })
        .await;
    }
    let (sent, outcomes) = load.stop().await;
    let failures = outcomes.failures();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(outcomes.answered(), sent);

    let third = issue_token(&demo, "user-3", "bff-web", "ES256");
    sustained_load_at(&[url], &third, overload, Duration::from_secs(6))
        .await
        .assert_admitted_as_buckets(f64::from(STEADY_CAPACITY), STEADY_REFILL_PER_SECOND, 1);
    shutdown.trigger();
}
