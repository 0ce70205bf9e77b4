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
# Usage: bench/product-page-instructions.sh [-R] [-O] [-P] LABEL=PATH/TO/bff-web[@VARIABLE=VALUE...]...
# As in product-page.sh, a candidate may add BFF_* variables after `@`, -R
# starts a redis-server on 127.0.0.1:16379 and -O an OTLP receiver on
# 127.0.0.1:14318. -P counts a forwarded request instead of a page:
# GET /api/catalog/products/42 with an RS256 token through a [[routes]]
# entry for the products service, the pass-through of bench/compare.py. Instructions of every thread count, the log writer's and
# the span exporter's included. Needs valgrind, curl and
# python3; DEMO_SERVICES names the demo-services binary (default
# target/release/demo-services).
set -euo pipefail
cd "$(dirname "$0")/.."
with_redis=false
with_otlp=false
pass_through=false
while getopts "ROP" option; do
    case "$option" in
        R) with_redis=true ;;
        O) with_otlp=true ;;
        P) pass_through=true ;;
        *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-R] [-O] [-P] LABEL=PATH/TO/bff-web[@VAR=VALUE...]..." >&2; exit 2; }
warm=100
measured=1000
work=$(mktemp -d)
bff_stderr=$work/valgrind.log
# shellcheck source=bench/common.sh
. bench/common.sh
trap 'cleanup; rm -rf "$work"' EXIT

path=/api/product-page/42
if $pass_through; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/issuer.pem" 2>/dev/null
    printf '[[routes]]\nprefix = "/api/catalog"\nservice = "products"\nstrip_prefix = true\n' >"$work/routes.toml"
    start_demo_services env BFF_ISSUER__RSA_KEY_FILE="$work/issuer.pem"
    token=$(web_token RS256)
    path=/api/catalog/products/42
    set -- "${@/%/@BFF_CONFIG=$work/routes.toml}"
else
    start_demo_services
    token=$(web_token)
fi
# A plan no run reaches: the limiter decides every request and lets it through.
set -- "${@/%/@BFF_RATE_LIMIT__PLANS__STANDARD__CAPACITY=1000000000@BFF_RATE_LIMIT__PLANS__STANDARD__REFILL_PER_SECOND=1000000000}"
if $with_redis; then start_redis; fi
if $with_otlp; then start_otlp_sink; fi

instructions() { # REQUESTS BINARY [VAR=VALUE...]: instructions of a whole run serving REQUESTS
    local requests=$1 binary=$2
    shift 2
    start_bff_web "$@" valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" "$binary"
    local bff=$bff_pid
    python3 - "$token" "$requests" "$path" <<'PY' || { kill -TERM "$bff"; exit 1; }
import http.client, sys
token, count, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
connection = http.client.HTTPConnection("127.0.0.1", 18080, timeout=60)
for _ in range(count):
    connection.request("GET", path, headers={"Authorization": "Bearer " + token})
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
    IFS=@ read -r -a parts <<<"${candidate#*=}"
    short=$(instructions "$warm" "${parts[@]}")
    long=$(instructions $((warm + measured)) "${parts[@]}")
    printf '%-12s %16d\n' "$label" $(((long - short) / measured))
done
