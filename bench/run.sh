#!/usr/bin/env bash
# The whole comparison with the peers in one command: builds the release
# binaries, installs what the peers and the load need (Debian's nginx,
# haproxy, wrk and redis-server; npm's express and @apollo/server with
# their locked dependencies; oha from crates.io; matplotlib from PyPI), runs
# every scenario against us and the peers (bench/compare.py: the web pages
# and bff-partner's product feed against Express, bff-mobile's three
# screens against Apollo), measures the rate limiter's cost and accuracy
# against nginx's limit_req (bench/ratelimit.sh), writes
# bench/results/latest.md with its charts (bench/report.py), measures
# bff-partner's idempotent orders (bench/partner-orders.sh, into
# bench/results/partner-orders.txt), opaque tokens against JWTs
# (bench/opaque-tokens.sh) and the signed internal token's CPU per
# downstream call (bench/internal-token.sh), one instance over TLS with
# HTTP/1.1 and HTTP/2 against cleartext (bench/tls.sh), three instances
# behind haproxy against one (deploy/fleet.sh scale), and prints the
# micro-benchmarks' summaries (token verification and the internal token's
# steady-state cost; the idempotency store's added latency).
#
# Usage: bench/run.sh [-q] [-M] [-F] [compare.py options...]
#   -q  quick: 3 s per closed-loop run, per open-loop rate and per rate-limit run (a smoke run, not a result)
#   -M  skip the micro-benchmarks (cargo bench -p platform-tests --bench auth, --bench idempotency)
#   -F  measure nothing: draw flame graphs of our systems under load into
#       bench/results/flamegraphs/ (perf from Debian's linux-perf, inferno
#       from crates.io), for the pass-through, the product page and the
#       mobile product screen (`mobile`, with the query's text and as a
#       persisted query) unless -s names others (mobile-listing, mobile-me)
# Runs as root (apt-get) on a machine with two cores or more; takes about
# 25 minutes, plus the first build of oha.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=()
ratelimit_quick=()
micro=true
flamegraphs=false
while getopts "qMF" option; do
    case "$option" in
        q) quick=(-d 3 -o 3) ratelimit_quick=(-d 3) ;;
        M) micro=false ;;
        F) flamegraphs=true ;;
        *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))

missing=()
for tool in nginx haproxy wrk redis-server perf h2load; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    packages=("${missing[@]/nginx/nginx-light}")
    packages=("${packages[@]/perf/linux-perf}")
    packages=("${packages[@]/h2load/nghttp2-client}")
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null; }
fi
command -v oha >/dev/null || [ -x "$HOME/.cargo/bin/oha" ] || cargo install --locked oha@1.16.0
if $flamegraphs; then
    command -v inferno-flamegraph >/dev/null || [ -x "$HOME/.cargo/bin/inferno-flamegraph" ] ||
        cargo install --locked inferno@0.12.8
fi
python3 -c "import matplotlib" 2>/dev/null || pip install --quiet matplotlib
for peer in express-bff apollo-mobile; do
    (cd "bench/peers/$peer" && npm ci --silent --no-audit --no-fund)
done
cargo build --release --bin bff-web --bin bff-mobile --bin bff-partner --bin demo-services

if $flamegraphs; then
    rm -rf bench/results/flamegraphs
    python3 bench/compare.py "${quick[@]}" --flamegraphs bench/results/flamegraphs \
        -s passthrough,page,mobile "$@"
    exit 0
fi
python3 bench/compare.py "${quick[@]}" "$@"
bench/ratelimit.sh "${ratelimit_quick[@]}"
python3 bench/report.py
bench/partner-orders.sh "${ratelimit_quick[@]}" | tee bench/results/partner-orders.txt
bench/opaque-tokens.sh "${ratelimit_quick[@]}" | tail -6 | tee bench/results/opaque-tokens.txt
bench/internal-token.sh "${ratelimit_quick[@]}" | tail -8 | tee bench/results/internal-token.txt
bench/tls.sh "${ratelimit_quick[@]}" | tail -5 | tee bench/results/tls.txt
deploy/fleet.sh scale | tail -3 | tee bench/results/fleet-scale.txt
if $micro; then
    # criterion's names and estimates, without the progress lines
    cargo bench -p platform-tests --bench auth 2>&1 | awk '
        /^(Benchmarking|Found|Gnuplot|Warning|WARNING)|^ +(Running|Compiling|Finished)/ { next }
        /^ +(change|thrpt):|^ +[0-9]+ \(|^(Performance|No change|Change within)/ { next }
        { print }'
    cargo bench -p platform-tests --bench idempotency 2>/dev/null | tee bench/results/idempotency.txt
fi
