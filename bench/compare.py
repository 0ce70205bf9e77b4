#!/usr/bin/env python3
"""Every scenario against us and the peers a team would run instead, in one
run on the same demo-services; writes bench/results/latest.json (read by
bench/report.py). Started by bench/run.sh, which builds and installs first.

Scenarios (see bench/README.md, "Peers"):
- passthrough: GET /products/42 straight to the service, through nginx
  (no auth), haproxy 2.6 verifying RS256 and HS256 tokens with a stick-table
  limit, and bff-web's [[routes]] entry (RS256, in-process and Redis limiter);
- page and page-20ms: bff-web's product page (the product, its reviews, 8
  related products, then one batch call each for the prices and the stock of
  all nine), at 0 and 20 ms of service latency, against an Express BFF
  serving the same page (bench/peers/express-bff);
- listing and listing-20ms: a category's listing page (24 products with
  their prices and stock, the category's facets, a signed next cursor),
  bff-web against the same Express BFF;
- dashboard and dashboard-20ms: the signed-in user's dashboard (profile, five
  newest orders, six recommendations, then one batch call for their products
  and one for the recommendations' prices), bff-web against Express;
- mobile, mobile-listing and mobile-me: bff-mobile's three screens as GraphQL
  queries (the product screen with its price, stock, rating and 3 reviews; a
  listing of 20 products with their prices and stock, a Relay connection; the
  signed-in user's profile and 10 orders with their lines' products), against
  Apollo Server with DataLoader serving the same schema
  (bench/peers/apollo-mobile); each sent with its text, and as an automatic
  persisted query (APQ: the SHA-256 alone, the text registered once before
  measuring).

In the web page and mobile scenarios ours runs with every service's response
cache off (`bff-web-no-cache`, `bff-mobile-no-cache`: every call made afresh,
as the peer, which has no cache, makes it); `page` also runs it with the cache
on (`bff-web`). Every system of a page or screen scenario must answer the same
JSON document (compared once per system, cursors aside, which each system
signs with its own key; a GraphQL answer must carry no `errors`), and for each
system one request with `Accept-Encoding: br` records the bytes of its answer
on the wire. With the `mobile` scenario the run also records the bytes of the
mobile product screen against the web product page of the same product
(`screen_bytes`: one request each, uncompressed and with gzip).

Pinning: every system under test runs alone on CPU 0 with one worker (nginx
worker_processes 1, haproxy nbthread 1, Node's one event loop, our tokio
runtime sizing itself from the affinity mask to one worker); the load
generators, demo-services and Redis share CPU 1.

For each system: idle RSS, then closed-loop wrk (-t1, CONNECTIONS) for the
maximum rate and the CPU time the system's processes spent per request
(`cpu_us_per_request`: user + system seconds of its process tree over the run,
per request); then one request with `Accept-Encoding: br` for the bytes on the
wire (`wire`);
then oha open-loop at 25/50/75 % of the weakest system's maximum in the
scenario, with latency correction (coordinated omission), for p50/p99/p99.9;
then 1,000 open connections, each sending a request a second, for RSS. Any non-2xx answer
or socket error is recorded and fails the run.

With --flamegraphs DIR it measures nothing: it starts each of our systems
of the scenarios alone, as above, samples its call stacks with perf under
closed-loop load, and draws them into DIR/SCENARIO-SYSTEM.svg (inferno),
with DIR/README.md listing them.
"""

import argparse
import datetime
import hashlib
import http.client
import io
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "bench", "peers")
RELEASE = os.path.join(ROOT, "target", "release")
SYSTEM_CPU, LOAD_CPU = "0", "1"
OHA = shutil.which("oha") or os.path.expanduser("~/.cargo/bin/oha")
INFERNO_COLLAPSE, INFERNO_FLAMEGRAPH = (shutil.which(tool) or os.path.expanduser(f"~/.cargo/bin/{tool}")
                                        for tool in ("inferno-collapse-perf", "inferno-flamegraph"))
# Samples per second; not a multiple of the kernel's tick, so sampling does not beat with timers.
PERF_HZ = 499
LOAD_FRACTIONS = (0.25, 0.5, 0.75)
MANY_CONNECTIONS = 1000
# Node runs at a third of its rate for its first seconds (its JIT warming up).
WARM_UP_SECONDS = 8
SERVICE_PORTS = dict(auth=17000, products=17001, inventory=17002, pricing=17003,
                     reviews=17004, users=17005, orders=17006, recommendations=17007, webhooks=17008)
# A plan no run reaches: the limiter decides every request and lets it through. bff-mobile also charges a
# query its cost beyond the route's token (`[mobile] complexity_per_token = 10` points a token: the 20-item
# listing below costs 281 points, 29 tokens); a bucket of 10^9 refilled at 10^9 a second pays for that too.
UNLIMITED_PLAN = {"BFF_RATE_LIMIT__PLANS__STANDARD__CAPACITY": "1000000000",
                  "BFF_RATE_LIMIT__PLANS__STANDARD__REFILL_PER_SECOND": "1000000000"}
