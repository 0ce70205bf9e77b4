#!/usr/bin/env bash
# What the signed internal token ([auth.internal_token]) costs bff-web per
# downstream call, end to end: the product page with the token off, then
# on, in turn for $rounds rounds; for each run the CPU time bff-web used
# (utime + stime from /proc) divided by the downstream calls the services
# received in it (demo-services' /admin/stats). Prints req/s, p99 and CPU
# µs per downstream call of each run, and the tokens minted (one per
# caller per reuse window, so 1 here: one user). The signature cost itself
# is measured apart by `cargo bench -p platform-tests --bench auth --
# internal_token`.
#
# Usage: bench/internal-token.sh [-d SECONDS] [-c CONNECTIONS] [-r ROUNDS] [PATH/TO/bff-web]
# Needs wrk, curl and python3; DEMO_SERVICES names the demo-services binary.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=10
connections=32
rounds=2
# shellcheck source=bench/common.sh
. bench/common.sh
bench_options "d:c:r:" "$@"

start_demo_services taskset -c 1
token=$(web_token)
page=http://127.0.0.1:18080/api/product-page/42
calls() { curl -s http://127.0.0.1:17000/admin/stats | python3 -c 'import json, sys; print(sum(json.load(sys.stdin)["received"].values()))'; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
results=$(mktemp)

for round in $(seq 1 "$rounds"); do
    for signed in false true; do
        start_bff_web BFF_RATE_LIMIT__PLANS__STANDARD__CAPACITY=1000000000 \
            BFF_RATE_LIMIT__PLANS__STANDARD__REFILL_PER_SECOND=1000000000 \
            BFF_AUTH__INTERNAL_TOKEN__ENABLED="$signed" \
            taskset -c 0 "$bff_web"
        # Warm-up outside the counted window: pools, caches and the caller's token.
        taskset -c 1 wrk -t1 -c"$connections" -d2s -H "Authorization: Bearer $token" "$page" >/dev/null
        calls_before=$(calls)
        ticks_before=$(cpu_ticks "$bff_pid")
        report=$(taskset -c 1 wrk -t1 -c"$connections" -d"${duration}s" --latency \
            -H "Authorization: Bearer $token" "$page")
        ticks_after=$(cpu_ticks "$bff_pid")
        calls_after=$(calls)
        minted=$(curl -s http://127.0.0.1:19080/metrics |
            awk '/^auth_internal_tokens_minted_total/ { print $2 }')
        echo "$(wrk_summary "signed=$signed" "$report") $((ticks_after - ticks_before)) $((calls_after - calls_before)) ${minted:-0} $round" >>"$results"
        kill "$bff_pid"
        wait "$bff_pid" 2>/dev/null || true
    done
done

python3 - "$results" "$(getconf CLK_TCK)" <<'PY'
import sys
ticks_per_second = int(sys.argv[2])
rows = [line.split() for line in open(sys.argv[1])]
print(f"{'run':<14}{'round':>6}{'req/s':>9}{'p99 ms':>9}{'calls':>9}{'CPU µs/call':>13}{'minted':>8}")
per_call = {"signed=false": [], "signed=true": []}
for label, rps, _p50, p99, ticks, calls, minted, round_ in rows:
    micros = int(ticks) / ticks_per_second * 1e6 / int(calls)
    per_call[label].append(micros)
    print(f"{label:<14}{round_:>6}{float(rps):>9.0f}{float(p99):>9.2f}{int(calls):>9}{micros:>13.2f}{float(minted):>8.0f}")
off = sum(per_call["signed=false"]) / len(per_call["signed=false"])
on = sum(per_call["signed=true"]) / len(per_call["signed=true"])
spread = max(per_call["signed=false"]) - min(per_call["signed=false"])
print(f"CPU per downstream call: off {off:.2f} µs, on {on:.2f} µs, added {on - off:+.2f} µs "
      f"(run-to-run spread with it off: {spread:.2f} µs)")
PY
