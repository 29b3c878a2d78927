#!/usr/bin/env bash
# bench/proxy.sh: veil proxy's cost to a tool, against the direct E2EE client
# in the same run (build/bench/proxy), over plain HTTP and over attested TLS
# (veil serve --tls, the proxy and the client with --tls-attested), plus the
# TLS handshake. Targets (issue 21): added TTFT p50 < 1 ms, tokens/s >= 0.9x.
# Usage: bench/proxy.sh [TOKENS] [ROUNDS] [REQUESTS]   (after make bench; from the repo root)
set -euo pipefail
N=${1:-200}
R=${2:-5}
K=${3:-20}
VEIL=${VEIL:-build/veil}
tmp=$(mktemp -d)
# start() runs in a subshell ($(...)), so its servers are not this shell's jobs: their pids go to files
trap 'kill $(jobs -p) $(cat "$tmp"/*.pid 2>/dev/null) 2>/dev/null; rm -rf "$tmp"' EXIT
build/bench/mock_upstream "$tmp/port" &
while [ ! -s "$tmp/port" ]; do sleep 0.05; done
up="http://127.0.0.1:$(cat "$tmp/port")/v1"
start() { # NAME COMMAND ARGS... -> the port from its banner
    local name=$1
    shift
    VEIL_STATE_DIR=$tmp/$name "$VEIL" "$@" >"$tmp/$name.out" 2>/dev/null &
    echo $! >"$tmp/$name.pid"
    while ! grep -q "listening on" "$tmp/$name.out" 2>/dev/null; do sleep 0.05; done
    grep -o 'listening on https\?://127.0.0.1:[0-9]*' "$tmp/$name.out" | head -1 | sed 's/.*://'
}
serve_args=(--api-key bench --tee sim --tee-rate-limit 100000 --signature-rate-limit 1000000 --upstream "$up" --upstream-model mock
    --model-id e2ee-bench)
plain=$(start serve serve --port 0 "${serve_args[@]}")
tls=$(start serve-tls serve --port 0 --tls "${serve_args[@]}")
p1=$(start proxy proxy --listen 127.0.0.1:0 --base-url "http://127.0.0.1:$plain/api/v1" --api-key bench \
    --allow-simulated)
p2=$(start proxy-tls proxy --listen 127.0.0.1:0 --base-url "https://127.0.0.1:$tls/api/v1" --api-key bench \
    --allow-simulated --tls-attested)
echo "== upstream over plain HTTP"
build/bench/proxy --direct "http://127.0.0.1:$plain/api/v1" --proxy "http://127.0.0.1:$p1/v1" --model e2ee-bench \
    --tokens "$N" --rounds "$R" --requests "$K"
echo
echo "== upstream over attested TLS (veil serve --tls; --tls-attested both ways)"
build/bench/proxy --direct "https://127.0.0.1:$tls/api/v1" --proxy "http://127.0.0.1:$p2/v1" --model e2ee-bench \
    --tokens "$N" --rounds "$R" --requests "$K" --tls-attested --tls "https://127.0.0.1:$tls/api/v1"