# bff-mobile's screens against Apollo: the scenario, its GraphQL query (bff-mobile/schema.graphql).
MOBILE_SCREENS = {
    # The product screen: one product with its price, stock, rating and 3 newest reviews.
    "mobile": "{ product(id: 42) { name images price { amountMinor currency formatted } stock"
              " rating { average count } topReviews(first: 3) { rating title body } } }",
    # A category's listing: 20 products with their prices and stock, cheapest first.
    "mobile-listing": '{ products(first: 20, category: "audio", sort: PRICE_ASC) { edges { cursor node { id name'
                      " image price { amountMinor currency formatted } stock } }"
                      " pageInfo { hasNextPage endCursor } } }",
    # The account screen: the profile and the 10 newest orders, with their lines' products.
    "mobile-me": "{ me { profile { name email tier } orders(first: 10) { edges { node { id status"
                 " total { formatted } lines { quantity product { name image } } } } } } }",
}
# What a phone sends: amounts come back written out in German (money.rs; Intl.NumberFormat in Apollo's).
MOBILE_LANGUAGE = "de-DE,de;q=0.9,en;q=0.8"
# The account screen's user is the dashboard's (DASHBOARD_USER, below); every query needs products:read.
MOBILE_ME_SCOPES = "products:read profile:read orders:read"
# bff-web's services: every one its pages call.
WEB_SERVICES = ("products", "inventory", "pricing", "reviews", "users", "orders", "recommendations")
MOBILE_SERVICES = ("products", "inventory", "pricing", "reviews", "users", "orders")
# bff-mobile's response cache off for every service: every call made afresh, as Apollo, which keeps
# nothing, makes it (the services mark products and listings cacheable).
MOBILE_CACHE_OFF = {f"BFF_DOWNSTREAM__{name.upper()}__CACHE__ENABLED": "false" for name in MOBILE_SERVICES}
# bff-web's response cache off for every service: products, listings, facets and related products are
# `public, max-age=60`, users and recommendations `private`; the Express peer keeps nothing.
WEB_CACHE_OFF = {f"BFF_DOWNSTREAM__{name.upper()}__CACHE__ENABLED": "false" for name in WEB_SERVICES}
# The pages of bff-web measured against the Express peer, each at 0 ms and (SCENARIO-20ms) at 20 ms of
# service latency: the scenario, its path on both.
WEB_PAGES = {"page": "/api/product-page/42",
             "listing": "/api/categories/audio/products?limit=24",
             "dashboard": "/api/me/dashboard"}
# The dashboard's user: five orders with twelve lines in all (the five the dashboard shows) and six
# recommendations, so its second round asks for 18 products and six prices (seed 42, the default).
DASHBOARD_USER = "user-14"
# What the dashboard needs, and nothing more.
DASHBOARD_SCOPES = "profile:read orders:read"
LATENCY_SUFFIX = "-20ms"
# bff-partner's product feed against the Express peer serving the same JSON: 20 products in id order with
# their prices and stock (one batch call per service), a signed next cursor. Nothing on the path is cached:
# the feed's pages and the batches carry no Cache-Control.
PARTNER_FEED = "/v1/products?limit=20"
PARTNER_SERVICES = ("products", "inventory", "pricing", "orders", "webhooks")


class Failure(Exception):
    """A run that cannot be a result (an error answer, a system that never started)."""


# --- processes ---------------------------------------------------------------

started = []


