#!/usr/bin/env bash
# bench/proxy.sh: veil proxy's cost to a tool, against the direct E2EE client
# in the same run (build/bench/proxy), over plain HTTP and over attested TLS
# (veil serve --tls, the proxy and the client with --tls-attested), plus the
# TLS handshake. Targets (issue 21): added TTFT p50 < 1 ms, tokens/s >= 0.9x.
# Usage: [PIN=1] bench/proxy.sh [TOKENS] [ROUNDS] [REQUESTS]   (after make bench; from the repo root)
# PIN=1 (with 2+ CPUs) runs the servers (mock upstream, veil serve) on CPU 0 and the client side
# (the direct client, veil proxy and the tool) on CPU 1, as a client machine and a server machine
# would be; without it everything shares every CPU and the proxy's extra hop competes with the
# server for them.
set -euo pipefail
N=${1:-200}
R=${2:-5}
K=${3:-20}
VEIL=${VEIL:-build/veil}
tmp=$(mktemp -d)
# start() runs in a subshell ($(...)), so its servers are not this shell's jobs: their pids go to files
trap 'kill $(jobs -p) $(cat "$tmp"/*.pid 2>/dev/null) 2>/dev/null; rm -rf "$tmp"' EXIT
server_cpu=() client_cpu=()
if [ "${PIN:-0}" = 1 ] && [ "$(nproc)" -ge 2 ]; then
    server_cpu=(taskset -c 0)
    client_cpu=(taskset -c 1)
fi
"${server_cpu[@]}" build/bench/mock_upstream "$tmp/port" &
while [ ! -s "$tmp/port" ]; do sleep 0.05; done
up="http://127.0.0.1:$(cat "$tmp/port")/v1"
start() { # NAME CPU-PREFIX-VAR COMMAND ARGS... -> the port from its banner
    local name=$1 side=$2
    shift 2
    local -n pin=$side
    VEIL_STATE_DIR=$tmp/$name "${pin[@]}" "$VEIL" "$@" >"$tmp/$name.out" 2>/dev/null &
    echo $! >"$tmp/$name.pid"
    while ! grep -q "listening on" "$tmp/$name.out" 2>/dev/null; do sleep 0.05; done
    grep -o 'listening on https\?://127.0.0.1:[0-9]*' "$tmp/$name.out" | head -1 | sed 's/.*://'
}
serve_args=(--api-key bench --tee sim --tee-rate-limit 100000 --signature-rate-limit 1000000 --upstream "$up" --upstream-model mock
    --model-id e2ee-bench)
plain=$(start serve server_cpu serve --port 0 "${serve_args[@]}")
tls=$(start serve-tls server_cpu serve --port 0 --tls "${serve_args[@]}")
p1=$(start proxy client_cpu proxy --listen 127.0.0.1:0 --base-url "http://127.0.0.1:$plain/api/v1" --api-key bench \
    --allow-simulated)
p2=$(start proxy-tls client_cpu proxy --listen 127.0.0.1:0 --base-url "https://127.0.0.1:$tls/api/v1" --api-key bench \
    --allow-simulated --tls-attested)
echo "== upstream over plain HTTP"
"${client_cpu[@]}" build/bench/proxy --direct "http://127.0.0.1:$plain/api/v1" --proxy "http://127.0.0.1:$p1/v1" --model e2ee-bench \
    --tokens "$N" --rounds "$R" --requests "$K"
echo
echo "== upstream over attested TLS (veil serve --tls; --tls-attested both ways)"
"${client_cpu[@]}" build/bench/proxy --direct "https://127.0.0.1:$tls/api/v1" --proxy "http://127.0.0.1:$p2/v1" --model e2ee-bench \
    --tokens "$N" --rounds "$R" --requests "$K" --tls-attested --tls "https://127.0.0.1:$tls/api/v1"
