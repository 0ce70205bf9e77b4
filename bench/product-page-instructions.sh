#!/usr/bin/env bash
# Instructions per product-page request of one or more bff-web binaries,
# counted by valgrind's callgrind: unlike CPU time on a shared machine, the
# count is the same from run to run, so small differences show.
#
# Each binary serves N and then N + 1000 sequential requests on one
# keep-alive connection (the first verifies the token, the rest hit the
# token cache); the difference of the two totals, divided by 1000, is the
# steady-state cost of one request, start-up and shutdown excluded. Only
# user-space instructions are counted: the kernel's share (sockets) is not.
#
# Usage: bench/product-page-instructions.sh LABEL=PATH/TO/bff-web...
# Needs valgrind, curl and python3; DEMO_SERVICES names the demo-services
# binary (default target/release/demo-services).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 LABEL=PATH/TO/bff-web..." >&2; exit 2; }
demo_services=${DEMO_SERVICES:-target/release/demo-services}
warm=100
measured=1000
work=$(mktemp -d)

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

wait_for() { # URL: waits until it answers 200 (callgrind starts slowly)
    for _ in $(seq 1 600); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ] && return 0
        sleep 0.1
    done
    echo "$1 never answered 200" >&2
    exit 1
}

BFF_PORTS__AUTH=17000 BFF_PORTS__PRODUCTS=17001 BFF_PORTS__INVENTORY=17002 \
BFF_PORTS__PRICING=17003 BFF_PORTS__REVIEWS=17004 BFF_PORTS__USERS=17005 \
BFF_PORTS__ORDERS=17006 BFF_OBSERVABILITY__LOG_LEVEL=warn \
    "$demo_services" >/dev/null &
pids+=($!)
wait_for http://127.0.0.1:17000/.well-known/jwks.json
token=$(curl -s -X POST http://127.0.0.1:17000/token \
    -d '{"subject":"user-1","audience":"bff-web","alg":"ES256"}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')

instructions() { # BINARY REQUESTS: instructions of a whole run serving REQUESTS
    BFF_SERVER__LISTEN=127.0.0.1:18080 BFF_SERVER__ADMIN_LISTEN=127.0.0.1:19080 \
    BFF_AUTH__JWKS__URL=http://127.0.0.1:17000/.well-known/jwks.json \
    BFF_DOWNSTREAM__PRODUCTS__URL=http://127.0.0.1:17001 \
    BFF_DOWNSTREAM__INVENTORY__URL=http://127.0.0.1:17002 \
    BFF_DOWNSTREAM__PRICING__URL=http://127.0.0.1:17003 \
    BFF_DOWNSTREAM__REVIEWS__URL=http://127.0.0.1:17004 \
        valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" "$1" \
        >/dev/null 2>"$work/valgrind.log" &
    local bff=$!
    pids+=("$bff")
    wait_for http://127.0.0.1:19080/readyz
    python3 - "$token" "$2" <<'PY'
import http.client, sys
token, count = sys.argv[1], int(sys.argv[2])
connection = http.client.HTTPConnection("127.0.0.1", 18080, timeout=60)
for _ in range(count):
    connection.request("GET", "/api/product-page/42", headers={"Authorization": "Bearer " + token})
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        sys.exit(f"answered {response.status}: {body[:200]!r}")
PY
    kill -TERM "$bff"
    wait "$bff" || true
    awk '/Collected/ { print $4 }' "$work/valgrind.log"
}

printf '%-12s %16s\n' binary "instructions/req"
for candidate in "$@"; do
    label=${candidate%%=*}
    binary=${candidate#*=}
    short=$(instructions "$binary" "$warm")
    long=$(instructions "$binary" $((warm + measured)))
    printf '%-12s %16d\n' "$label" $(((long - short) / measured))
done
