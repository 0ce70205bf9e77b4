#!/usr/bin/env bash
# The fleet on one machine, as an operator runs it: demo-services, one
# redis-server, three bff-web instances and Debian's haproxy in TCP mode in
# front of them (round robin, /readyz checked every 100 ms on each admin
# port), on fixed local ports: haproxy 18000, the instances 18081-18083
# (admin 19081-19083), Redis 16379, demo-services 17000-17008.
#
# Usage: deploy/fleet.sh [demo|size|scale|up] [PATH/TO/bin-dir]
#   demo (default)  under a steady load through haproxy (wrk, 16 connections),
#                   a rolling restart (SIGTERM each instance in turn, wait for
#                   its exit, start it again, wait until haproxy sees it up),
#                   then a SIGKILL of one instance and its restart, then a
#                   Redis restart; prints requests sent and failed per phase
#   size            the sizing rule of one instance (no haproxy): the most
#                   requests per second it answers with p99 under 10 ms
#                   (wrk, closed loop, 4 to 128 connections), its memory
#                   there, and the Redis commands per 1,000 requests
#   scale           the product page from one instance directly, then from
#                   the three behind haproxy (wrk, 32 connections, 10 s each)
#   up              starts everything and waits (Ctrl-C stops)
# The binaries come from target/release (cargo build --release) unless a
# directory is given. Needs haproxy, redis-server, wrk, curl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-demo}
bin=${2:-target/release}
# The load benchmarks' helpers: demo-services on 17000-17008, Redis on
# 16379, a token, waits, wrk's summary, and cleanup of what they started.
DEMO_SERVICES=$bin/demo-services
# shellcheck source=bench/common.sh
. bench/common.sh
work=$(mktemp -d)
declare -A instance_pids=()

fleet_cleanup() {
    for pid in "${instance_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    cleanup
    rm -rf "$work"
}
trap fleet_cleanup EXIT

start_shared_redis() { # start_redis, remembering the process to restart
    start_redis
    redis_pid=${pids[-1]}
}

start_instance() { # N [VAR=VALUE...]: bff-web number N (1-3) on 1808N, admin 1908N
    local n=$1
    shift
    env BFF_SERVER__LISTEN=127.0.0.1:$((18080 + n)) BFF_SERVER__ADMIN_LISTEN=127.0.0.1:$((19080 + n)) \
        BFF_SERVER__DRAIN_DELAY=1s BFF_REDIS__URL=redis://127.0.0.1:16379 \
        BFF_AUTH__JWKS__URL=http://127.0.0.1:17000/.well-known/jwks.json \
        BFF_DOWNSTREAM__PRODUCTS__URL=http://127.0.0.1:17001 \
        BFF_DOWNSTREAM__INVENTORY__URL=http://127.0.0.1:17002 \
        BFF_DOWNSTREAM__PRICING__URL=http://127.0.0.1:17003 \
        BFF_DOWNSTREAM__REVIEWS__URL=http://127.0.0.1:17004 \
        BFF_OBSERVABILITY__LOG_LEVEL=warn "${limits[@]}" "$@" "$bin/bff-web" >/dev/null &
    instance_pids[$n]=$!
    wait_for "http://127.0.0.1:$((19080 + n))/readyz"
}

start_haproxy() {
    cat >"$work/haproxy.cfg" <<CFG
global
    stats socket $work/haproxy.sock mode 600 level admin
    maxconn 4000

defaults
    mode tcp
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout queue 10s
    retries 3
    option redispatch

frontend fleet
    bind 127.0.0.1:18000
    default_backend bffs

backend bffs
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 100ms fall 1 rise 1
    server web1 127.0.0.1:18081 check port 19081
    server web2 127.0.0.1:18082 check port 19082
    server web3 127.0.0.1:18083 check port 19083
CFG
    haproxy -db -f "$work/haproxy.cfg" >/dev/null 2>&1 &
    pids+=($!)
    for n in 1 2 3; do wait_for_server "$n" UP; done
}

