#!/usr/bin/env bash
# The response cache on the product page: the same page with the product
# served from the cache (hit) and fetched every time (miss: the products
# service's cache turned off), in one run, with the products service
# answering at once and after LATENCY. The other three legs are never
# cached (their services say nothing) and always answer at once; a third
# run with every service's cache off (off) shows what looking them up
# costs. Prints req/s, p50 and p99 of each, the ratios, and the cache's
# own count of lookups during the hit runs, so a "hit" is known to be one.
#
# Usage: bench/cache.sh [-d SECONDS] [-c CONNECTIONS] [-l LATENCY] [PATH/TO/bff-web]
# Needs wrk, curl and python3; DEMO_SERVICES names the demo-services binary.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=10
connections=32
latency=20ms
# shellcheck source=bench/common.sh
. bench/common.sh
bench_options "d:c:l:" "$@"

start_demo_services taskset -c 1
token=$(web_token)
unlimited=(BFF_RATE_LIMIT__PLANS__STANDARD__CAPACITY=1000000000
    BFF_RATE_LIMIT__PLANS__STANDARD__REFILL_PER_SECOND=1000000000)
results=$(mktemp)
lookups=$(mktemp)

run() { # LABEL PRODUCTS-CACHE(true|false) OTHERS-CACHE(true|false) PRODUCTS-LATENCY
    curl -s -o /dev/null -X PUT http://127.0.0.1:17000/admin/faults/products -d "{\"latency\":\"$4\"}"
    start_bff_web "${unlimited[@]}" BFF_DOWNSTREAM__PRODUCTS__CACHE__ENABLED="$2" \
        BFF_DOWNSTREAM__INVENTORY__CACHE__ENABLED="$3" BFF_DOWNSTREAM__PRICING__CACHE__ENABLED="$3" \
        BFF_DOWNSTREAM__REVIEWS__CACHE__ENABLED="$3" taskset -c 0 "$bff_web"
    measure "$1" http://127.0.0.1:18080/api/product-page/42 -H "Authorization: Bearer $token" >>"$results"
    if [ "$2" = true ]; then
        curl -s http://127.0.0.1:19080/metrics | grep '^cache_lookups_total{' | sed "s/^/$1 /" >>"$lookups"
    fi
    kill "$bff_pid"
    wait "$bff_pid" 2>/dev/null || true
}

run hit-0ms true true 0ms
run miss-0ms false true 0ms
run off-0ms false false 0ms
run "hit-$latency" true true "$latency"
run "miss-$latency" false true "$latency"

python3 - "$results" <<'PY'
import sys
rows = {line.split()[0]: [float(x) for x in line.split()[1:]] for line in open(sys.argv[1])}
print(f"{'run':<12}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}")
for label, (rps, p50, p99) in rows.items():
    print(f"{label:<12}{rps:>8.0f}{p50:>9.2f}{p99:>9.2f}")
labels = list(rows)
for this, that in [(labels[0], labels[1]), (labels[1], labels[2]), (labels[3], labels[4])]:
    (tr, t50, t99), (or_, o50, o99) = rows[this], rows[that]
    print(f"{this} vs {that}: {tr / or_:.2f}x req/s, p50 {t50 - o50:+.2f} ms, p99 {t99 - o99:+.2f} ms")
PY
echo "cache lookups during the hit runs:"
cat "$lookups"
