#!/usr/bin/env bash
# A pass-through GET of /products/42 against what a team would run
# instead, in one run, on the same demo-services: the service directly
# (the limit), nginx proxying it (no authentication, no limit), haproxy 2.6
# verifying an RS256 and an HS256 token with jwt_verify and limiting per
# subject with a stick-table (bench/peers/), and bff-web's [[routes]]
# entry with an RS256 token and the in-process limiter.
#
# Every proxy runs alone on CPU 0 with one worker (nginx worker_processes
# 1, haproxy nbthread 1, bff-web pinned with taskset -c 0, as every peer
# is); wrk and demo-services share CPU 1. Each is measured in turn (wrk,
# CONNECTIONS connections, 2 s warm-up, then SECONDS), ROUNDS rounds; a
# run with any non-2xx answer stops the benchmark. Prints the medians and
# the ratios against the direct path and against haproxy.
#
# Usage: bench/passthrough-peers.sh [-d SECONDS] [-c CONNECTIONS] [-r ROUNDS] [PATH/TO/bff-web]
# Needs wrk, curl, python3, openssl, nginx and haproxy (installed with apt
# when missing and run as root); DEMO_SERVICES names the demo-services binary.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=10
connections=32
rounds=1
if ! command -v nginx >/dev/null || ! command -v haproxy >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "needs nginx and haproxy (apt-get install nginx-light haproxy)" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light haproxy >/dev/null
fi
# shellcheck source=bench/common.sh
. bench/common.sh
bench_options "d:c:r:" "$@"

run_dir=$(mktemp -d)
trap 'cleanup; rm -rf "$run_dir"' EXIT
mkdir -p "$run_dir"/{body,proxy,fastcgi,uwsgi,scgi}
# One RSA key for the issuer, its public half for haproxy; one HS256 secret for both.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$run_dir/issuer.pem" 2>/dev/null
openssl pkey -in "$run_dir/issuer.pem" -pubout -out "$run_dir/issuer.pub.pem"
secret=$(openssl rand -hex 32)
sed -e "s|@RUN_DIR@|$run_dir|g" bench/peers/nginx.conf >"$run_dir/nginx.conf"
sed -e "s|@RUN_DIR@|$run_dir|g" -e "s|@RSA_PUBLIC_KEY@|$run_dir/issuer.pub.pem|g" \
    -e "s|@HS256_SECRET@|$secret|g" bench/peers/haproxy.cfg >"$run_dir/haproxy.cfg"
cat >"$run_dir/bff-web.toml" <<TOML
[[routes]]
prefix = "/api/catalog"
service = "products"
strip_prefix = true
TOML

start_demo_services taskset -c 1 env BFF_ISSUER__RSA_KEY_FILE="$run_dir/issuer.pem" \
    BFF_ISSUER__HS256_SECRET="$secret"
rs256=$(web_token RS256)
hs256=$(web_token HS256)
path=/api/catalog/products/42
results=$(mktemp)

proxy() { # LABEL URL TOKEN COMMAND...: runs COMMAND on CPU 0, measures URL, stops it
    local label=$1 url=$2 token=$3
    shift 3
    taskset -c 0 "$@" >/dev/null 2>&1 &
    local pid=$!
    for _ in $(seq 1 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$url")" = 200 ] && break
        sleep 0.1
    done
    measure "$label" "$url" -H "Authorization: Bearer $token" | tee -a "$results"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

for _ in $(seq 1 "$rounds"); do
    measure direct http://127.0.0.1:17001/products/42 | tee -a "$results"
    proxy nginx "http://127.0.0.1:18091$path" none nginx -c "$run_dir/nginx.conf"
    proxy haproxy-rs256 "http://127.0.0.1:18092$path" "$rs256" haproxy -f "$run_dir/haproxy.cfg"
    proxy haproxy-hs256 "http://127.0.0.1:18093$path" "$hs256" haproxy -f "$run_dir/haproxy.cfg"
    start_bff_web BFF_CONFIG="$run_dir/bff-web.toml" \
        BFF_RATE_LIMIT__PLANS__STANDARD__CAPACITY=1000000000 \
        BFF_RATE_LIMIT__PLANS__STANDARD__REFILL_PER_SECOND=1000000000 taskset -c 0 "$bff_web"
    measure bff-web-rs256 "http://127.0.0.1:18080$path" -H "Authorization: Bearer $rs256" | tee -a "$results"
    kill "$bff_pid"
    wait "$bff_pid" 2>/dev/null || true
done

python3 - "$results" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    label, rps, p50, p99 = line.split()
    runs.setdefault(label, []).append((float(rps), float(p50), float(p99)))
median = {label: [statistics.median(column) for column in zip(*values)] for label, values in runs.items()}
direct, haproxy = median["direct"][0], median["haproxy-rs256"][0]
print(f"\n{'path':<16}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'/direct':>9}{'/haproxy-rs256':>16}")
for label, (rps, p50, p99) in median.items():
    print(f"{label:<16}{rps:>9.0f}{p50:>9.3f}{p99:>9.3f}{rps / direct:>8.2f}x{rps / haproxy:>15.2f}x")
PY