server_status() { # N: haproxy's status of instance N (UP, DOWN...)
    echo "show stat" | python3 -c '
import socket, sys
connection = socket.socket(socket.AF_UNIX)
connection.connect(sys.argv[1])
connection.sendall(b"show stat\n")
text = b""
while chunk := connection.recv(65536):
    text += chunk
lines = text.decode().splitlines()
columns = lines[0].lstrip("# ").split(",")
for line in lines[1:]:
    fields = line.split(",")
    if fields[0] == "bffs" and fields[1] == "web" + sys.argv[2]:
        print(fields[columns.index("status")])
' "$work/haproxy.sock" "$1" 2>/dev/null || true
}

wait_for_server() { # N STATUS: until haproxy reports instance N's status starting with STATUS
    for _ in $(seq 1 300); do
        [[ "$(server_status "$1")" == "$2"* ]] && return 0
        sleep 0.1
    done
    echo "haproxy never saw web$1 $2" >&2
    exit 1
}

wrk_counts() { # REPORT: prints "requests failed" from a wrk report
    python3 -c '
import re, sys
report = sys.stdin.read()
sent = int(re.search(r"(\d+) requests in", report).group(1))
non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", report)
errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", report)
failed = (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, errors.groups())) if errors else 0)
print(sent, failed)
' <<<"$1"
}

# No limit in the way of what is measured (the shared limit's accuracy is
# the fleet test's: tests/tests/fleet.rs).
limits=(BFF_RATE_LIMIT__PLANS__STANDARD__CAPACITY=1000000000
    BFF_RATE_LIMIT__PLANS__STANDARD__REFILL_PER_SECOND=1000000000)
page=/api/product-page/42

phase() { # NAME SECONDS ACTION...: wrk through haproxy for SECONDS while ACTION runs; prints the counts
    local name=$1 seconds=$2
    shift 2
    wrk -t1 -c16 -d"${seconds}s" -H "Authorization: Bearer $token" "http://127.0.0.1:18000$page" >"$work/$name.wrk" &
    local load=$!
    sleep 2
    "$@"
    wait "$load"
    read -r sent failed <<<"$(wrk_counts "$(cat "$work/$name.wrk")")"
    printf '%-18s %9s %8s\n' "$name" "$sent" "$failed"
}

rolling_restart() {
    for n in 1 2 3; do
        local pid=${instance_pids[$n]}
        kill -TERM "$pid"
        wait_for_server "$n" DOWN
        wait "$pid" 2>/dev/null || true
        start_instance "$n"
        wait_for_server "$n" UP
    done
}

kill_one() {
    kill -KILL "${instance_pids[2]}"
    wait "${instance_pids[2]}" 2>/dev/null || true
    wait_for_server 2 DOWN
    sleep 2
    start_instance 2
    wait_for_server 2 UP
}

restart_redis() {
    kill -KILL "$redis_pid"
    wait "$redis_pid" 2>/dev/null || true
    sleep 2
    start_shared_redis
    for n in 1 2 3; do
        until curl -s "http://127.0.0.1:$((19080 + n))/metrics" |
            grep -q 'rate_limit_backend{bff="bff-web",mode="redis"} 1'; do sleep 0.1; done
    done
}

