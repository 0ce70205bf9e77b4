#!/usr/bin/env bash
# One bff-web instance over TLS against plain HTTP, in one run: the product
# page in cleartext HTTP/1.1, over TLS with HTTP/1.1 (ALPN http/1.1) and
# over TLS with HTTP/2 (ALPN h2), each closed-loop for $duration s at
# $connections connections (HTTP/2: as many connections, one stream each at
# a time; then 8 streams on each of an eighth as many), all driven by one load generator, nghttp2's h2load, on CPU 1
# beside demo-services, bff-web alone on CPU 0; p50 and p99 come from
# h2load's per-request log. The certificate is a P-256 one made here with
# openssl. Prints req/s, p50 and p99 of each and the ratios to cleartext.
#
# Usage: bench/tls.sh [-d SECONDS] [-c CONNECTIONS] [PATH/TO/bff-web]
# Needs h2load (Debian's nghttp2-client), openssl, curl and python3;
# DEMO_SERVICES names the demo-services binary.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=10
connections=32
# shellcheck source=bench/common.sh
. bench/common.sh
bench_options "d:c:" "$@"

work=$(mktemp -d)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

start_demo_services taskset -c 1
token=$(web_token)
results=$(mktemp)

run() { # LABEL URL [H2LOAD ARGS...]: 2 s of warm-up, then the measured run; appends "LABEL req/s p50 p99"
    local label=$1 url=$2
    shift 2
    taskset -c 1 h2load --warm-up-time=2s -D "$duration" -c "$connections" -m 1 \
        --log-file="$work/$label.log" -H "Authorization: Bearer $token" "$@" "$url" >"$work/$label.out"
    python3 - "$label" "$work/$label.out" "$work/$label.log" <<'PY' >>"$results"
import re, sys
label, summary, log = sys.argv[1:]
text = open(summary).read()
done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", text)
status = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
if int(done.group(3)) or int(done.group(4)) or sum(int(n) for n in status.groups()[1:]):
    sys.exit(f"{label}: not every answer was a 2xx:\n{text}")
rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text).group(1))
micros = sorted(int(line.split()[2]) for line in open(log) if line.strip())
def percentile(p):
    return micros[min(len(micros) - 1, int(len(micros) * p))] / 1000
print(label, rps, percentile(0.50), percentile(0.99))
PY
}

unlimited=(BFF_RATE_LIMIT__PLANS__STANDARD__CAPACITY=1000000000
    BFF_RATE_LIMIT__PLANS__STANDARD__REFILL_PER_SECOND=1000000000)
page=/api/product-page/42

start_bff_web "${unlimited[@]}" taskset -c 0 "$bff_web"
run cleartext-http1 "http://127.0.0.1:18080$page" --h1
kill "$bff_pid"
wait "$bff_pid" 2>/dev/null || true

start_bff_web "${unlimited[@]}" BFF_SERVER__TLS__CERT_FILE="$work/cert.pem" \
    BFF_SERVER__TLS__KEY_FILE="$work/key.pem" taskset -c 0 "$bff_web"
run tls-http1 "https://127.0.0.1:18080$page" --h1
run tls-http2 "https://127.0.0.1:18080$page"
# The same concurrency multiplexed: 8 streams on each of an eighth as many connections.
run tls-http2-8-streams "https://127.0.0.1:18080$page" -c $((connections / 8)) -m 8
kill "$bff_pid"
wait "$bff_pid" 2>/dev/null || true
python3 - "$results" <<'PY'
import sys
rows = {line.split()[0]: [float(x) for x in line.split()[1:]] for line in open(sys.argv[1])}
print(f"{'run':<22}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'req/s vs cleartext':>20}{'p99 vs cleartext':>18}")
base_rps, _, base_p99 = rows["cleartext-http1"]
for label, (rps, p50, p99) in rows.items():
    print(f"{label:<22}{rps:>9.0f}{p50:>9.2f}{p99:>9.2f}{rps / base_rps:>19.3f}x{p99 / base_p99:>17.3f}x")
PY
