#!/usr/bin/python3
"""veil serve on its built-in engine: the default veil-tiny model made on
first start and reused after, answers streamed and not, seeds, stop strings,
max_tokens, the context_length_exceeded 400, E2EE answers decrypted by a
client, concurrent streams on one copy of the weights, a GGUF given with
--model, and a model file that is not one. TAP output."""
import concurrent.futures
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from servelib import VEIL, check, report, start_serve  # noqa: E402

tmp = tempfile.mkdtemp(prefix="veil-engine-test-")
state = os.path.join(tmp, "state")
KEY = "engine-key"
serve, PORT, OUT, ERR = start_serve(["--api-key", KEY, "--tee", "sim", "--tee-rate-limit", "1000"], state)


def chat(body, port=None):
    c = http.client.HTTPConnection("127.0.0.1", port or PORT, timeout=60)
    c.request("POST", "/api/v1/chat/completions", body=json.dumps(body),
              headers={"Content-Type": "application/json", "Authorization": "Bearer " + KEY})
    r = c.getresponse()
    text = r.read().decode()
    c.close()
    return r.status, text


def events(text):
    return [json.loads(line[6:]) for line in text.split("\n") if line.startswith("data: ") and line != "data: [DONE]"]


def user(text):
    return [{"role": "user", "content": text}]


@check("the first start makes veil-tiny in the state directory and serves it with E2EE")
def _():
    out = open(OUT).read()
    path = os.path.join(state, "models", "veil-tiny.gguf")
    assert "made the built-in model veil-tiny" in out and os.path.getsize(path) > 0, out
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    c.request("GET", "/api/v1/models")
    d = json.loads(c.getresponse().read())
    m = d["data"][0]
    assert m["id"] == "veil-tiny", m
    assert m["model_spec"]["capabilities"]["supportsE2EE"] and m["context_length"] == 4096, m
    info = json.loads(subprocess.run([VEIL, "model", "info", path, "--json"], capture_output=True, text=True,
                                     check=True).stdout)
    assert info["name"] == "veil-tiny" and info["architecture"] == "qwen2", info


@check("a non-streaming answer has content, usage and finish_reason length at max_tokens")
def _():
    st, text = chat({"model": "veil-tiny", "messages": user("Hello"), "max_tokens": 12, "temperature": 0})
    assert st == 200, text
    d = json.loads(text)
    ch = d["choices"][0]
    assert ch["message"]["role"] == "assistant" and isinstance(ch["message"]["content"], str)
    u = d["usage"]
    assert u["prompt_tokens"] > 5 and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"], u
    assert (u["completion_tokens"] == 12) == (ch["finish_reason"] == "length"), d


@check("a streamed answer equals the non-streamed one for the same seed, with usage at the end")
def _():
    body = {"model": "veil-tiny", "messages": user("Tell me a story"), "max_tokens": 20, "seed": 42}
    st, text = chat(body)
    whole = json.loads(text)["choices"][0]["message"]["content"]
    st2, stream = chat(dict(body, stream=True, stream_options={"include_usage": True}))
    assert st == 200 and st2 == 200
    ev = events(stream)
    assert ev[0]["choices"][0]["delta"]["role"] == "assistant"
    pieces = "".join(e["choices"][0]["delta"].get("content", "") for e in ev if e["choices"])
    assert pieces == whole, (pieces, whole)
    assert ev[-1]["choices"] == [] and ev[-1]["usage"]["completion_tokens"] <= 20, ev[-1]
    st3, text3 = chat(dict(body, seed=43))
    assert st3 == 200
    assert stream.endswith("data: [DONE]\n\n")


@check("a stop string taken from a greedy answer ends the answer before it")
def _():
    body = {"model": "veil-tiny", "messages": user("Hi"), "max_tokens": 40, "temperature": 0}
    full = json.loads(chat(body)[1])["choices"][0]["message"]["content"]
    import re
    words = [w for w in re.findall(r"[A-Za-z]{3,}", full) if full.index(w) > 0]
    if not words:
        return
    stop = words[0]
    d = json.loads(chat(dict(body, stop=[stop]))[1])
    got = d["choices"][0]["message"]["content"]
    assert stop not in got and full.startswith(got) and d["choices"][0]["finish_reason"] == "stop", (got, stop)


