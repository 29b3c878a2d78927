#!/usr/bin/env bash
# bench/llama_cpp.sh: the built-in engine against llama.cpp (node-llama-cpp's prebuilt CPU
# binaries, bench/llama/) on the same GGUF file, with the same threads, prompt length and
# generation length, alternating R times in one run; prints each side's median prefill and decode
# tokens/s and veil's ratios. Issue 23's targets: prefill >= 1.2x and decode >= 1.3x llama.cpp.
# Not part of the test run. scripts/install-deps installs bench/llama (tests/interop/llama_cpp.mjs
# uses it too), or by hand: (cd bench/llama && npm install --omit=optional).
# Usage: bench/llama_cpp.sh MODEL.gguf [THREADS] [PROMPT] [GEN] [R]
set -euo pipefail
cd "$(dirname "$0")/.."
M=$1
T=${2:-2}
P=${3:-128}
G=${4:-32}
R=${5:-3}
VEIL=${VEIL:-build/veil}
[ -d bench/llama/node_modules/node-llama-cpp ] ||
    { echo "bench/llama_cpp: run (cd bench/llama && npm install --omit=optional) first" >&2; exit 2; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for _ in $(seq "$R"); do
    "$VEIL" bench engine --model "$M" --threads "$T" --prompt "$P" --gen "$G" --rounds 1 |
        sed -n 's/^median: .*prefill \([0-9.]*\) tok\/s, decode \([0-9.]*\) tok\/s.*/veil \1 \2/p' >>"$out"
    (cd bench/llama && node run.mjs "$(realpath "../../$M" 2>/dev/null || echo "$M")" "$T" "$P" "$G" 1) |
        /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print("llama.cpp", d["prefill_tps"], d["decode_tps"])' >>"$out"
done
/usr/bin/python3 - "$out" "$M" "$T" "$P" "$G" "$R" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
med = lambda who, i: statistics.median(float(r[i]) for r in rows if r[0] == who)
vp, vd, lp, ld = med("veil", 1), med("veil", 2), med("llama.cpp", 1), med("llama.cpp", 2)
print("%s: %s threads, %s-token prompt, %s tokens decoded, median of %s alternating rounds"
      % tuple(sys.argv[2:7]))
print("%-10s %14s %14s" % ("", "prefill tok/s", "decode tok/s"))
print("%-10s %14.1f %14.1f" % ("veil", vp, vd))
print("%-10s %14.1f %14.1f" % ("llama.cpp", lp, ld))
print("veil / llama.cpp: prefill %.2fx (target >= 1.2), decode %.2fx (target >= 1.3)" % (vp / lp, vd / ld))
PY
