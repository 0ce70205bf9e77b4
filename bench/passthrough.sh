#!/usr/bin/env bash
# Load benchmark of a pass-through route against the service it forwards
# to: GET /products/42 on demo-services directly, and GET
# /api/catalog/products/42 through bff-web's [[routes]] entry (an RS256
# token verified once then from the token cache, the in-process rate
# limiter, the whole layer stack, the answer streamed back).
#
# The two alternate, round after round, in the same run. bff-web is pinned
# to CPU 0; wrk and demo-services share CPU 1 in both cases. Prints, per
# run, requests per second and p50/p99 latency, then the medians and the
# ratio of the pass-through to the direct path.
#
# Usage: bench/passthrough.sh [-d SECONDS] [-c CONNECTIONS] [-r ROUNDS] [PATH/TO/bff-web]
# Needs wrk, curl and python3; DEMO_SERVICES names the demo-services binary.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=10
connections=32
rounds=3
# shellcheck source=bench/common.sh
. bench/common.sh
bench_options "d:c:r:" "$@"

config=$(mktemp --suffix=.toml)
cat >"$config" <<TOML
[[routes]]
prefix = "/api/catalog"
service = "products"
strip_prefix = true
TOML

start_demo_services taskset -c 1
token=$(web_token RS256)
start_bff_web BFF_CONFIG="$config" BFF_RATE_LIMIT__PLANS__STANDARD__CAPACITY=1000000000 \
    BFF_RATE_LIMIT__PLANS__STANDARD__REFILL_PER_SECOND=1000000000 taskset -c 0 "$bff_web"

results=$(mktemp)
for round in $(seq 1 "$rounds"); do
    measure direct http://127.0.0.1:17001/products/42 | tee -a "$results"
    measure pass-through http://127.0.0.1:18080/api/catalog/products/42 \
        -H "Authorization: Bearer $token" | tee -a "$results"
done
python3 - "$results" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    label, rps, p50, p99 = line.split()
    runs.setdefault(label, []).append((float(rps), float(p50), float(p99)))
median = {label: [statistics.median(column) for column in zip(*values)] for label, values in runs.items()}
print(f"\n{'path':<14}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}   (medians of {len(runs['direct'])} rounds)")
for label, (rps, p50, p99) in median.items():
    print(f"{label:<14}{rps:>10.0f}{p50:>10.3f}{p99:>10.3f}")
direct, through = median["direct"], median["pass-through"]
print(f"{'ratio':<14}{through[0] / direct[0]:>9.2f}x{through[1] / direct[1]:>9.2f}x{through[2] / direct[2]:>9.2f}x")
PY
