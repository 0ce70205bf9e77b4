#!/usr/bin/env bash
# Load benchmark of bff-web's product page (GET /api/product-page/{id}: four
# downstream calls, a verified ES256 token, the whole layer stack).
#
# Runs one or more bff-web binaries in turns, round after round, against the
# same demo-services, so they are compared in the same run on the same
# machine. bff-web is pinned to CPU 0; wrk and demo-services share CPU 1.
# For each run it prints requests per second, latency percentiles, the CPU
# time bff-web spent per request (user + system, from /proc) and its peak
# resident memory.
#
# Usage: bench/product-page.sh [-d SECONDS] [-c CONNECTIONS] [-r ROUNDS] [-R] [-O] [-L]
#            LABEL=PATH/TO/bff-web[@VARIABLE=VALUE...]...
# Each candidate may add BFF_* variables after `@` (the same binary with
# rate limiting off, in process, or in Redis; tracing on or off). -R starts a
# redis-server on 127.0.0.1:16379 for the run; -O an OTLP receiver on
# 127.0.0.1:14318 (bench/otlp-sink.py); -L sends bff-web's log lines through
# a pipe read on CPU 1, as a container runtime reads them (else /dev/null).
# Needs wrk, curl and python3 (and redis-server with -R); DEMO_SERVICES names
# the demo-services binary (default target/release/demo-services).
set -euo pipefail
cd "$(dirname "$0")/.."

duration=10
connections=32
rounds=3
with_redis=false
with_otlp=false
log_pipe=false
while getopts "d:c:r:ROL" option; do
    case "$option" in
        d) duration=$OPTARG ;;
        c) connections=$OPTARG ;;
        r) rounds=$OPTARG ;;
        R) with_redis=true ;;
        O) with_otlp=true ;;
        L) log_pipe=true ;;
        *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-d s] [-c n] [-r n] [-R] LABEL=PATH/TO/bff-web[@VAR=VALUE...]..." >&2; exit 2; }
hz=$(getconf CLK_TCK)
# shellcheck source=bench/common.sh
. bench/common.sh

cpu_ticks() { # PID: user + system clock ticks so far
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

start_demo_services taskset -c 1
token=$(web_token)
if $with_redis; then start_redis taskset -c 1; fi
if $with_otlp; then start_otlp_sink taskset -c 1; fi
if $log_pipe; then
    bff_stdout=$(mktemp -u)
    mkfifo "$bff_stdout"
fi

printf '%-12s %5s %10s %9s %9s %12s %8s\n' binary round "req/s" "p50 ms" "p99 ms" "CPU µs/req" "peak MB"
for round in $(seq 1 "$rounds"); do
    for candidate in "$@"; do
        label=${candidate%%=*}
        IFS=@ read -r -a parts <<<"${candidate#*=}"
        binary=${parts[0]}
        if $log_pipe; then
            taskset -c 1 cat "$bff_stdout" >/dev/null &
            pids+=($!)
        fi
        start_bff_web "${parts[@]:1}" taskset -c 0 "$binary"
        bff=$bff_pid
        url=http://127.0.0.1:18080/api/product-page/42
        taskset -c 1 wrk -t1 -c"$connections" -d3s -H "Authorization: Bearer $token" "$url" >/dev/null
        before=$(cpu_ticks "$bff")
        report=$(taskset -c 1 wrk -t1 -c"$connections" -d"${duration}s" --latency \
            -H "Authorization: Bearer $token" "$url")
        after=$(cpu_ticks "$bff")
        peak_kb=$(awk '/VmHWM/ { print $2 }' "/proc/$bff/status")
        kill "$bff"
        wait "$bff" 2>/dev/null || true
        if grep -q "Non-2xx" <<<"$report"; then
            echo "$label: some answers were not 200:" >&2
            echo "$report" >&2
            exit 1
        fi
        python3 - "$label" "$round" "$before" "$after" "$hz" "$peak_kb" <<PY
import re, sys
label, round_ = sys.argv[1], sys.argv[2]
before, after, hz, peak_kb = (int(value) for value in sys.argv[3:7])
report = """$report"""
def millis(text):
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
requests = int(re.search(r"(\d+) requests in", report).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", report).group(1))
p50 = millis(re.search(r"^\s+50%\s+(\S+)", report, re.M).group(1))  # not "75.50%" above it
p99 = millis(re.search(r"^\s+99%\s+(\S+)", report, re.M).group(1))
cpu = (after - before) / hz * 1e6 / requests
print(f"{label:<12} {round_:>5} {rps:>10.0f} {p50:>9.2f} {p99:>9.2f} {cpu:>12.1f} {peak_kb / 1024:>8.1f}")
PY
    done
done