@check("a prompt longer than the context is a 400 with code context_length_exceeded")
def _():
    st, text = chat({"model": "veil-tiny", "messages": user("word " * 6000)})
    assert st == 400, text
    err = json.loads(text)["error"]
    assert err["code"] == "context_length_exceeded" and err["type"] == "invalid_request_error", err
    assert "4096" in err["message"], err
    assert chat({"model": "veil-tiny", "messages": user("still serving"), "max_tokens": 2})[0] == 200


@check("four concurrent streams all complete, on one copy of the weights")
def _():
    def one(i):
        return chat({"model": "veil-tiny", "messages": user(f"stream {i}"), "max_tokens": 16, "stream": True,
                     "seed": i})
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        outs = list(ex.map(one, range(4)))
    for st, text in outs:
        assert st == 200 and text.endswith("data: [DONE]\n\n"), text[-200:]
    with open(f"/proc/{serve.pid}/smaps") as f:
        maps = f.read()
    assert maps.count("veil-tiny.gguf") >= 1


@check("an E2EE request to veil-tiny is answered in ciphertext that veil chat decrypts")
def _():
    r = subprocess.run([VEIL, "chat", "--base-url", f"http://127.0.0.1:{PORT}/api/v1", "--api-key", KEY, "--model",
                        "veil-tiny", "--allow-simulated", "--verify-signature", "--json", "Hello"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["mode"] == "E2EE" and d["signature_verified"] is True and isinstance(d["answer"], str), d


@check("prefix reuse: the next turn under the same key reuses the history (usage.prompt_tokens_details), "
       "another key does not, and the answer is the one a server without the cache gives")
def _():
    state2 = os.path.join(tmp, "kv")
    p, port, _, _ = start_serve(["--api-key", KEY, "--api-key", "other-key", "--tee", "none"], state2)
    p0, port0, _, _ = start_serve(["--api-key", KEY, "--tee", "none", "--kv-cache-mib", "0"], state2 + "0")
    try:
        history = [{"role": "system", "content": "You answer in one short sentence."},
                   {"role": "user", "content": "Which river runs through Paris, and where does it reach the sea?"}]
        first = {"model": "veil-tiny", "messages": history, "max_tokens": 12, "temperature": 0}
        st, text = chat(first, port)
        assert st == 200, text
        d1 = json.loads(text)
        assert "prompt_tokens_details" not in d1["usage"], d1["usage"]  # a cold start reuses nothing
        second = dict(first, messages=history + [d1["choices"][0]["message"], {"role": "user", "content": "Why?"}])
        st, text = chat(second, port)
        d2 = json.loads(text)
        cached = d2["usage"].get("prompt_tokens_details", {}).get("cached_tokens", 0)
        assert cached >= d1["usage"]["prompt_tokens"] and cached < d2["usage"]["prompt_tokens"], (d1["usage"], d2["usage"])
        st, text = chat(second, port0)  # no cache: the same greedy answer
        assert json.loads(text)["choices"][0]["message"] == d2["choices"][0]["message"], text
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)  # another key: nothing reused
        c.request("POST", "/api/v1/chat/completions", body=json.dumps(second),
                  headers={"Content-Type": "application/json", "Authorization": "Bearer other-key"})
        d3 = json.loads(c.getresponse().read())
        assert "prompt_tokens_details" not in d3["usage"], d3["usage"]
        assert d3["choices"][0]["message"] == d2["choices"][0]["message"]
        # streamed, with usage: the same field in the usage chunk
        st, text = chat(dict(second, stream=True, stream_options={"include_usage": True}), port)
        usage = [e for e in events(text) if e.get("usage")][-1]["usage"]
        assert usage.get("prompt_tokens_details", {}).get("cached_tokens", 0) > 0, usage
    finally:
        for proc in (p, p0):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


@check("veil attest verifies the simulated GPU's evidence; --gpu none has none; --gpu nvml without NVML fails at start")
def _():
    r = subprocess.run([VEIL, "attest", "--base-url", f"http://127.0.0.1:{PORT}/api/v1", "--model", "veil-tiny",
                        "--allow-simulated", "--json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    checks = {c["check"]: c for c in json.loads(r.stdout)["checks"]}
    assert checks["GPU evidence verified"]["result"] == "PASS", checks
    assert checks["GPU reports bind nonce"]["result"] == "PASS", checks
    assert "GPU evidence: SIMULATED" in open(OUT).read()
    p, port, out, _ = start_serve(["--api-key", KEY, "--tee", "sim", "--gpu", "none"], os.path.join(tmp, "nogpu"))
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", "/api/v1/tee/attestation?model=veil-tiny&nonce=" + "ab" * 32)
        d = json.loads(c.getresponse().read())
        assert d["nvidia_payload"] is None and "nvidia" not in d["server_verification"], d["server_verification"]
        assert d["verified"] is True
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(20)
    r = subprocess.run([VEIL, "serve", "--port", "0", "--tee", "sim", "--gpu", "nvml", "--state",
                        os.path.join(tmp, "nvml")], capture_output=True, text=True, timeout=20)
    if "NVML" in r.stderr and r.returncode == 1:
        return
    assert False, ("veil serve --gpu nvml should fail here with an NVML message", r.returncode, r.stderr)


@check("a restart reuses veil-tiny; --model serves a synthesized qwen3 GGUF under its own name")
def _():
    serve.send_signal(signal.SIGTERM)
    assert serve.wait(20) == 0
    p, port, out, _ = start_serve(["--api-key", KEY, "--tee", "none"], state)
    try:
        assert "made the built-in model" not in open(out).read()
        assert chat({"model": "veil-tiny", "messages": user("again"), "max_tokens": 3}, port)[0] == 200
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(20)
    gguf = os.path.join(tmp, "q3.gguf")
    subprocess.run([VEIL, "model", "synth", "--arch", "qwen3", "--name", "Tiny Thinker", "--out", gguf], check=True)
    p, port, out, _ = start_serve(["--api-key", KEY, "--tee", "none", "--model", gguf], os.path.join(tmp, "s2"))
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/api/v1/models")
        m = json.loads(c.getresponse().read())["data"][0]
        assert m["id"] == "tiny-thinker" and m["model_spec"]["capabilities"]["supportsReasoning"], m
        st, text = chat({"model": "tiny-thinker", "messages": user("hi"), "max_tokens": 4,
                         "venice_parameters": {"disable_thinking": True}}, port)
        assert st == 200, text
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(20)


@check("a first start where the state directory's parents do not exist yet makes them")
def _():
    fresh = os.path.join(tmp, "fresh-home")
    env = dict(os.environ, HOME=fresh)
    env.pop("VEIL_STATE_DIR", None)
    env.pop("XDG_STATE_HOME", None)
    p = subprocess.Popen([VEIL, "serve", "--port", "0", "--tee", "none"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, text=True)
    try:
        line = p.stdout.readline()
        assert "made the built-in model veil-tiny" in line, (line, p.stderr.read() if p.poll() is not None else "")
        assert os.path.exists(os.path.join(fresh, ".local", "state", "veil", "models", "veil-tiny.gguf"))
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(20)


@check("--model with a file that is not GGUF fails at start with a message")
def _():
    bad = os.path.join(tmp, "bad.gguf")
    with open(bad, "wb") as f:
        f.write(b"not a model at all, just text" * 4)
    r = subprocess.run([VEIL, "serve", "--port", "0", "--model", bad, "--state", os.path.join(tmp, "s3")],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 1 and "GGUF" in r.stderr, r.stderr


if serve.poll() is None:
    serve.kill()
report()