def start(command, env=None, cpu=SYSTEM_CPU, cwd=ROOT, stdout=subprocess.DEVNULL):
    """Starts COMMAND pinned to CPU with ENV added; stopped at exit."""
    process = subprocess.Popen(["taskset", "-c", cpu, *command], cwd=cwd,
                               env={**os.environ, **(env or {})}, stdout=stdout,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    started.append(process)
    return process


def stop(process):
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


def stop_all():
    while started:
        stop(started.pop())


def request(url, headers=None, body=None, timeout=2):
    """The status and body of one request (status 0 when it could not be made)."""
    req = urllib.request.Request(url, data=body, headers=headers or {},
                                 method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, b""
    except OSError:
        return 0, b""


def wait_ok(url, headers=None, body=None, seconds=30):
    """Waits until URL answers 200; a GraphQL answer must also carry no errors."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, answer = request(url, headers, body)
        if status == 200:
            if body and json.loads(answer).get("errors"):
                raise Failure(f"{url} answered with errors: {answer[:300]!r}")
            return
        time.sleep(0.1)
    raise Failure(f"{url} never answered 200")


def tree(pid):
    """PID and its descendants (nginx's workers, a shell's children)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents.setdefault(int(stat.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
            except OSError:
                pass
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def memory_mib(pids, field):
    """The sum of FIELD (VmRSS, VmHWM) over PIDS, in MiB."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as status:
            total += int(re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.M).group(1))
    return total / 1024


# --- load --------------------------------------------------------------------

def millis(text):
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(target, seconds, connections):
    command = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
               "--latency", "--timeout", "10s"]
    for name, value in target["headers"].items():
        command += ["-H", f"{name}: {value}"]
    if target.get("lua"):
        command += ["-s", target["lua"]]
    report = subprocess.run(command + [target["url"]], capture_output=True, text=True,
                            check=True).stdout
    if not re.search(r"^\s+50%\s+[\d.]+\w+", report, re.M):
        raise Failure(f"{target['url']}: no answers measured:\n{report}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", report)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", report)
    return {
        "requests": int(re.search(r"(\d+) requests in", report).group(1)),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", report).group(1)),
        # Anchored: "75.50%" in the thread statistics also ends in "50%".
        "p50_ms": millis(re.search(r"^\s+50%\s+(\S+)", report, re.M).group(1)),
        "p99_ms": millis(re.search(r"^\s+99%\s+(\S+)", report, re.M).group(1)),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(int(n) for n in errors.groups()) if errors else 0,
    }


def oha(target, seconds, rate, connections):
    command = ["taskset", "-c", LOAD_CPU, OHA, "-z", f"{seconds}s", "-c", str(connections),
               "-q", str(rate), "-w", "--latency-correction", "--no-tui", "--output-format", "json"]
    for name, value in target["headers"].items():
        command += ["-H", f"{name}: {value}"]
    if target.get("body"):
        command += ["-m", "POST", "-d", target["body"], "-T", "application/json"]
    report = json.loads(subprocess.run(command + [target["url"]], capture_output=True,
                                       text=True, check=True).stdout)
    statuses = report["statusCodeDistribution"]
    percentiles = report["latencyPercentiles"]
    return {
        "rate": rate,
        "rps": report["summary"]["requestsPerSec"],
        "p50_ms": percentiles["p50"] * 1000,
        "p99_ms": percentiles["p99"] * 1000,
        "p999_ms": percentiles["p99.9"] * 1000,
        "non_2xx": sum(n for code, n in statuses.items() if not code.startswith("2")),
        "socket_errors": sum(report["errorDistribution"].values()),
        "errors": report["errorDistribution"],
    }


class _Received(io.RawIOBase):
    """A socket read through http.client, counting the bytes received."""

    def __init__(self, sock):
        self.sock, self.count = sock, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        received = self.sock.recv_into(buffer)
        self.count += received
        return received

    def makefile(self, _mode):
        return io.BufferedReader(self)


def on_the_wire(target, encoding):
    """One request for TARGET with Accept-Encoding: ENCODING: what its answer took on the wire.

    `bytes` counts every byte received (status line, headers, body as sent:
    still compressed, with any chunk framing); `body_bytes` the body alone,
    as sent; `request_bytes` what was sent (request line, headers, body).
    Returns that record and the body.
    """
    url = urllib.parse.urlsplit(target["url"])
    body = target.get("body", "").encode()
    head = [f"{'POST' if body else 'GET'} {url.path}{'?' + url.query if url.query else ''} HTTP/1.1",
            f"Host: {url.netloc}", f"Accept-Encoding: {encoding}",
            *(f"{name}: {value}" for name, value in target["headers"].items())]
    if body:
        head.append(f"Content-Length: {len(body)}")
    sent = "\r\n".join(head + ["", ""]).encode() + body
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(sent)
        received = _Received(sock)
        answer = http.client.HTTPResponse(received, method="POST" if body else "GET")
        answer.begin()
        content = answer.read()
        if answer.status != 200:
            raise Failure(f"{target['url']} answered {answer.status} to one request")
        return {"accept_encoding": encoding, "bytes": received.count, "body_bytes": len(content),
                "content_encoding": answer.getheader("Content-Encoding", "identity"),
                "request_bytes": len(sent)}, content


def wire(target):
    """The bytes of one answer on the wire with br (`bytes`, `body_bytes`), and its JSON's size
    uncompressed (`identity_body_bytes`); with the uncompressed body."""
    record, _ = on_the_wire(target, "br")
    plain, content = on_the_wire(target, "identity")
    return {**record, "identity_body_bytes": plain["body_bytes"]}, content


def comparable(content):
    """A page's JSON as systems must agree on it: a listing's cursor is each system's own (signed with
    its key), so only whether there is one is compared."""
    document = json.loads(content)
    if isinstance(document, dict) and isinstance(document.get("pageInfo"), dict):
        document["pageInfo"]["nextCursor"] = document["pageInfo"].get("nextCursor") is not None
    if isinstance(document, dict) and "next_cursor" in document:  # bff-partner's feed
        document["next_cursor"] = document["next_cursor"] is not None
    return document


def comparable_graphql(label, content):
    """A GraphQL answer as systems must agree on it. It must carry no `errors`. Cursors are each system's
    own (signed with its key), so only whether there is one is compared."""
    document = json.loads(content)
    if document.get("errors"):
        raise Failure(f"{label} answered with errors: {content[:300]!r}")

    def normal(value, key=None):
        if key in ("cursor", "startCursor", "endCursor"):
            return value is not None
        if isinstance(value, dict):
            return {name: normal(item, name) for name, item in value.items()}
        if isinstance(value, list):
            return [normal(item) for item in value]
        return value
    return normal(document)


def check(label, run):
    if run["non_2xx"] or run["socket_errors"]:
        raise Failure(f"{label}: {run['non_2xx']} non-2xx answers, {run['socket_errors']} socket errors"
                      f" {run.get('errors', '')}")


# --- the systems -------------------------------------------------------------

class Setup:
    """What every system needs: the run directory, keys, tokens."""

    def __init__(self, run_dir):
        self.run_dir = run_dir
        for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(run_dir, name), exist_ok=True)
        self.rsa_key = os.path.join(run_dir, "issuer.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                        "-out", self.rsa_key], check=True, capture_output=True)
        self.rsa_public = os.path.join(run_dir, "issuer.pub.pem")
        subprocess.run(["openssl", "pkey", "-in", self.rsa_key, "-pubout", "-out", self.rsa_public],
                       check=True)
        self.secret = subprocess.run(["openssl", "rand", "-hex", "32"], capture_output=True,
                                     text=True, check=True).stdout.strip()
        self.configure("nginx.conf")
        self.configure("haproxy.cfg")
        self.routes = os.path.join(run_dir, "routes.toml")
        with open(self.routes, "w") as routes:
            routes.write('[[routes]]\nprefix = "/api/catalog"\nservice = "products"\nstrip_prefix = true\n')

    def configure(self, name):
        with open(os.path.join(PEERS, name)) as template:
            text = template.read()
        text = (text.replace("@RUN_DIR@", self.run_dir).replace("@RSA_PUBLIC_KEY@", self.rsa_public)
                .replace("@HS256_SECRET@", self.secret))
        with open(os.path.join(self.run_dir, name), "w") as config:
            config.write(text)

    def token(self, audience, alg, subject="user-1", scope=None):
        """A token for SUBJECT from the demo issuer, with SCOPE (space-separated) or every scope the subject has."""
        request = {"subject": subject, "audience": audience, "alg": alg}
        if scope:
            request["scope"] = scope
        with urllib.request.urlopen(f"http://127.0.0.1:{SERVICE_PORTS['auth']}/token",
                                    json.dumps(request).encode()) as answer:
            return json.load(answer)["access_token"]


def service_env():
    return {f"BFF_PORTS__{name.upper()}": str(port) for name, port in SERVICE_PORTS.items()}


def bff_env(services):
    """A BFF on 18080 (admin 19080) calling SERVICES, with a limit no run reaches."""
    env = {"BFF_SERVER__LISTEN": "127.0.0.1:18080", "BFF_SERVER__ADMIN_LISTEN": "127.0.0.1:19080",
           "BFF_AUTH__JWKS__URL": f"http://127.0.0.1:{SERVICE_PORTS['auth']}/.well-known/jwks.json",
           **UNLIMITED_PLAN}
    env.update({f"BFF_DOWNSTREAM__{name.upper()}__URL": f"http://127.0.0.1:{SERVICE_PORTS[name]}"
                for name in services})
    return env


def node_env():
    return {"NODE_ENV": "production", "PORT": "18094",
            "JWKS_URL": f"http://127.0.0.1:{SERVICE_PORTS['auth']}/.well-known/jwks.json",
            **{f"{name.upper()}_URL": f"http://127.0.0.1:{port}" for name, port in SERVICE_PORTS.items()}}


def systems(setup, scenario):
    """(label, start function or None, target) for each system of SCENARIO."""
    bff_web, bff_mobile = os.path.join(RELEASE, "bff-web"), os.path.join(RELEASE, "bff-mobile")
    node = ["node", "server.js"]
    if scenario == "passthrough":
        rs256 = {"Authorization": f"Bearer {setup.token('bff-web', 'RS256')}"}
        hs256 = {"Authorization": f"Bearer {setup.token('bff-web', 'HS256')}"}
        path = "/api/catalog/products/42"
        redis = {"BFF_REDIS__URL": "redis://127.0.0.1:16379"}
        return [
            ("direct", None, {"url": f"http://127.0.0.1:{SERVICE_PORTS['products']}/products/42", "headers": {}}),
            ("nginx", lambda: start(["nginx", "-c", os.path.join(setup.run_dir, "nginx.conf")]),
             {"url": f"http://127.0.0.1:18091{path}", "headers": {}}),
            ("haproxy-rs256", lambda: start(["haproxy", "-f", os.path.join(setup.run_dir, "haproxy.cfg")]),
             {"url": f"http://127.0.0.1:18092{path}", "headers": rs256}),
            ("haproxy-hs256", lambda: start(["haproxy", "-f", os.path.join(setup.run_dir, "haproxy.cfg")]),
             {"url": f"http://127.0.0.1:18093{path}", "headers": hs256}),
            ("bff-web-rs256", lambda: start([bff_web], {**bff_env(WEB_SERVICES), "BFF_CONFIG": setup.routes}),
             {"url": f"http://127.0.0.1:18080{path}", "headers": rs256}),
            ("bff-web-rs256-redis",
             lambda: start([bff_web], {**bff_env(WEB_SERVICES), "BFF_CONFIG": setup.routes, **redis}),
             {"url": f"http://127.0.0.1:18080{path}", "headers": rs256}),
        ]
    if scenario.removesuffix(LATENCY_SUFFIX) in WEB_PAGES:
        name = scenario.removesuffix(LATENCY_SUFFIX)
        path = WEB_PAGES[name]
        token = (setup.token("bff-web", "ES256", DASHBOARD_USER, DASHBOARD_SCOPES) if name == "dashboard"
                 else setup.token("bff-web", "ES256"))
        page = {"url": f"http://127.0.0.1:18080{path}", "headers": {"Authorization": f"Bearer {token}"}}
        cached = [("bff-web", lambda: start([bff_web], bff_env(WEB_SERVICES)), page)] if scenario == "page" else []
        return cached + [
            ("bff-web-no-cache", lambda: start([bff_web], {**bff_env(WEB_SERVICES), **WEB_CACHE_OFF}), page),
            ("express", lambda: start(node, node_env(), cwd=os.path.join(PEERS, "express-bff")),
             {**page, "url": f"http://127.0.0.1:18094{path}"}),
        ]
    if scenario == "partner":
        bff_partner = os.path.join(RELEASE, "bff-partner")
        token = setup.token("bff-partner", "ES256", "partner-acme", "products:read")
        feed = {"url": f"http://127.0.0.1:18080{PARTNER_FEED}", "headers": {"Authorization": f"Bearer {token}"}}
        return [
            ("bff-partner", lambda: start([bff_partner], bff_env(PARTNER_SERVICES)), feed),
            ("express", lambda: start(node, node_env(), cwd=os.path.join(PEERS, "express-bff")),
             {**feed, "url": f"http://127.0.0.1:18094{PARTNER_FEED}"}),
        ]
    if scenario in MOBILE_SCREENS:
        token = (setup.token("bff-mobile", "ES256", DASHBOARD_USER, MOBILE_ME_SCOPES) if scenario == "mobile-me"
                 else setup.token("bff-mobile", "ES256"))
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                   "Accept-Language": MOBILE_LANGUAGE}
        query = MOBILE_SCREENS[scenario]
        # Apollo's automatic persisted queries, which bff-mobile implements too: the hash alone, once the
        # text has been sent with it (`register`, before measuring).
        persisted = {"persistedQuery": {"version": 1, "sha256Hash": hashlib.sha256(query.encode()).hexdigest()}}

        def graphql(url, body, register=None):
            return {"url": url, "headers": headers, "body": body, "lua": post_script(setup.run_dir, body),
                    **({"register": register} if register else {})}

        def pair(url):
            text, registering = compact({"query": query}), compact({"query": query, "extensions": persisted})
            return graphql(url, text), graphql(url, compact({"extensions": persisted}), registering)
        ours_text, ours_apq = pair("http://127.0.0.1:18080/graphql")
        apollo_text, apollo_apq = pair("http://127.0.0.1:18094/graphql")
        bff = lambda: start([bff_mobile], {**bff_env(MOBILE_SERVICES), **MOBILE_CACHE_OFF})  # noqa: E731
        apollo = lambda: start(node, node_env(), cwd=os.path.join(PEERS, "apollo-mobile"))  # noqa: E731
        return [("bff-mobile-no-cache", bff, ours_text), ("apollo", apollo, apollo_text),
                ("bff-mobile-no-cache-apq", bff, ours_apq), ("apollo-apq", apollo, apollo_apq)]
    raise ValueError(scenario)


def compact(document):
    """DOCUMENT as a client sends it: JSON without blanks."""
    return json.dumps(document, separators=(",", ":"))


def post_script(run_dir, body):
    """A wrk script sending BODY as a JSON POST (oha takes it with -d), one file per body."""
    path = os.path.join(run_dir, f"post-{hashlib.sha256(body.encode()).hexdigest()[:16]}.lua")
    with open(path, "w") as script:
        script.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n')
    return path


# --- one run -----------------------------------------------------------------

def with_system(launch, target, measure):
    """Starts a system (none for the direct path), waits for it, runs MEASURE(pids), stops it."""
    process = launch() if launch else None
    try:
        if target.get("register"):  # a persisted query's text, sent once with its hash
            wait_ok(target["url"], target["headers"], target["register"].encode())
        wait_ok(target["url"], target["headers"], target.get("body", "").encode() or None)
        if process:
            time.sleep(1)  # the idle figure is taken after start-up work, not during it
        return measure(tree(process.pid) if process else [])
    finally:
        if process:
            stop(process)


def closed_loop(target, options, pids):
    """Idle RSS; the maximum rate (wrk) and CPU per request; peak RSS with 1,000 connections open."""
    result = {"idle_rss_mib": memory_mib(pids, "VmRSS") if pids else None}
    wrk(target, WARM_UP_SECONDS, options.connections)  # connection pools, the JWKS, caches, Node's JIT
    before = cpu_seconds(pids) if pids else 0
    result["closed"] = wrk(target, options.duration, options.connections)
    if pids:
        spent = cpu_seconds(pids) - before
        result["cpu_us_per_request"] = spent * 1e6 / result["closed"]["requests"]
        result["peak_rss_mib"] = memory_mib(pids, "VmHWM")
        # Open connections, not load: each client sends a request a second,
        # so the memory measured is the connections', not a queue's.
        many = oha(target, 5, MANY_CONNECTIONS, MANY_CONNECTIONS)
        result["many_connections"] = {**many, "rss_mib": memory_mib(pids, "VmHWM")}
    return result


def open_loop(target, options, rates):
    """oha at each of RATES, after a warm-up."""
    wrk(target, WARM_UP_SECONDS, options.connections)
    return [oha(target, options.open_duration, rate, options.connections) for rate in rates]


def measure_system(target, options, pids):
    """closed_loop, then the bytes of one answer on the wire; with the answer's body."""
    result = closed_loop(target, options, pids)
    result["wire"], content = wire(target)
    return result, content


def run_scenario(setup, scenario, options):
    """Every system of SCENARIO, one at a time on CPU 0: closed loop, then open loop."""
    results = {}
    reference = None  # the first system's page, which every other must answer too
    for label, launch, target in systems(setup, scenario):
        result, content = with_system(launch, target, lambda pids: measure_system(target, options, pids))
        closed = result["closed"]
        print(f"{scenario:<16}{label:<24}{closed['rps']:>9.0f} req/s  p50 {closed['p50_ms']:6.2f} ms"
              f"  p99 {closed['p99_ms']:6.2f} ms  CPU {result.get('cpu_us_per_request', 0):5.0f} µs/req"
              f"  {result['wire']['bytes']:>6} B with br", flush=True)
        check(f"{scenario}/{label}", closed)
        if "many_connections" in result:
            check(f"{scenario}/{label} at {MANY_CONNECTIONS} connections", result["many_connections"])
        if scenario.removesuffix(LATENCY_SUFFIX) in WEB_PAGES or scenario in MOBILE_SCREENS:
            document = (comparable_graphql(f"{scenario}/{label}", content) if scenario in MOBILE_SCREENS
                        else comparable(content))
            if reference is None:
                reference = (label, document)
            elif document != reference[1]:
                raise Failure(f"{scenario}: {label} answers another page than {reference[0]}:"
                              f" {content[:300]!r}")
        results[label] = result
    weakest = min(result["closed"]["rps"] for result in results.values())
    rates = [max(1, round(weakest * fraction)) for fraction in LOAD_FRACTIONS]
    for label, launch, target in systems(setup, scenario):
        runs = with_system(launch, target, lambda _pids: open_loop(target, options, rates))
        for run in runs:
            print(f"{scenario:<16}{label:<24}{run['rate']:>7} req/s offered: p50 {run['p50_ms']:6.2f}"
                  f"  p99 {run['p99_ms']:6.2f}  p99.9 {run['p999_ms']:6.2f} ms", flush=True)
            check(f"{scenario}/{label} at {run['rate']} req/s", run)
        results[label]["open"] = runs
    return results


def ours(label):
    return label.startswith("bff-")


def screen_bytes(setup):
    """The bytes on the wire of the mobile product screen (bff-mobile, the `mobile` query with its text)
    against the web product page of the same product (bff-web, `GET /api/product-page/42`), both with
    their response cache off: one request each, uncompressed (`identity`) and with `gzip`, and the ratios
    mobile / web of the whole answer (`bytes`: status line, headers, body) and of the body alone."""
    encodings = ("identity", "gzip")
    chosen = {"web": next(system for system in systems(setup, "page") if system[0] == "bff-web-no-cache"),
              "mobile": next(system for system in systems(setup, "mobile") if system[0] == "bff-mobile-no-cache")}
    result = {}
    for name, (label, launch, target) in chosen.items():
        records = with_system(launch, target, lambda _pids, target=target: {
            encoding: on_the_wire(target, encoding)[0] for encoding in encodings})
        result[name] = {"system": label, "request": f"POST /graphql {target['body']}" if target.get("body")
                        else f"GET {urllib.parse.urlsplit(target['url']).path}", **records}
    result["ratio"] = {encoding: {measure: result["mobile"][encoding][measure] / result["web"][encoding][measure]
                                  for measure in ("bytes", "body_bytes")} for encoding in encodings}
    for encoding in encodings:
        web, mobile, ratio = result["web"][encoding], result["mobile"][encoding], result["ratio"][encoding]
        print(f"bytes, {encoding:<8} web page {web['bytes']:>6} B (body {web['body_bytes']:>6}), mobile screen"
              f" {mobile['bytes']:>5} B (body {mobile['body_bytes']:>5}): mobile / web"
              f" {ratio['bytes']:.3f} ({ratio['body_bytes']:.3f} of the body)", flush=True)
    return result


def flamegraph(target, options, pids, name, run_dir):
    """Samples PIDS' call stacks under closed-loop load and draws them as OPTIONS.flamegraphs/NAME.svg.

    perf runs on the load's CPU and unwinds with DWARF (the release profile
    keeps debug info; frame pointers are not kept). Returns what the index
    says of the graph.
    """
    wrk(target, WARM_UP_SECONDS, options.connections)
    data = os.path.join(run_dir, f"{name}.perf.data")
    perf = subprocess.Popen(["taskset", "-c", LOAD_CPU, "perf", "record", "-F", str(PERF_HZ),
                             "--call-graph", "dwarf,32768", "-o", data, "-p", ",".join(map(str, pids))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = wrk(target, options.duration, options.connections)
    perf.send_signal(signal.SIGINT)
    # perf record writes its data on SIGINT, then ends by that signal again.
    if perf.wait() not in (0, -signal.SIGINT) or not os.path.exists(data):
        raise Failure(f"{name}: perf record failed (exit {perf.returncode})")
    check(f"{name} (profiled)", run)
    # Functions inlined into a frame are counted in it: with a frame each they multiply the graph.
    script = subprocess.Popen(["perf", "script", "--no-inline", "-i", data], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
    collapse = subprocess.Popen([INFERNO_COLLAPSE], stdin=script.stdout, stdout=subprocess.PIPE)
    script.stdout.close()
    svg = os.path.join(options.flamegraphs, f"{name}.svg")
    title = (f"{name}: {run['rps']:,.0f} req/s closed loop, {options.connections} connections,"
             f" perf at {PERF_HZ} Hz")
    with open(svg, "w") as out:
        # Frames under 0.1 % of the samples are left out: they are noise, and would double the file.
        subprocess.run([INFERNO_FLAMEGRAPH, "--title", title, "--minwidth", "0.1"],
                       stdin=collapse.stdout, stdout=out, check=True)
    if script.wait() != 0 or collapse.wait() != 0:
        raise Failure(f"{name}: perf script or inferno-collapse-perf failed")
    os.remove(data)
    return {"svg": os.path.basename(svg), "rps": run["rps"]}


def draw_flamegraphs(setup, scenario, options):
    """A flame graph of each of our systems in SCENARIO."""
    drawn = []
    for label, launch, target in systems(setup, scenario):
        if ours(label):
            name = f"{scenario}-{label}"
            graph = with_system(launch, target,
                                lambda pids: flamegraph(target, options, pids, name, setup.run_dir))
            print(f"{name:<33}{graph['rps']:>9.0f} req/s while profiled: {graph['svg']}", flush=True)
            drawn.append((name, graph))
    return drawn


def write_flamegraph_index(options, drawn, commit, date):
    """DIR/README.md: which graph is which, and the run they come from."""
    lines = ["# Flame graphs of our systems under load", "",
             f"Commit {commit}, {date}. Made by `bench/run.sh -F` (bench/compare.py --flamegraphs):",
             f"each system alone on CPU {SYSTEM_CPU} under wrk's closed loop ({options.duration} s, "
             f"{options.connections} connections, on CPU {LOAD_CPU}), its stacks sampled by "
             f"`perf record -F {PERF_HZ} --call-graph dwarf` and drawn by inferno. Open an SVG in a "
             "browser to zoom and search.", "",
             "| scenario and system | req/s while profiled | graph |", "|---|---|---|"]
    lines += [f"| {name} | {graph['rps']:,.0f} | [{graph['svg']}]({graph['svg']}) |" for name, graph in drawn]
    with open(os.path.join(options.flamegraphs, "README.md"), "w") as index:
        index.write("\n".join(lines) + "\n")


def set_latency(latency):
    """Every service the BFFs call answers after LATENCY (None: at once)."""
    for service in WEB_SERVICES:
        req = urllib.request.Request(f"http://127.0.0.1:{SERVICE_PORTS['auth']}/admin/faults/{service}",
                                     data=json.dumps({"latency": latency} if latency else {}).encode(),
                                     method="PUT", headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req).read()


def service_call_ms(calls=20):
    """The median of CALLS GETs of /products/42 straight to the service, in ms: what one round of
    calls costs at the services' injected latency, as a client sees it from here."""
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        status, _ = request(f"http://127.0.0.1:{SERVICE_PORTS['products']}/products/42")
        if status != 200:
            raise Failure(f"the products service answered {status} straight")
        times.append((time.perf_counter() - started) * 1000)
    return sorted(times)[len(times) // 2]


def machine():
    with open("/proc/cpuinfo") as cpuinfo:
        model = re.search(r"model name\s*:\s*(.*)", cpuinfo.read()).group(1)
    with open("/proc/meminfo") as meminfo:
        memory = int(re.search(r"MemTotal:\s+(\d+)", meminfo.read()).group(1)) // 1024 // 1024
    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": memory, "kernel": platform.release()}


def versions():
    def first_line(command):
        try:
            answer = subprocess.run(command, capture_output=True, text=True)
            return (answer.stdout or answer.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "missing"
    return {"nginx": first_line(["nginx", "-v"]), "haproxy": first_line(["haproxy", "-v"]),
            "node": first_line(["node", "--version"]), "wrk": first_line(["wrk", "-v"]),
            "oha": first_line([OHA, "--version"]), "redis": first_line(["redis-server", "--version"])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-d", "--duration", type=int, default=10, help="closed-loop seconds per system")
    parser.add_argument("-o", "--open-duration", type=int, default=10, help="open-loop seconds per rate")
    parser.add_argument("-c", "--connections", type=int, default=32)
    parser.add_argument("-s", "--scenarios",
                        default="passthrough,page,page-20ms,listing,listing-20ms,dashboard,dashboard-20ms,"
                                "mobile,mobile-listing,mobile-me,partner")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "latest.json"))
    parser.add_argument("--flamegraphs", metavar="DIR",
                        help="draw flame graphs of our systems into DIR instead of measuring")
    options = parser.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 1,000 connections, each proxied

    # Read before the run, which writes into the tree.
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    commit += "+changes" if dirty else ""
    run_dir = tempfile.mkdtemp(prefix="bench-")
    try:
        setup = Setup(run_dir)
        start([os.path.join(RELEASE, "demo-services")],
              {**service_env(), "BFF_ISSUER__RSA_KEY_FILE": setup.rsa_key,
               "BFF_ISSUER__HS256_SECRET": setup.secret, "BFF_OBSERVABILITY__LOG_LEVEL": "warn"},
              cpu=LOAD_CPU)
        start(["redis-server", "--port", "16379", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
              cpu=LOAD_CPU)
        wait_ok(f"http://127.0.0.1:{SERVICE_PORTS['auth']}/.well-known/jwks.json")
        scenarios, drawn, direct_calls, screens = {}, [], {}, None
        for scenario in options.scenarios.split(","):
            slow = scenario.endswith(LATENCY_SUFFIX)
            set_latency("20ms" if slow else None)
            if slow and not options.flamegraphs:
                direct_calls[scenario] = service_call_ms()
            if options.flamegraphs:
                os.makedirs(options.flamegraphs, exist_ok=True)
                drawn += draw_flamegraphs(setup, scenario, options)
            else:
                scenarios[scenario] = run_scenario(setup, scenario, options)
        if "mobile" in scenarios:
            set_latency(None)
            screens = screen_bytes(setup)
    except Failure as failure:
        print(f"not a result: {failure}", file=sys.stderr)
        return 1
    finally:
        stop_all()
        shutil.rmtree(run_dir, ignore_errors=True)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if options.flamegraphs:
        write_flamegraph_index(options, drawn, commit, date)
        print(f"wrote {options.flamegraphs}/README.md")
        return 0
    report = {"date": date, "commit": commit, "machine": machine(),
              "versions": versions(), "pinning": {"systems": SYSTEM_CPU, "load": LOAD_CPU},
              "options": vars(options) | {"out": None}, "scenarios": scenarios,
              # One call straight to a service during each 20 ms scenario, median in ms.
              "service_call_ms": direct_calls}
    if screens:
        # The mobile product screen against the web product page of product 42, one request each.
        report["screen_bytes"] = screens
    os.makedirs(os.path.dirname(options.out), exist_ok=True)
    with open(options.out, "w") as out:
        json.dump(report, out, indent=1)
    print(f"wrote {options.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
