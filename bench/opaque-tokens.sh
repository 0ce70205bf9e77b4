#!/usr/bin/env bash
# Opaque tokens against JWTs on bff-web's product page: the same page with
# a JWT (verified in process, its verification cached) and with an opaque
# token whose introspection answer is cached (warm), in one run; then the
# page with 100 distinct opaque tokens in turn, counting the introspection
# calls the issuer answered during the run (its /admin/stats), over a run
# four times cache_ttl long. Prints req/s, p50 and p99 of each, the
# opaque/JWT ratios, and the introspections per second beyond each token's
# first against the cache's bound: 100 tokens / cache_ttl.
#
# Usage: bench/opaque-tokens.sh [-d SECONDS] [-c CONNECTIONS] [PATH/TO/bff-web]
# Needs wrk, curl and python3; DEMO_SERVICES names the demo-services binary.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=10
connections=32
# Short, so the 100-token run spans several: each token is introspected again once per window.
cache_ttl=10
long_duration=40
# shellcheck source=bench/common.sh
. bench/common.sh
bench_options "d:c:" "$@"

start_demo_services taskset -c 1
jwt=$(web_token)
opaque() {
    curl -s -X POST http://127.0.0.1:17000/token \
        -d '{"subject":"user-1","audience":"bff-web","format":"opaque","ttl":"1h"}' |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}
introspections() { curl -s http://127.0.0.1:17000/admin/stats | python3 -c 'import json, sys; print(json.load(sys.stdin)["introspections"])'; }
scripts=$(mktemp -d)
results=$(mktemp)
{
    echo 'local tokens = {'
    for _ in $(seq 1 100); do echo "  \"$(opaque)\","; done
    echo '}'
    cat <<'LUA'
local count = 0
request = function()
  count = count + 1
  wrk.headers["Authorization"] = "Bearer " .. tokens[count % #tokens + 1]
  return wrk.format()
end
LUA
} >"$scripts/hundred-tokens.lua"

start_bff_web BFF_RATE_LIMIT__PLANS__STANDARD__CAPACITY=1000000000 \
    BFF_RATE_LIMIT__PLANS__STANDARD__REFILL_PER_SECOND=1000000000 \
    BFF_AUTH__INTROSPECTION__ENABLED=true \
    BFF_AUTH__INTROSPECTION__URL=http://127.0.0.1:17000/introspect \
    BFF_AUTH__INTROSPECTION__CLIENT_SECRET=dev-introspection-secret \
    BFF_AUTH__INTROSPECTION__CACHE_TTL="${cache_ttl}s" \
    taskset -c 0 "$bff_web"
page=http://127.0.0.1:18080/api/product-page/42
measure jwt "$page" -H "Authorization: Bearer $jwt" >>"$results"
measure opaque-warm "$page" -H "Authorization: Bearer $(opaque)" >>"$results"
before=$(introspections)
started=$(date +%s.%N)
duration=$long_duration measure opaque-100-tokens "$page" -s "$scripts/hundred-tokens.lua" >>"$results"
elapsed=$(python3 -c "import time; print(time.time() - $started)")
after=$(introspections)

python3 - "$results" "$((after - before))" "$elapsed" "$cache_ttl" <<'PY'
import sys
rows = {line.split()[0]: [float(x) for x in line.split()[1:]] for line in open(sys.argv[1])}
calls, elapsed, ttl = int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
print(f"{'run':<20}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
for label, (rps, p50, p99) in rows.items():
    print(f"{label:<20}{rps:>9.0f}{p50:>9.2f}{p99:>9.2f}")
(jr, j50, j99), (orr, o50, o99) = rows["jwt"], rows["opaque-warm"]
print(f"opaque-warm vs jwt: {orr / jr:.3f}x req/s, p99 {o99 / j99:.3f}x (target: within 5%)")
steady = (calls - 100) / elapsed
print(f"introspections during the 100-token runs (warm-up included): {calls} in {elapsed:.1f} s; "
      f"beyond each token's first: {steady:.2f}/s, bound 100 tokens / {ttl:.0f} s = {100 / ttl:.2f}/s")
PY