case "$mode" in
    demo | up)
        start_shared_redis
        start_demo_services
        for n in 1 2 3; do start_instance "$n"; done
        start_haproxy
        token=$(web_token)
        if [ "$mode" = up ]; then
            echo "fleet up: http://127.0.0.1:18000 (haproxy), instances on 18081-18083; Ctrl-C stops"
            echo "  TOKEN=$token"
            wait
        fi
        printf '%-18s %9s %8s\n' phase sent failed
        phase steady 10 sleep 6
        phase rolling-restart 40 rolling_restart
        phase sigkill 20 kill_one
        phase redis-restart 20 restart_redis
        ;;
    scale)
        start_shared_redis
        start_demo_services
        for n in 1 2 3; do start_instance "$n"; done
        start_haproxy
        token=$(web_token)
        printf '%-26s %9s %8s %8s\n' target req/s p50_ms p99_ms
        for target in "one instance=127.0.0.1:18081" "three behind haproxy=127.0.0.1:18000"; do
            wrk -t1 -c32 -d2s -H "Authorization: Bearer $token" "http://${target#*=}$page" >/dev/null
            report=$(wrk -t1 -c32 -d10s --latency -H "Authorization: Bearer $token" "http://${target#*=}$page")
            read -r _ rps p50 p99 <<<"$(wrk_summary target "$report")"
            printf '%-26s %9.0f %8.2f %8.2f\n' "${target%%=*}" "$rps" "$p50" "$p99"
        done
        ;;
    size)
        start_shared_redis
        start_demo_services
        taskset -c 0 true 2>/dev/null && pin=(taskset -c 0) || pin=()
        env BFF_SERVER__LISTEN=127.0.0.1:18081 BFF_SERVER__ADMIN_LISTEN=127.0.0.1:19081 \
            BFF_REDIS__URL=redis://127.0.0.1:16379 \
            BFF_AUTH__JWKS__URL=http://127.0.0.1:17000/.well-known/jwks.json \
            BFF_DOWNSTREAM__PRODUCTS__URL=http://127.0.0.1:17001 \
            BFF_DOWNSTREAM__INVENTORY__URL=http://127.0.0.1:17002 \
            BFF_DOWNSTREAM__PRICING__URL=http://127.0.0.1:17003 \
            BFF_DOWNSTREAM__REVIEWS__URL=http://127.0.0.1:17004 \
            BFF_OBSERVABILITY__LOG_LEVEL=warn "${limits[@]}" "${pin[@]}" "$bin/bff-web" >/dev/null &
        web_pid=$!
        pids+=("$web_pid")
        wait_for http://127.0.0.1:19081/readyz
        token=$(web_token)
        printf '%-12s %9s %8s %8s %10s %14s %16s\n' connections req/s p50_ms p99_ms rss_MiB redis_calls/1k redis_commands/1k
        best=
        for connections in 4 8 16 32 64 128; do
            redis-cli -p 16379 config resetstat >/dev/null
            report=$(taskset -c 1 wrk -t1 -c"$connections" -d10s --latency \
                -H "Authorization: Bearer $token" "http://127.0.0.1:18081$page")
            # Every command Redis ran, those its scripts ran included.
            commands=$(redis-cli -p 16379 info stats | awk -F: '/^total_commands_processed/ { print $2 }' | tr -d '\r')
            # The round trips: one script call per decision.
            calls=$(redis-cli -p 16379 info commandstats | awk -F'[=,:]' '/^cmdstat_evalsha/ { print $3 }' | tr -d '\r')
            rss=$(awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$web_pid/status")
            read -r _ rps p50 p99 <<<"$(wrk_summary size "$report")"
            total=$(grep -oE '[0-9]+ requests in' <<<"$report" | grep -oE '^[0-9]+')
            row=$(printf '%-12s %9.0f %8.2f %8.2f %10s %14d %16d' "$connections" "$rps" "$p50" "$p99" \
                "$rss" $((${calls:-0} * 1000 / total)) $((commands * 1000 / total)))
            echo "$row"
            p99=$(awk '{ print $4 }' <<<"$row")
            if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < 10 else 1)" "$p99"; then
                best=$row
            else
                break
            fi
        done
        echo "sizing rule: one instance answers $(awk '{ print $2 }' <<<"$best") req/s with p99 $(awk '{ print $4 }' <<<"$best") ms (< 10 ms) at $(awk '{ print $5 }' <<<"$best") MiB RSS; per 1,000 requests Redis gets $(awk '{ print $6 }' <<<"$best") calls, running $(awk '{ print $7 }' <<<"$best") commands"
        ;;
    *)
        echo "usage: deploy/fleet.sh [demo|size|scale|up] [BIN-DIR]" >&2
        exit 2
        ;;
esac
