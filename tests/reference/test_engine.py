"""The C engine against the numpy reference (ref_engine.py), on models that
`veil model synth` writes for each architecture and tensor type: logits of
every prompt position, 64 steps of greedy generation, and the tokenizer on
random text (same ids, and the ids decode back to the text). TAP output."""
import json
import os
import random
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_engine  # noqa: E402

VEIL = os.environ.get("VEIL", "build/veil")
n = 0
failed = 0


def ok(cond, what, detail=""):
    global n, failed
    n += 1
    print(f"{'ok' if cond else 'not ok'} {n} - {what}")
    if not cond:
        failed += 1
        for line in str(detail).splitlines()[:20]:
            print(f"# {line}")


def run(*args, stdin=None):
    return subprocess.run([VEIL, *args], input=stdin, capture_output=True, text=True, check=True).stdout


def random_text(rng):
    parts = ["Hello", " world", "'s", "'LL", " 12345", "3.14", "\n\n", "  ", "\t", " ...", "!?", "é", "ünïcödé",
             "私はデータ", "这是", "Привет", "🙂", "👍🏽", " don't", "x", "\r\n", "    indented", "١٢٣", "Ⅻ", "ß",
             "$%&", "\u00a0", "\u3000", " a", "Zebra", "\u2028", "₂", "ǅ"]
    return "".join(rng.choice(parts) for _ in range(rng.randint(1, 12)))


CONFIGS = [  # (arch, type, spm, seed, tolerance); llama f32 with linear RoPE scaling ×4
    ("qwen2", "f32", False, 11, 1e-4),
    ("qwen3", "f32", False, 12, 1e-4),
    ("llama", "f32", False, 13, 1e-4),
    ("llama", "f32", True, 14, 1e-4),
    ("qwen2", "f16", False, 15, 1e-3),
    ("qwen3", "bf16", False, 16, 1e-3),
    ("llama", "q8_0", False, 17, 1e-3),
    ("qwen2", "q8_0", False, 18, 1e-3),
    ("qwen2", "q4_0", False, 19, 1e-3),
    ("llama", "q5_0", False, 20, 1e-3),
    ("qwen3", "q4_k", False, 21, 1e-3),
    ("llama", "q5_k", False, 22, 1e-3),
    ("qwen2", "q6_k", False, 23, 1e-3),
    ("qwen3", "q4_k_m", False, 24, 1e-3),
]

PROMPT = "What is the capital of France? Answer in one word, please: "

