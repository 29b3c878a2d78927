#!/usr/bin/env bash
# bench/e2ee_stream.sh: E2EE streams through veil serve. K concurrent streams
# of N tokens each from the mock upstream, with and without E2EE, alternating
# R rounds; prints chunks/s (median) both ways and compares the E2EE rate with
# the single-core chunk-encrypt rate that build/bench/e2ee measures in the
# same run. Target (issue 6): E2EE stream throughput >= 1.6 x that rate.
# Usage: [MOCK=c|python] bench/e2ee_stream.sh [K] [N] [R]   (after make bench; from the repo root)
# MOCK=c (the default) is build/bench/mock_upstream, a libevent upstream that takes little CPU;
# MOCK=python is the integration tests' mock, which takes a large share of the two cores itself.
set -euo pipefail
K=${1:-4}
N=${2:-3000}
R=${3:-5}
VEIL=${VEIL:-build/veil}
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
if [ "${MOCK:-c}" = c ]; then
    build/bench/mock_upstream "$tmp/port" &
else
    /usr/bin/python3 tests/integration/mock_upstream.py "$tmp/port" &
fi
while [ ! -s "$tmp/port" ]; do sleep 0.05; done
VEIL_STATE_DIR=$tmp/state "$VEIL" serve --port 0 --api-key bench --tee sim --tee-rate-limit 1000 \
    --upstream "http://127.0.0.1:$(cat "$tmp/port")/v1" --upstream-model mock --model-id e2ee-bench \
    >"$tmp/serve.out" 2>/dev/null &
while ! grep -q "listening on" "$tmp/serve.out" 2>/dev/null; do sleep 0.05; done
PORT=$(grep -o '127.0.0.1:[0-9]*' "$tmp/serve.out" | head -1 | cut -d: -f2)
URL=http://127.0.0.1:$PORT/api/v1
model_key=$(curl -s "$URL/tee/attestation?model=e2ee-bench" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["signing_key"])')
client_key=$("$VEIL" crypto keygen | sed -n 's/^public_key: //p')
sealed=$(printf 'FAST %s' "$N" | "$VEIL" crypto encrypt --to "$model_key")
# max_tokens: veil relays at most what a request allows (the model's 4096 without it)
plain_body="{\"model\":\"e2ee-bench\",\"stream\":true,\"max_tokens\":$N,\"messages\":[{\"role\":\"user\",\"content\":\"FAST $N\"}]}"
e2ee_body="{\"model\":\"e2ee-bench\",\"stream\":true,\"max_tokens\":$N,\"messages\":[{\"role\":\"user\",\"content\":\"$sealed\"}]}"
one_round() { # e2ee|plain -> chunks per second over K concurrent streams
    local start end
    start=$(date +%s.%N)
    for k in $(seq "$K"); do
        if [ "$1" = e2ee ]; then
            curl -sfN -o "$tmp/out.$k" "$URL/chat/completions" -H 'Authorization: Bearer bench' \
                -H 'Content-Type: application/json' -H "X-Venice-TEE-Client-Pub-Key: $client_key" \
                -H "X-Venice-TEE-Model-Pub-Key: $model_key" -H 'X-Venice-TEE-Signing-Algo: ecdsa' -d "$e2ee_body" &
        else
            curl -sfN -o "$tmp/out.$k" "$URL/chat/completions" -H 'Authorization: Bearer bench' \
                -H 'Content-Type: application/json' -d "$plain_body" &
        fi
    done
    wait $(jobs -p | tail -n "$K")
    end=$(date +%s.%N)
    for k in $(seq "$K"); do
        [ "$(grep -c '"content":"' "$tmp/out.$k")" -ge "$N" ] || { echo "bench: short stream" >&2; exit 1; }
    done
    /usr/bin/python3 -c "print($K * $N / ($end - $start))"
}
: >"$tmp/e2ee"
: >"$tmp/plain"
for _ in $(seq "$R"); do
    one_round plain >>"$tmp/plain"
    one_round e2ee >>"$tmp/e2ee"
done
single=$(build/bench/e2ee --rounds 3 --seconds 0.3 | awk '/^response chunk encrypt/ {print $4}')
/usr/bin/python3 - "$tmp/plain" "$tmp/e2ee" "$single" "$K" "$N" "$R" <<'PY'
import statistics, sys
plain = statistics.median(float(x) for x in open(sys.argv[1]))
e2ee = statistics.median(float(x) for x in open(sys.argv[2]))
single = float(sys.argv[3])
print("e2ee streams: %s concurrent streams x %s tokens, median of %s rounds" % tuple(sys.argv[4:7]))
print("%-34s %12.0f chunks/s" % ("through veil, plain", plain))
print("%-34s %12.0f chunks/s" % ("through veil, E2EE", e2ee))
print("%-34s %12.0f ops/s" % ("single-core chunk encrypt (bench)", single))
r = e2ee / single
print("E2EE / single-core encrypt = %.2f (target >= 1.6): %s" % (r, "met" if r >= 1.6 else "NOT met"))
print("E2EE / plain = %.2f" % (e2ee / plain))
PY
