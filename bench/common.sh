# Shared by the load benchmarks (sourced, not run): demo-services on the
# ports 17000-17008, a token from its issuer, bff-web on 18080 (admin 19080)
# configured against them, and cleanup of every process started.

demo_services=${DEMO_SERVICES:-target/release/demo-services}
pids=()

bench_options() { # SPEC "$@": reads -d -c -l -r (those SPEC, a getopts spec, names) into duration, connections, latency and rounds, and the bff-web path after them into bff_web
    local option
    OPTIND=1
    while getopts "$1" option "${@:2}"; do
        case "$option" in
            d) duration=$OPTARG ;;
            c) connections=$OPTARG ;;
            l) latency=$OPTARG ;;
            r) rounds=$OPTARG ;;
            *) exit 2 ;;
        esac
    done
    shift "$OPTIND"
    bff_web=${1:-target/release/bff-web}
}

cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

wait_for() { # URL: waits until it answers 200 (up to a minute: callgrind starts slowly)
    for _ in $(seq 1 600); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ] && return 0
        sleep 0.1
    done
    echo "$1 never answered 200" >&2
    exit 1
}

start_demo_services() { # [PREFIX...]: runs demo-services under PREFIX (taskset...)
    env BFF_PORTS__AUTH=17000 BFF_PORTS__PRODUCTS=17001 BFF_PORTS__INVENTORY=17002 \
        BFF_PORTS__PRICING=17003 BFF_PORTS__REVIEWS=17004 BFF_PORTS__USERS=17005 \
        BFF_PORTS__ORDERS=17006 BFF_PORTS__RECOMMENDATIONS=17007 BFF_PORTS__WEBHOOKS=17008 \
        BFF_OBSERVABILITY__LOG_LEVEL=warn \
        "$@" "$demo_services" >/dev/null &
    pids+=($!)
    wait_for http://127.0.0.1:17000/.well-known/jwks.json
}

start_redis() { # [PREFIX...]: a throwaway redis-server on 127.0.0.1:16379
    "$@" redis-server --port 16379 --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
    pids+=($!)
    until [ "$(redis-cli -p 16379 ping 2>/dev/null)" = PONG ]; do sleep 0.05; done
}

start_otlp_sink() { # [PREFIX...]: an OTLP/HTTP receiver on 127.0.0.1:14318
    "$@" python3 bench/otlp-sink.py 14318 &
    pids+=($!)
    until curl -s -o /dev/null -X POST http://127.0.0.1:14318/v1/traces; do sleep 0.05; done
}

web_token() { # [ALG]: prints a token for user-1 and bff-web, signed ES256 unless ALG says otherwise
    curl -s -X POST http://127.0.0.1:17000/token \
        -d "{\"subject\":\"user-1\",\"audience\":\"bff-web\",\"alg\":\"${1:-ES256}\"}" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

start_bff() { # "SERVICE..." [VAR=VALUE...] COMMAND...: runs COMMAND (a BFF, maybe under a prefix) with VARs on 18080 (admin 19080), calling each SERVICE on its port here; sets bff_pid
    local service downstreams=()
    for service in $1; do
        downstreams+=("BFF_DOWNSTREAM__${service^^}__URL=http://127.0.0.1:$(service_port "$service")")
    done
    shift
    env BFF_SERVER__LISTEN=127.0.0.1:18080 BFF_SERVER__ADMIN_LISTEN=127.0.0.1:19080 \
        BFF_AUTH__JWKS__URL=http://127.0.0.1:17000/.well-known/jwks.json "${downstreams[@]}" \
        "$@" >"${bff_stdout:-/dev/null}" 2>"${bff_stderr:-/dev/null}" &
    bff_pid=$!
    pids+=("$bff_pid")
    wait_for http://127.0.0.1:19080/readyz
}

service_port() { # SERVICE: its port here
    case "$1" in
        products) echo 17001 ;; inventory) echo 17002 ;; pricing) echo 17003 ;; reviews) echo 17004 ;;
        users) echo 17005 ;; orders) echo 17006 ;; recommendations) echo 17007 ;; webhooks) echo 17008 ;;
        *) echo "no port for $1" >&2; exit 2 ;;
    esac
}

start_bff_web() { # [VAR=VALUE...] COMMAND...: bff-web's services, as start_bff
    start_bff "products inventory pricing reviews" "$@"
}

wrk_summary() { # LABEL REPORT: checks every answer was 2xx; prints "LABEL req/s p50 p99"
    if grep -q "Non-2xx" <<<"$2"; then
        echo "$1: some answers were not 2xx:" >&2
        echo "$2" >&2
        exit 1
    fi
    python3 - "$1" <<PY
import re, sys
report = """$2"""
def millis(text):
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", report).group(1))
# Anchored: "75.50%" in the thread statistics also ends in "50%".
p50 = millis(re.search(r"^\s+50%\s+(\S+)", report, re.M).group(1))
p99 = millis(re.search(r"^\s+99%\s+(\S+)", report, re.M).group(1))
print(f"{sys.argv[1]} {rps:.0f} {p50:.3f} {p99:.3f}")
PY
}

measure() { # LABEL URL [WRK ARGS...]: 2 s of warm-up, then $duration s at $connections connections, wrk on CPU 1; prints wrk_summary
    local label=$1 url=$2
    shift 2
    taskset -c 1 wrk -t1 -c"$connections" -d2s "$@" "$url" >/dev/null
    wrk_summary "$label" "$(taskset -c 1 wrk -t1 -c"$connections" -d"${duration}s" --latency "$@" "$url")"
}
