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
# Usage: bench/product-page-instructions.sh [-R] [-O] LABEL=PATH/TO/bff-web[@VARIABLE=VALUE...]...
# As in product-page.sh, a candidate may add BFF_* variables after `@`, -R
# starts a redis-server on 127.0.0.1:16379 and -O an OTLP receiver on
# 127.0.0.1:14318. Instructions of every thread count, the log writer's and
# the span exporter's included. Needs valgrind, curl and
# python3; DEMO_SERVICES names the demo-services binary (default
# target/release/demo-services).
set -euo pipefail
cd "$(dirname "$0")/.."
with_redis=false
with_otlp=false
while getopts "RO" option; do
    case "$option" in
        R) with_redis=true ;;
        O) with_otlp=true ;;
        *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-R] [-O] LABEL=PATH/TO/bff-web[@VAR=VALUE...]..." >&2; exit 2; }
warm=100
measured=1000
work=$(mktemp -d)
bff_stderr=$work/valgrind.log
# shellcheck source=bench/common.sh
. bench/common.sh
trap 'cleanup; rm -rf "$work"' EXIT

start_demo_services
token=$(web_token)
if $with_redis; then start_redis; fi
if $with_otlp; then start_otlp_sink; fi

instructions() { # REQUESTS BINARY [VAR=VALUE...]: instructions of a whole run serving REQUESTS
    local requests=$1 binary=$2
    shift 2
    start_bff_web "$@" valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" "$binary"
    local bff=$bff_pid
    python3 - "$token" "$requests" <<'PY'
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
    IFS=@ read -r -a parts <<<"${candidate#*=}"
    short=$(instructions "$warm" "${parts[@]}")
    long=$(instructions $((warm + measured)) "${parts[@]}")
    printf '%-12s %16d\n' "$label" $(((long - short) / measured))
done
