#!/usr/bin/env bash
# The rate limiter's accuracy and cost, before and after a change, in one
# run (bench/README.md, "Rate limiting"):
# - decisions: tests/benches/ratelimit.rs, built against each limiter (the
#   same measurement code): decisions per second with p50 and p99, in
#   process and in Redis, and one bucket decided as fast as the limiters
#   can, by one limiter or by three sharing one Redis;
# - over HTTP, as an operator sees it: one and three bff-web instances of
#   each build on one Redis, and one deciding in process, under a plan of
#   100 tokens refilled at 200 or 1,000 a second, each instance driven by
#   wrk (one thread, 32 connections) for the duration: what was admitted
#   against capacity + rate x duration; nginx's limit_req with the same
#   plan (bench/peers/nginx-limit-req.conf) as the peer.
# Writes the tables to stdout and bench/results/ratelimit.md.
#
# Usage: bench/ratelimit.sh [-d SECONDS] [before=REV]
#   -d  seconds of load per HTTP run (default 10)
#   before=REV  also build and measure the limiter of git revision REV
#       (in a worktree under target/, with this tree's measurement code)
# Needs redis-server, wrk and nginx (bench/run.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

duration=10
while getopts "d:" option; do
    case "$option" in
        d) duration=$OPTARG ;;
        *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
before_rev=
for argument in "$@"; do
    case "$argument" in
        before=*) before_rev=${argument#before=} ;;
        *) echo "unknown argument: $argument" >&2; exit 2 ;;
    esac
done

out=target/ratelimit-bench
rm -rf "$out/run"
mkdir -p "$out/run"

# bench_binary DIR TARGET: builds DIR's ratelimit bench in TARGET and prints its path.
bench_binary() {
    (cd "$1" && CARGO_TARGET_DIR="$2" cargo bench -p platform-tests --bench ratelimit \
        --no-run --message-format=json 2>/dev/null) |
        python3 -c 'import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message["target"]["name"] == "ratelimit" and message.get("executable"):
        print(message["executable"])'
}

builds=()
if [ -n "$before_rev" ]; then
    # Its own target directory: cargo names a workspace's artifacts by their
    # paths within it, so the worktree's would overwrite this tree's.
    worktree=$out/before-src
    git worktree remove --force "$worktree" 2>/dev/null || rm -rf "$worktree"
    git worktree prune
    git worktree add --detach "$worktree" "$before_rev" >/dev/null
    cp tests/benches/ratelimit.rs "$worktree/tests/benches/ratelimit.rs"
    (cd "$worktree" && CARGO_TARGET_DIR="$root/$out/before-target" cargo build --release --bin bff-web)
    cp "$out/before-target/release/bff-web" "$out/bff-web-before"
    cp "$(bench_binary "$worktree" "$root/$out/before-target")" "$out/bench-before"
    builds+=(before)
