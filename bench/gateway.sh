#!/usr/bin/env bash
# bench/gateway.sh: what veil serve costs a stream relayed from an upstream.
# The mock upstream streams N tokens as fast as it can; curl reads the stream
# directly from the upstream and through veil, alternating, R rounds each.
# Prints tokens/s both ways (median), their ratio (target >= 0.9), and the
# time to first byte of each (p50; target: veil adds < 1 ms).
# Usage: [SETTLE=seconds] [MOCK=c|python] bench/gateway.sh [TOKENS] [ROUNDS]   (needs make bench)
# VEIL, MOCK_BIN and PYTHON name other binaries (scripts/bench-check runs them from a bundle).
# MOCK=c (the default) is build/bench/mock_upstream, a libevent server that writes as fast as it
# can; MOCK=python is the integration tests' mock, which is slower than veil and noisier.
# SETTLE pauses around each request through veil, so that it does not start
# while the machine is still finishing the previous stream.
set -euo pipefail
N=${1:-20000}
R=${2:-7}
VEIL=${VEIL:-build/veil}
MOCK_BIN=${MOCK_BIN:-build/bench/mock_upstream}
PYTHON=${PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
if [ "${MOCK:-c}" = c ]; then
    "$MOCK_BIN" "$tmp/port" &
else
    "$PYTHON" tests/integration/mock_upstream.py "$tmp/port" &
fi
while [ ! -s "$tmp/port" ]; do sleep 0.05; done
UP=$(cat "$tmp/port")
VEIL_STATE_DIR=$tmp/state "$VEIL" serve --port 0 --api-key bench --upstream "http://127.0.0.1:$UP/v1" \
    --upstream-model mock --model-id bench >"$tmp/serve.out" 2>"$tmp/serve.err" &
while ! grep -q "listening on" "$tmp/serve.out" 2>/dev/null; do sleep 0.05; done
PORT=$(grep -o '127.0.0.1:[0-9]*' "$tmp/serve.out" | head -1 | cut -d: -f2)
# max_tokens: veil relays at most what a request allows (the model's 4096 without it)
body() { echo "{\"model\":\"$1\",\"stream\":true,\"max_tokens\":$N,\"messages\":[{\"role\":\"user\",\"content\":\"FAST $N\"}]}"; }
run() { # URL MODEL -> "seconds ttfb"; a short or failed stream is an error, not a fast one
    curl -sfN -o "$tmp/last" -w '%{time_total} %{time_starttransfer}\n' "$1" -H 'Content-Type: application/json' \
        -H 'Authorization: Bearer bench' -d "$(body "$2")"
    [ "$(grep -o 'tok"' "$tmp/last" | wc -l)" -eq "$N" ] || { echo "bench/gateway: incomplete stream from $1" >&2; exit 1; }
}
: >"$tmp/direct"
: >"$tmp/veil"
for _ in $(seq "$R"); do
    run "http://127.0.0.1:$UP/v1/chat/completions" mock >>"$tmp/direct"
    sleep "${SETTLE:-0}"
    run "http://127.0.0.1:$PORT/api/v1/chat/completions" bench >>"$tmp/veil"
    sleep "${SETTLE:-0}"
done
"$PYTHON" - "$N" "$tmp/direct" "$tmp/veil" "$tmp/serve.out" "$tmp/serve.err" <<'PY'
import re, statistics, sys
n = int(sys.argv[1])
def load(p):
    rows = [tuple(map(float, l.split())) for l in open(p) if l.strip()]
    return statistics.median(n / t for t, _ in rows), statistics.median(f for _, f in rows)
d_tps, d_ttfb = load(sys.argv[2])
v_tps, v_ttfb = load(sys.argv[3])
print("gateway: %d tokens per stream, median of %d rounds" % (n, len(open(sys.argv[2]).readlines())))
print("%-22s %12s %14s" % ("path", "tokens/s", "ttfb p50 ms"))
print("%-22s %12.0f %14.2f" % ("direct to upstream", d_tps, d_ttfb * 1000))
print("%-22s %12.0f %14.2f" % ("through veil", v_tps, v_ttfb * 1000))
r = v_tps / d_tps
print("throughput ratio = %.3f (target >= 0.9): %s" % (r, "met" if r >= 0.9 else "NOT met"))
add = (v_ttfb - d_ttfb) * 1000
print("added ttfb p50 = %.2f ms (target < 1 ms): %s" % (add, "met" if add < 1 else "NOT met"))
# veil's own share, from its request log: request to worker start, plus first piece to its write
own = [float(m) for f in sys.argv[4:6] for m in re.findall(r" veil=([0-9.]+)ms", open(f).read())]
if own:
    print("veil's own share of ttfb p50 = %.3f ms over %d streams (its log: queue + thread start + "
          "first piece to the socket)" % (statistics.median(own), len(own)))
    back = [float(m) for f in sys.argv[4:6] for m in re.findall(r" backend=([0-9.]+)ms", open(f).read())]
    if back:
        print("upstream leg p50 = %.3f ms (veil's request to the upstream until its first piece)" % statistics.median(back))
PY