with tempfile.TemporaryDirectory() as tmp:
    rng = random.Random(1234)
    texts = [random_text(rng) for _ in range(300)]
    for arch, typ, spm, seed, tol in CONFIGS:
        name = f"{arch}{' spm' if spm else ''} {typ}"
        path = os.path.join(tmp, f"{arch}-{typ}-{int(spm)}.gguf")
        extra = ["--spm"] if spm else []
        if (arch, typ, spm) == ("llama", "f32", False):
            extra = ["--rope-scale", "4"]
            name += " rope×4"
        # a model a little wider than tiny: 3 layers, GQA 6/2, head dim 32
        if typ in ("q4_k", "q5_k", "q6_k", "q4_k_m"):  # whole 256-element blocks (q4_k_m's output falls back)
            dims = ["--dim", "256", "--layers", "3", "--heads", "8", "--kv-heads", "2", "--head-dim", "32", "--ff", "512"]
        else:
            dims = ["--dim", "96", "--layers", "3", "--heads", "6", "--kv-heads", "2", "--head-dim",
                    "32" if arch == "qwen3" else "16", "--ff", "160"]
        run("model", "synth", "--arch", arch, "--type", typ, "--seed", str(seed), *dims, "--vocab", "1500", "--out",
            path, *extra)
        ref = ref_engine.Model(path)
        tok = ref_engine.Tokenizer(ref.g)
        # tokenizer: the C ids equal the reference's, and decode back to the text
        lines = run("model", "tokenize", path, "--json-lines",
                    stdin="".join(json.dumps(t) + "\n" for t in texts)).splitlines()
        bad_ids, bad_trip = [], []
        for t, line in zip(texts, lines):
            got = json.loads(line)
            want = tok.encode(t)
            if got["ids"] != want:
                bad_ids.append(f"{t!r}: veil {got['ids']} reference {want}")
            dec = got["text"]
            expect = (" " + t) if spm and t else t
            if dec != expect or tok.decode(got["ids"]).decode("utf-8") != expect:
                bad_trip.append(f"{t!r} -> {dec!r}")
        ok(len(lines) == len(texts) and not bad_ids, f"{name}: tokenizer ids equal the reference's on {len(texts)} random texts",
           "\n".join(bad_ids[:5]))
        ok(len(lines) == len(texts) and not bad_trip, f"{name}: tokens decode back to the text", "\n".join(bad_trip[:5]))
        # logits of every prompt position, then 64 greedy steps
        lpath = os.path.join(tmp, "logits.bin")
        out = json.loads(run("model", "run", path, "--prompt", PROMPT, "--chat", "-n", "64", "--json",
                             "--logits-out", lpath))
        prompt, gen = out["prompt"], out["generated"]
        want = ref.logits(prompt + gen)
        got = np.fromfile(lpath, dtype="<f4").reshape(len(prompt), -1).astype(np.float64)
        scale = np.max(np.abs(want[:len(prompt)]))
        per_pos = np.max(np.abs(got - want[:len(prompt)]), axis=1) / scale
        rel = np.max(per_pos)
        if typ not in ("f32", "f16", "bf16"):
            # These kernels round activations to int8 per block of 32. Where veil's float32 and this
            # float64 land on two sides of a rounding step (it happens at a few positions in a hundred),
            # one activation moves by a whole step and what follows by up to ~1e-2: the bound here is
            # 3e-2. The kernels themselves are checked exactly in tests/unit/test_engine.c (against
            # float dot products of the dequantized rows and activations), where no rounding can flip.
            ok(rel < 3e-2, f"{name}: logits of {len(prompt)} prompt positions within 3e-2 (int8 activations; "
                           f"max relative error {rel:.2e}, median {float(np.median(per_pos)):.2e})")
        else:
            ok(rel < tol, f"{name}: logits of {len(prompt)} prompt positions within {tol:g} (max relative error {rel:.2e})")
        agree, detail, tie_at = 0, "", None
        for i, t in enumerate(gen):
            row = want[len(prompt) - 1 + i]
            best = int(np.argmax(row))
            if best != t:
                # veil's pick may differ only where the reference's logits of the two tokens are closer
                # than the logits can differ (float rounding); then the sequences part, and comparing stops
                margin = row[best] - row[t]
                # block-quantized types' activations are rounded to int8 per block: where float32 (veil) and float64 (here)
                # land on two sides of a rounding step, the logits move by up to ~1e-2 of their scale
                near = tol if typ in ("f32", "f16", "bf16") else 1e-2
                if margin <= near * np.max(np.abs(row)):
                    detail = (f"step {i}: veil {t}, reference {best}, within the logit tolerance "
                              f"(margin {margin:.2e}): not a disagreement")
                    tie_at = i
                    agree = len(gen)
                else:
                    detail = f"step {i}: veil {t}, reference {best} (margin {margin:.2e}, max |logit| {np.max(np.abs(row)):.3f})"
                break
            agree += 1
        steps = "64 steps" if tie_at is None else f"{tie_at} steps, then a near tie where the sequences part"
        ok(len(gen) == 64 and agree == 64, f"{name}: greedy generation equals the reference's for {steps}", detail)
        if detail:
            print(f"# {detail}")

    # a model file that is not one: a clear error, no crash
    bad = os.path.join(tmp, "bad.gguf")
    with open(bad, "wb") as f:
        f.write(b"GGUF\x03\x00\x00\x00" + b"\xff" * 16)
    r = subprocess.run([VEIL, "model", "info", bad], capture_output=True, text=True)
    ok(r.returncode == 1 and "GGUF" in r.stderr, "a corrupt GGUF is refused with a message", r.stderr)

print(f"1..{n}")
sys.exit(1 if failed else 0)