fi
cargo build --release --bin bff-web --bin demo-services
cp target/release/bff-web "$out/bff-web-after"
cp "$(bench_binary . "$root/target")" "$out/bench-after"
builds+=(after)
label() { # BUILD: the build's name in the tables
    if [ ${#builds[@]} -eq 1 ]; then echo "this tree"; elif [ "$1" = before ]; then echo "before ($before_rev)"; else echo "after"; fi
}

report=$out/report
{
    echo "Commit $(git rev-parse --short HEAD)${before_rev:+ against $before_rev}, $(date -u +%F); \`bench/ratelimit.sh${before_rev:+ before=$before_rev}\`."
    echo
} > "$report"

# --- decisions ----------------------------------------------------------------
for build in "${builds[@]}"; do
    echo "== decisions: $(label "$build")"
    "$out/bench-$build" | tee "$out/decisions-$build.txt"
done
python3 - "$report" "${builds[@]}" <<PY
import re, sys
report, builds = sys.argv[1], sys.argv[2:]
def label(build):
    return "this tree" if len(builds) == 1 else ("before ($before_rev)" if build == "before" else "after")
rows = {}
for build in builds:
    text = open(f"$out/decisions-{build}.txt").read()
    rows[build] = text
with open(report, "a") as out:
    out.write("### Decisions (tests/benches/ratelimit.rs)\n\n| build | backend | tasks | decisions/s | p50 | p99 |\n|---|---|---:|---:|---:|---:|\n")
    for build in builds:
        for line in rows[build].splitlines():
            m = re.match(r"(in process|redis \(loopback\))\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)$", line)
            if m:
                out.write(f"| {label(build)} | {m[1]} | {m[2]} | {int(m[3]):,} | {m[4]} | {m[5]} |\n")
    out.write("\n### One bucket decided as fast as the limiters can (a fixed number of decisions each, about 10 s)\n\n| build | backend | limiters | plan | decisions/s | admitted | due | admitted / due |\n|---|---|---:|---|---:|---:|---:|---:|\n")
    for build in builds:
        for line in rows[build].splitlines():
            m = re.match(r"(in process|redis \(loopback\))\s+(\d+)\s+(\S+/s)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)$", line)
            if m:
                out.write(f"| {label(build)} | {m[1]} | {m[2]} | {m[3]} | {int(m[4]):,} | {int(m[5]):,} | {int(m[6]):,} | {m[7]} |\n")
    out.write("\n")
PY

# --- over HTTP ----------------------------------------------------------------
source bench/common.sh
start_demo_services
start_redis
token=$(web_token)
capacity=100

# drive LABEL INSTANCES RATE PORT PATH: one wrk per instance, on ports PORT,
# PORT+1..., in parallel; appends a table row (admitted: answers not 429)
drive() {
    local label=$1 instances=$2 rate=$3 port=$4 path=$5 i
    local wrk_pids=()
    for i in $(seq 0 $((instances - 1))); do
        wrk -t1 -c32 -d"${duration}s" -H "Authorization: Bearer $token" \
            "http://127.0.0.1:$((port + i))$path" > "$out/run/wrk-$i.txt" &
        wrk_pids+=($!)
    done
    wait "${wrk_pids[@]}"
    python3 - "$label" "$instances" "$rate" "$capacity" "$out"/run/wrk-*.txt >> "$out/http-rows" <<'PY'
import re, sys
label, instances, rate, capacity, files = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5:]
total = refused = 0
seconds = 0.0
for name in files:
    text = open(name).read()
    requests, value, unit = re.search(r"(\d+) requests in ([\d.]+)(m?s)", text).groups()
    seconds = max(seconds, float(value) / (1000 if unit == "ms" else 1))
    total += int(requests)
    found = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    refused += int(found.group(1)) if found else 0
admitted = total - refused
due = capacity + rate * seconds
print(f"| {label} | {instances} | {capacity:.0f} + {rate:.0f}/s | {total / seconds:,.0f} | {admitted:,} | {due:,.0f} | {admitted / due:.4f} |")
PY
    rm -f "$out"/run/wrk-*.txt
}

# start_instances BUILD N RATE [VAR=VALUE...]: N instances of BUILD's bff-web
instance_pids=()
start_instances() {
    local build=$1 instances=$2 rate=$3 i
    shift 3
    for i in $(seq 0 $((instances - 1))); do
        env BFF_SERVER__LISTEN=127.0.0.1:$((18080 + i)) BFF_SERVER__ADMIN_LISTEN=127.0.0.1:$((19080 + i)) \
            BFF_AUTH__JWKS__URL=http://127.0.0.1:17000/.well-known/jwks.json \
            BFF_DOWNSTREAM__PRODUCTS__URL=http://127.0.0.1:17001 \
            BFF_DOWNSTREAM__INVENTORY__URL=http://127.0.0.1:17002 \
            BFF_DOWNSTREAM__PRICING__URL=http://127.0.0.1:17003 \
            BFF_DOWNSTREAM__REVIEWS__URL=http://127.0.0.1:17004 \
            BFF_OBSERVABILITY__LOG_LEVEL=warn \
            BFF_RATE_LIMIT__PLANS__STANDARD__CAPACITY=$capacity \
            BFF_RATE_LIMIT__PLANS__STANDARD__REFILL_PER_SECOND="$rate" \
            "$@" "$out/bff-web-$build" >/dev/null 2>&1 &
        instance_pids+=($!)
        pids+=($!)
    done
    for i in $(seq 0 $((instances - 1))); do
        wait_for "http://127.0.0.1:$((19080 + i))/readyz"
    done
    # Past readiness, so that no run measures an instance's first second.
    sleep 1.5
}
stop_instances() {
    kill "${instance_pids[@]}" 2>/dev/null || true
    wait "${instance_pids[@]}" 2>/dev/null || true
    instance_pids=()
    # A fresh bucket for the next run.
    redis-cli -p 16379 flushall >/dev/null
}

: > "$out/http-rows"
for rate in 200 1000; do
    for build in "${builds[@]}"; do
        for instances in 1 3; do
            # The deprecated name: every build compared here, old ones too, reads it.
            start_instances "$build" "$instances" "$rate" BFF_RATE_LIMIT__REDIS_URL=redis://127.0.0.1:16379
            drive "$(label "$build"), Redis" "$instances" "$rate" 18080 /api/product-page/42
            stop_instances
        done
        start_instances "$build" 1 "$rate"
        drive "$(label "$build"), in process" 1 "$rate" 18080 /api/product-page/42
        stop_instances
    done
    # The peer: nginx limit_req on port 18092, driven the same way (one instance).
    mkdir -p "$out/run/nginx"
    sed -e "s|@RUN_DIR@|$root/$out/run/nginx|g" -e "s|@RATE@|$rate|" -e "s|@BURST@|$capacity|" \
        bench/peers/nginx-limit-req.conf > "$out/run/nginx/nginx.conf"
    nginx -c "$root/$out/run/nginx/nginx.conf" &
    nginx_pid=$!
    pids+=("$nginx_pid")
    until curl -s -o /dev/null http://127.0.0.1:18092/other; do sleep 0.05; done
    sleep 1.5
    echo admitted > "$out/run/nginx/admitted"
    drive "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') limit_req, in process" 1 "$rate" 18092 /admitted
    kill "$nginx_pid" 2>/dev/null || true
    wait "$nginx_pid" 2>/dev/null || true
done
{
    echo "### Over HTTP: one caller, wrk at many times the plan for ${duration} s"
    echo
    echo "| system | instances | plan | requests/s | admitted | due | admitted / due |"
    echo "|---|---:|---|---:|---:|---:|---:|"
    cat "$out/http-rows"
    echo
} >> "$report"
mkdir -p bench/results
cp "$report" bench/results/ratelimit.md
echo
cat "$report"
