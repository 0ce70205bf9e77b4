#!/usr/bin/env bash
# bff-partner's POST /v1/orders with an Idempotency-Key: a new key on every
# request (a miss: the key claimed, the order placed, the answer kept) and
# one key retried (a hit: the kept answer, the orders service not called),
# with the idempotency records in process and in Redis, side by side with
# the same order POSTed straight to the orders service (what the service
# alone costs). Prints req/s, p50 and p99 of each and the ratios, and checks
# that the retried runs reached the orders service not once.
#
# Usage: bench/partner-orders.sh [-d SECONDS] [-c CONNECTIONS] [PATH/TO/bff-partner]
# Needs wrk, curl, redis-server and python3; DEMO_SERVICES names the demo-services binary.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=10
connections=32
# shellcheck source=bench/common.sh
. bench/common.sh
bench_options "d:c:" "$@"
bff_partner=${1:-target/release/bff-partner}
[ "$bff_web" = target/release/bff-web ] || bff_partner=$bff_web

start_demo_services taskset -c 1
start_redis taskset -c 1
token=$(curl -s -X POST http://127.0.0.1:17000/token \
    -d '{"subject":"partner-acme","audience":"bff-partner","alg":"ES256","scope":"orders:write"}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
unlimited=(BFF_RATE_LIMIT__PLANS__STANDARD__CAPACITY=1000000000
    BFF_RATE_LIMIT__PLANS__STANDARD__REFILL_PER_SECOND=1000000000)
scripts=$(mktemp -d)
results=$(mktemp)
body='{"lines":[{"product_id":42,"quantity":1}]}'
# A new key for every request: the run's own prefix, then a counter.
cat >"$scripts/new-keys.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
local run, count = tostring(os.time()) .. tostring(math.random(1e9)), 0
request = function()
  count = count + 1
  wrk.headers["Idempotency-Key"] = "bench-" .. run .. "-" .. count
  return wrk.format()
end
LUA
# One key for every request, placed once before: every request is answered from the record.
retried_key="bench-retried-$(date +%s)-$RANDOM"
cat >"$scripts/retried-key.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Idempotency-Key"] = "$retried_key"
LUA
cat >"$scripts/direct.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Auth-Tenant"] = "acme"
LUA

placed() { curl -s http://127.0.0.1:17000/admin/stats | python3 -c 'import json, sys; print(json.load(sys.stdin)["received"]["orders"])'; }

measure direct http://127.0.0.1:17006/orders -s "$scripts/direct.lua" >>"$results"
for records in in-process redis; do
    redis=()
    [ "$records" = redis ] && redis=(BFF_REDIS__URL=redis://127.0.0.1:16379)
    start_bff "products inventory pricing orders webhooks" "${unlimited[@]}" "${redis[@]}" taskset -c 0 "$bff_partner"
    measure "$records-new" http://127.0.0.1:18080/v1/orders -H "Authorization: Bearer $token" \
        -s "$scripts/new-keys.lua" >>"$results"
    curl -sf -o /dev/null http://127.0.0.1:18080/v1/orders -H "Authorization: Bearer $token" \
        -H "Content-Type: application/json" -H "Idempotency-Key: $retried_key-$records" -d "$body"
    sed -i "s/\"$retried_key[^\"]*\"/\"$retried_key-$records\"/" "$scripts/retried-key.lua"
    before=$(placed)
    measure "$records-retried" http://127.0.0.1:18080/v1/orders -H "Authorization: Bearer $token" \
        -s "$scripts/retried-key.lua" >>"$results"
    after=$(placed)
    # Every retry was answered from the record: the orders service saw none of them.
    [ "$after" -eq "$before" ] || { echo "the retried runs placed $((after - before)) orders, not 0" >&2; exit 1; }
    kill "$bff_pid"
    wait "$bff_pid" 2>/dev/null || true
done

python3 - "$results" <<'PY'
import sys
rows = {line.split()[0]: [float(x) for x in line.split()[1:]] for line in open(sys.argv[1])}
print(f"{'run':<22}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
for label, (rps, p50, p99) in rows.items():
    print(f"{label:<22}{rps:>9.0f}{p50:>9.2f}{p99:>9.2f}")
for this, that in [("in-process-new", "direct"), ("in-process-retried", "in-process-new"),
                   ("redis-new", "in-process-new"), ("redis-retried", "in-process-retried")]:
    (tr, t50, t99), (or_, o50, o99) = rows[this], rows[that]
    print(f"{this} vs {that}: {tr / or_:.2f}x req/s, p50 {t50 - o50:+.2f} ms, p99 {t99 - o99:+.2f} ms")
PY
