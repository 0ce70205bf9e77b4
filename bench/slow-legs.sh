#!/usr/bin/env bash
# The product page when every downstream service answers after 20 ms: its
# four calls run in parallel, so a page should take about 20 ms plus the
# gateway's own overhead, not 80 ms. Measures, at a light load (wrk, 8
# connections), the p50 and p99 of one 20 ms call straight to the products
# service and of the whole page through bff-web, and prints the page's
# overhead over the single call.
#
# Usage: bench/slow-legs.sh [-d SECONDS] [-c CONNECTIONS] [-l LATENCY] [PATH/TO/bff-web]
# Needs wrk, curl and python3; DEMO_SERVICES names the demo-services binary.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=10
connections=8
latency=20ms
# shellcheck source=bench/common.sh
. bench/common.sh
bench_options "d:c:l:" "$@"

start_demo_services taskset -c 1
token=$(web_token)
for service in products inventory pricing reviews; do
    curl -s -o /dev/null -X PUT "http://127.0.0.1:17000/admin/faults/$service" -d "{\"latency\":\"$latency\"}"
done
start_bff_web BFF_RATE_LIMIT__PLANS__STANDARD__CAPACITY=1000000000 \
    BFF_RATE_LIMIT__PLANS__STANDARD__REFILL_PER_SECOND=1000000000 taskset -c 0 "$bff_web"

results=$(mktemp)
measure one-call http://127.0.0.1:17001/products/42 >>"$results"
measure page http://127.0.0.1:18080/api/product-page/42 -H "Authorization: Bearer $token" >>"$results"
python3 - "$results" <<'PY'
import sys
rows = [line.split() for line in open(sys.argv[1])]
print(f"{'what':<10}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}")
for label, rps, p50, p99 in rows:
    print(f"{label:<10}{float(rps):>8.0f}{float(p50):>9.2f}{float(p99):>9.2f}")
(_, _, call50, call99), (_, _, page50, page99) = rows
print(f"page overhead over one call: p50 {float(page50) - float(call50):+.2f} ms, p99 {float(page99) - float(call99):+.2f} ms")
PY
