#!/usr/bin/python3
"""veil serve end to end, against the mock upstream: routes, streaming and
non-streaming answers, every 4xx of protocol.md §3.7, upstream failures,
client disconnects, 200 concurrent streams, garbage on the socket, the key
store, and graceful shutdown. Starts real processes on loopback; TAP output."""
import base64
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from servelib import VEIL, Skip, check, report, results, start_serve, wait_file  # noqa: E402,F401


tmp = tempfile.mkdtemp(prefix="veil-serve-test-")
portfile = os.path.join(tmp, "upstream.port")
upstream = subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "mock_upstream.py"), portfile])
UP = int(wait_file(portfile))
dead = socket.socket()
dead.bind(("127.0.0.1", 0))
DEAD = dead.getsockname()[1]  # bound, never listening: connections are refused
config = os.path.join(tmp, "models.json")
with open(config, "w") as f:
    json.dump({"models": [
        {"id": "e2ee-mock", "upstream": "http://127.0.0.1:%d/v1" % UP, "upstream_model": "mock-model",
         "tee": True, "e2ee": True, "system_prompt": "SERVER PROMPT", "context_length": 8192},
        {"id": "tools-mock", "upstream": "http://127.0.0.1:%d/v1" % UP, "capabilities": {"function_calling": True}},
        {"id": "dead-mock", "upstream": "http://127.0.0.1:%d/v1" % DEAD},
        {"id": "hasty-mock", "upstream": "http://127.0.0.1:%d/v1" % UP, "upstream_timeout": 1},
    ]}, f)
KEY = "test-key-123"
serve, PORT, SERVE_OUT, SERVE_ERR = start_serve(["--config", config, "--api-key", KEY, "--upstream-timeout", "30",
                                                 "--max-body", "65536", "--tee", "sim", "--tee-rate-limit", "1000"], tmp)


def request(method, path, body=None, key=KEY, headers=None, raw=None):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=20)
    h = {"Content-Type": "application/json"}
    if key:
        h["Authorization"] = "Bearer " + key
    h.update(headers or {})
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    text = r.read().decode()
    c.close()
    return r.status, r.getheader("Content-Type"), text


def chat(body, **kw):
    return request("POST", "/api/v1/chat/completions", body, **kw)


def events(text):
    return [line[6:] for line in text.split("\n") if line.startswith("data: ")]


def expect_error(status_text, status, message, etype="invalid_request_error"):
    st, ctype, text = status_text
    assert st == status, (st, text)
    assert ctype == "application/json", ctype
    err = json.loads(text)["error"]
    assert err["message"] == message, err
    assert err["type"] == etype, err
    assert "param" in err and "code" in err


def msgs(text):
    return [{"role": "user", "content": text}]


@check("GET /api/v1/models lists the models in Venice's shape")
def _():
    st, _, text = request("GET", "/api/v1/models", key=None)
    assert st == 200
    d = json.loads(text)
    assert d["object"] == "list" and d["type"] == "text"
    ids = [m["id"] for m in d["data"]]
    assert ids == ["e2ee-mock", "tools-mock", "dead-mock", "hasty-mock"], ids
    m = d["data"][0]
    caps = m["model_spec"]["capabilities"]
    assert caps["supportsE2EE"] and caps["supportsTeeAttestation"], caps
    assert m["context_length"] == 8192 and m["model_spec"]["privacy"] == "private"
    assert json.loads(request("GET", "/api/v1/models?type=image", key=None)[2])["data"] == []
    assert len(json.loads(request("GET", "/api/v1/models?type=all", key=None)[2])["data"]) == 4
    assert json.loads(request("GET", "/v1/models", key=None)[2])["object"] == "list"


@check("health and readiness")
def _():
    assert json.loads(request("GET", "/healthz", key=None)[2]) == {"status": "ok"}
    assert json.loads(request("GET", "/readyz", key=None)[2]) == {"status": "ready"}


@check("non-streaming answer, usage, the server's system prompt reaches the upstream")
def _():
    st, _, text = chat({"model": "e2ee-mock", "messages": msgs("hello world")})
    assert st == 200, text
    d = json.loads(text)
    assert d["object"] == "chat.completion" and d["id"].startswith("chatcmpl-") and len(d["id"]) == 41
    assert d["choices"][0]["message"] == {"role": "assistant", "content": "echo: hello world"}, d
    assert d["choices"][0]["finish_reason"] == "stop"
    assert d["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    body = json.loads(request("GET", "/stats", key=None)[2]) if False else None
    c = http.client.HTTPConnection("127.0.0.1", UP)
    c.request("GET", "/stats")
    last = json.loads(c.getresponse().read())["last_body"]
    assert last["model"] == "mock-model" and last["stream"] is True, last
    assert last["messages"][0] == {"role": "system", "content": "SERVER PROMPT"}, last["messages"]
    assert "venice_parameters" not in last


@check("include_venice_system_prompt false leaves the server prompt out")
def _():
    chat({"model": "e2ee-mock", "messages": msgs("x"), "venice_parameters": {"include_venice_system_prompt": False}})
    c = http.client.HTTPConnection("127.0.0.1", UP)
    c.request("GET", "/stats")
    last = json.loads(c.getresponse().read())["last_body"]
    assert last["messages"] == [{"role": "user", "content": "x"}], last


@check("streaming: role first, one event per write, finish, usage only when asked, [DONE]")
def _():
    st, ctype, text = chat({"model": "e2ee-mock", "stream": True, "stream_options": {"include_usage": True},
                            "messages": msgs("a b c")})
    assert st == 200 and ctype == "text/event-stream", (st, ctype)
    ev = events(text)
    assert ev[-1] == "[DONE]"
    chunks = [json.loads(e) for e in ev[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len({c["id"] for c in chunks}) == 1
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert content == "echo: a b c", content
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    st, _, text = chat({"model": "e2ee-mock", "stream": True, "messages": msgs("a b c")})
    assert all(json.loads(e)["choices"] for e in events(text)[:-1]), "usage chunk without include_usage"


@check("the relay keeps every upstream content event exactly, whatever its spelling (event-shape cache)")
def _():
    from mock_upstream import shape_events
    expect = []
    for e in shape_events("mock-model"):
        d = json.loads(e) if isinstance(e, str) else e
        delta = (d.get("choices") or [{}])[0].get("delta", {})
        c, r = delta.get("content") or "", delta.get("reasoning_content") or delta.get("reasoning") or ""
        if c or r:
            expect.append((c, r))
    assert len(expect) > 30, len(expect)
    st, _, text = chat({"model": "e2ee-mock", "stream": True, "messages": msgs("SHAPES")})
    assert st == 200, (st, text)
    got = [(c["choices"][0]["delta"].get("content", ""), c["choices"][0]["delta"].get("reasoning_content", ""))
           for c in map(json.loads, events(text)[1:-1]) if c["choices"] and not c["choices"][0]["finish_reason"]]
    assert got == expect, [(i, g, x) for i, (g, x) in enumerate(zip(got, expect)) if g != x] or (len(got), len(expect))
    d = json.loads(chat({"model": "e2ee-mock", "messages": msgs("SHAPES")})[2])
    assert d["choices"][0]["message"]["content"] == "".join(c for c, _ in expect), d
    assert d["choices"][0]["message"]["reasoning_content"] == "".join(r for _, r in expect), d


@check("max_tokens ends with finish_reason length")
def _():
    d = json.loads(chat({"model": "e2ee-mock", "max_tokens": 2, "messages": msgs("one two three four")})[2])
    assert d["choices"][0]["message"]["content"] == "echo: one" and d["choices"][0]["finish_reason"] == "length", d


@check("reasoning_content is relayed")
def _():
    d = json.loads(chat({"model": "e2ee-mock", "messages": msgs("REASON x")})[2])
    assert d["choices"][0]["message"]["reasoning_content"] == "thinking...", d


@check("401: missing and wrong keys")
def _():
    expect_error(chat({"model": "e2ee-mock", "messages": msgs("x")}, key=None), 401,
                 "Missing API key: send Authorization: Bearer <key>", "authentication_error")
    expect_error(chat({"model": "e2ee-mock", "messages": msgs("x")}, key="wrong"), 401, "Invalid API key",
                 "authentication_error")


@check("400s with protocol.md's messages")
def _():
    expect_error(chat(None, raw="{not json"), 400, "Invalid JSON body")
    expect_error(chat({"model": "e2ee-mock", "messages": msgs("x"), "foo": 1}), 400, "Unrecognized request parameter: foo")
    expect_error(chat({"model": "e2ee-mock", "messages": msgs("x"), "tools": []}), 400,
                 "tools is not supported by this model")
    expect_error(chat({"model": "e2ee-mock", "messages": msgs("x"), "response_format": {"type": "json_object"}}), 400,
                 "response_format is not supported by this model")
    expect_error(chat({"model": "e2ee-mock", "messages": msgs("x"), "logprobs": True}), 400,
                 "logprobs is not supported by this model")
    expect_error(chat({"model": "e2ee-mock", "messages": msgs("x"), "venice_parameters": {"enable_web_search": "on"}}),
                 400, "Web search is not supported")
    expect_error(chat({"model": "e2ee-mock", "messages": msgs("x"), "n": 2}), 400, "n must be 1")
    expect_error(chat({"model": "e2ee-mock", "messages": msgs("x"), "temperature": 3}), 400,
                 "temperature must be a number between 0 and 2")
    expect_error(chat({"model": "e2ee-mock", "messages": [{"role": "robot", "content": "x"}]}), 400,
                 "messages[0].role must be one of system, developer, user, assistant, tool")
    expect_error(chat({"model": "e2ee-mock", "messages": []}), 400, "messages must be a non-empty array")
    st, _, text = chat({"model": "tools-mock", "messages": msgs("x"), "tools": [], "tool_choice": "none"})
    assert st == 200, text
    assert json.loads(chat({"model": "e2ee-mock", "messages": msgs("x"),
                            "venice_parameters": {"enable_web_search": "auto"}})[2])["object"] == "chat.completion"


@check("404, 405, 413, 415 in the error shape")
def _():
    expect_error(chat({"model": "nope", "messages": msgs("x")}), 404, "Model not found", "not_found_error")
    expect_error(request("GET", "/api/v1/nothing"), 404, "Not found", "not_found_error")
    expect_error(request("GET", "/api/v1/chat/completions"), 405, "Method not allowed")
    expect_error(request("DELETE", "/api/v1/models"), 405, "Method not allowed")
    big = json.dumps({"model": "e2ee-mock", "messages": msgs("x" * 65500)})  # just over --max-body 65536
    expect_error(chat(None, raw=big), 413, "Request body is too large")
    expect_error(chat({"model": "e2ee-mock", "messages": msgs("x")}, headers={"Content-Type": "text/plain"}), 415,
                 "Content-Type must be application/json")


@check("upstream failures: 4xx passed through, 5xx and refusal 502, silence 504, mid-stream error event")
def _():
    expect_error(chat({"model": "e2ee-mock", "messages": msgs("FAIL400")}), 400, "upstream says: prompt rejected")
    expect_error(chat({"model": "e2ee-mock", "messages": msgs("FAIL500")}), 502, "Upstream failed", "server_error")
    expect_error(chat({"model": "dead-mock", "messages": msgs("x")}), 502, "Upstream unavailable", "server_error")
    t0 = time.time()
    expect_error(chat({"model": "hasty-mock", "messages": msgs("HANG")}), 504, "Upstream timed out", "server_error")
    assert time.time() - t0 < 10
    st, _, text = chat({"model": "e2ee-mock", "stream": True, "messages": msgs("MIDERROR x")})
    ev = events(text)
    assert st == 200 and "[DONE]" not in ev, ev
    assert json.loads(ev[-1])["error"]["message"] == "upstream broke mid-stream", ev


def upstream_stats():
    c = http.client.HTTPConnection("127.0.0.1", UP)
    c.request("GET", "/stats")
    return json.loads(c.getresponse().read())


@check("curl streams an answer as any client would")
def _():
    r = subprocess.run(["curl", "-sN", "http://127.0.0.1:%d/api/v1/chat/completions" % PORT, "-H",
                        "Authorization: Bearer " + KEY, "-H", "Content-Type: application/json", "-d",
                        json.dumps({"model": "e2ee-mock", "stream": True, "messages": msgs("via curl")})],
                       capture_output=True, text=True, timeout=30)
    ev = events(r.stdout)
    assert ev[-1] == "[DONE]", r.stdout
    assert "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in ev[:-1]) == "echo: via curl"


@check("a client that disconnects mid-stream cancels the upstream request")
def _():
    before = upstream_stats()["cancelled"]
    s = socket.create_connection(("127.0.0.1", PORT))
    body = json.dumps({"model": "e2ee-mock", "stream": True, "messages": msgs("SLOW " + "w " * 50)})
    s.sendall(("POST /api/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
               "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (KEY, len(body), body)).encode())
    assert b"data: " in s.recv(65536)
    s.close()
    end = time.time() + 5
    while time.time() < end and upstream_stats()["cancelled"] == before:
        time.sleep(0.1)
    assert upstream_stats()["cancelled"] > before, "upstream stream was not cut"


@check("200 concurrent streams all complete with their own content")
def _():
    errors = []

    def one(i):
        try:
            st, _, text = chat({"model": "e2ee-mock", "stream": True, "messages": msgs("client %d here" % i)})
            chunks = [json.loads(e) for e in events(text)[:-1]]
            got = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
            if st != 200 or got != "echo: client %d here" % i or events(text)[-1] != "[DONE]":
                errors.append((i, st, got))
        except Exception as e:
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:5]


@check("garbage on the socket does not hurt the server")
def _():
    for junk in [b"\x00\xff" * 500, b"GET / HTTP/9.9\r\n\r\n", b"POST /api/v1/chat/completions HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                 b"A" * 70000 + b"\r\n\r\n", b"GET /api/v1/models HTTP/1.1\r\nHost: x\r\nX: " + b"y" * 100000 + b"\r\n\r\n"]:
        s = socket.create_connection(("127.0.0.1", PORT))
        try:
            s.sendall(junk)
            s.settimeout(2)
            s.recv(4096)
        except OSError:
            pass
        s.close()
    assert request("GET", "/healthz", key=None)[0] == 200
    assert chat({"model": "e2ee-mock", "messages": msgs("still alive")})[0] == 200


def attest(path, **params):
    from urllib.parse import urlencode
    st, _, text = request("GET", path + "?" + urlencode(params), key=None)
    return st, json.loads(text)


@check("attestation: nonce echoed, REPORTDATA binds address and nonce, the server verified it")
def _():
    nonce = os.urandom(32).hex().upper()  # echoed exactly as sent
    st, d = attest("/api/v1/tee/attestation", model="e2ee-mock", nonce=nonce)
    assert st == 200, d
    assert d["nonce"] == nonce and d["request_nonce"] == nonce and d["nonce_source"] == "client"
    assert d["model"] == "e2ee-mock" and d["simulated"] is True and d["tee_provider"] == "veil-simulated"
    assert d["tee_hardware"] == "simulated" and d["signing_algo"] == "ecdsa"
    assert d["verified"] is True, d["server_verification"]
    sv = d["server_verification"]
    assert sv["tdx"]["valid"] and sv["tdx"]["tcbStatus"] == "UpToDate", sv
    assert sv["signingAddressBinding"]["bound"] and sv["nonceBinding"] == {"bound": True, "method": "raw"}
    assert d["signing_key"] == d["signing_public_key"] and len(d["signing_key"]) == 130
    quote = bytes.fromhex(d["intel_quote"])
    rd = quote[568:632]
    assert rd[:20].hex() == d["signing_address"][2:].lower() and rd[20:32] == bytes(12)
    assert rd[32:].hex() == nonce.lower()
    # the address is the key's
    addr = subprocess.run([VEIL, "crypto", "address", d["signing_key"]], capture_output=True, text=True).stdout.strip()
    assert addr == d["signing_address"], (addr, d["signing_address"])
    assert d["info"]["app_name"] == "veil"
    # the simulated TEE brings a simulated GPU (--gpu auto): its evidence answers the same nonce
    gpu = json.loads(d["nvidia_payload"])
    assert gpu["nonce"] == nonce.lower() and len(gpu["evidence_list"]) == 1 and gpu["arch"] == "HOPPER", gpu
    assert sv["nvidia"]["valid"] and sv["nvidia"]["signatureVerified"], sv
    assert sv["nvidiaNonceBinding"] == {"bound": True}, sv
    assert d["info"]["rtmr3"] == quote[520:568].hex()


@check("attestation: the quote verifies independently with the simulation root, collateral and event log")
def _():
    st, d = attest("/api/v1/tee/attestation", model="e2ee-mock", nonce=os.urandom(32).hex())
    env = dict(os.environ, VEIL_STATE_DIR=tmp)
    files = {}
    for name, content in [("q.hex", d["intel_quote"]), ("log.json", json.dumps(d["event_log"]))]:
        files[name] = os.path.join(tmp, name)
        open(files[name], "w").write(content)
    root = subprocess.run([VEIL, "tee", "sim-root"], env=env, capture_output=True, text=True).stdout
    open(os.path.join(tmp, "root.pem"), "w").write(root)
    subprocess.run([VEIL, "tee", "sim-collateral", "--out", os.path.join(tmp, "col.json")], env=env, check=True)
    r = subprocess.run([VEIL, "quote", "verify", "--root", os.path.join(tmp, "root.pem"), "--collateral",
                        os.path.join(tmp, "col.json"), "--event-log", files["log.json"], files["q.hex"]],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "UpToDate" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([VEIL, "quote", "verify", files["q.hex"]], capture_output=True, text=True)
    assert r.returncode == 1 and "ROOT_NOT_TRUSTED" in r.stdout, r.stdout


@check("attestation: nonce rules, unknown and non-TEE models, server nonces share a quote")
def _():
    for bad in ["abcd", "zz" * 32, "00" * 33]:
        st, d = attest("/api/v1/tee/attestation", model="e2ee-mock", nonce=bad)
        assert st == 400 and d["error"]["message"] == "Nonce must be exactly 32 bytes (64 hex characters)", d
    st, d = attest("/api/v1/tee/attestation", model="nope", nonce="00" * 32)
    assert st == 404 and d["error"]["message"] == "Model not found"
    st, d = attest("/api/v1/tee/attestation", model="tools-mock", nonce="00" * 32)
    assert st == 400 and d["error"]["message"] == "Model does not support TEE attestation", d
    st, a = attest("/api/v1/tee/attestation", model="e2ee-mock")
    st, b = attest("/api/v1/tee/attestation", model="e2ee-mock")
    assert a["nonce_source"] == "server" and len(a["nonce"]) == 64 and a["verified"]
    assert a["intel_quote"] == b["intel_quote"] and a["nonce"] == b["nonce"]


@check("attestation: NEAR dialect report, nonce messages, signing address filter")
def _():
    nonce = os.urandom(32).hex()
    st, d = attest("/v1/attestation/report", model="e2ee-mock", nonce=nonce, signing_algo="ecdsa")
    assert st == 200, d
    assert d["model_name"] == "e2ee-mock" and d["request_nonce"] == nonce and d["signing_algo"] == "ecdsa"
    assert len(d["signing_public_key"]) == 128 and d["all_attestations"][0]["intel_quote"] == d["intel_quote"]
    st, d2 = attest("/v1/attestation/report", model="e2ee-mock", nonce="zz" * 32)
    assert st == 400 and d2["error"]["message"] == "Nonce must be hex-encoded", d2
    st, d2 = attest("/v1/attestation/report", model="e2ee-mock", nonce="00" * 16)
    assert st == 400 and d2["error"]["message"] == "Nonce must be 32 bytes", d2
    st, d2 = attest("/v1/attestation/report", model="e2ee-mock", nonce=nonce, signing_address="0x" + "ee" * 20)
    assert st == 404 and d2["error"]["message"] == "Signing address not found on this server", d2
    st, d2 = attest("/v1/attestation/report", model="e2ee-mock", nonce=nonce, signing_address=d["signing_address"].lower())
    assert st == 200


@check("TEE models answer with X-Venice-TEE headers; E2EE header rules in order")
def _():
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=20)
    c.request("POST", "/api/v1/chat/completions", body=json.dumps({"model": "e2ee-mock", "messages": msgs("x")}),
              headers={"Authorization": "Bearer " + KEY, "Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    assert r.getheader("X-Venice-TEE") == "true" and r.getheader("X-Venice-TEE-Provider") == "veil-simulated"
    key = subprocess.run([VEIL, "crypto", "keygen"], capture_output=True, text=True).stdout.split("public_key: ")[1].split()[0]
    body = {"model": "e2ee-mock", "stream": True, "messages": msgs("x")}
    h = {"X-Venice-TEE-Client-Pub-Key": key}
    expect_error(chat(body, headers=h), 400, "E2EE requires X-Venice-TEE-Client-Pub-Key, X-Venice-TEE-Model-Pub-Key "
                                            "and X-Venice-TEE-Signing-Algo together")
    h.update({"X-Venice-TEE-Model-Pub-Key": key, "X-Venice-TEE-Signing-Algo": "rsa"})
    expect_error(chat(body, headers=h), 400, "Unsupported signing algorithm")
    h.update({"X-Venice-TEE-Signing-Algo": "ecdsa", "X-Venice-TEE-Client-Pub-Key": "04" + "00" * 64})
    expect_error(chat(body, headers=h), 400, "Invalid public key")
    expect_error(chat(dict(body, model="nope"), headers=h), 404, "Model not found", "not_found_error")
    n = {"X-Client-Pub-Key": key}
    expect_error(request("POST", "/v1/chat/completions", body, headers=n), 400,
                 "Both X-Signing-Algo and X-Client-Pub-Key headers must be present together")
    n["X-Signing-Algo"] = "rsa"
    expect_error(request("POST", "/v1/chat/completions", body, headers=n), 400,
                 "Invalid X-Signing-Algo: rsa. Must be 'ecdsa' or 'ed25519'")
    n.update({"X-Signing-Algo": "ecdsa", "X-Client-Pub-Key": "xyz"})
    expect_error(request("POST", "/v1/chat/completions", body, headers=n), 400, "X-Client-Pub-Key must be valid hex")
    n["X-Client-Pub-Key"] = "00" * 33
    expect_error(request("POST", "/v1/chat/completions", body, headers=n), 400,
                 "ECDSA client public key must be 64 or 65 bytes, got 33")


@check("the page's complete Python E2EE example runs against veil serve and prints the decrypted answer")
def _():
    env = dict(os.environ, API_KEY_VENICE=KEY, VEIL_BASE_URL="http://127.0.0.1:%d/api/v1" % PORT,
               VEIL_MODEL="e2ee-mock")
    r = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "page", "e2ee_example.py")], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "echo: What is 2+2? Answer briefly." in r.stdout, r.stdout
    # what the upstream saw was the plaintext, which only the enclave could produce
    c = http.client.HTTPConnection("127.0.0.1", UP)
    c.request("GET", "/stats")
    last = json.loads(c.getresponse().read())["last_body"]
    assert last["messages"] == [{"role": "user", "content": "What is 2+2? Answer briefly."}], last


def seal_to(pub_hex, text):
    return subprocess.run([VEIL, "crypto", "encrypt", "--to", pub_hex], input=text.encode(),
                          capture_output=True).stdout.decode().strip()


def keypair():
    out = subprocess.run([VEIL, "crypto", "keygen"], capture_output=True, text=True).stdout
    return out.split("private_key: ")[1].split()[0], out.split("public_key: ")[1].split()[0]


def open_with(priv, hexct):
    r = subprocess.run([VEIL, "crypto", "decrypt", "--key", priv], input=hexct.encode(), capture_output=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.decode()


@check("E2EE: every chunk is a fresh envelope to the client key; the stream decrypts to the answer")
def _():
    st, d = attest("/api/v1/tee/attestation", model="e2ee-mock", nonce=os.urandom(32).hex())
    model_key = d["signing_key"]
    priv, pub = keypair()
    h = {"X-Venice-TEE-Client-Pub-Key": pub, "X-Venice-TEE-Model-Pub-Key": model_key[2:],
         "X-Venice-TEE-Signing-Algo": "ecdsa"}
    body = {"model": "e2ee-mock", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "system", "content": seal_to(model_key, "be brief")},
                         {"role": "assistant", "content": "plain earlier answer"},
                         {"role": "user", "content": seal_to(model_key, "secret words here")}]}
    st, _, text = chat(body, headers=h)
    assert st == 200, text
    chunks = [json.loads(e) for e in events(text)[:-1]]
    pieces = [c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]]
    sealed = [p for p in pieces if p]
    assert len(sealed) == 4 and all(len(p) >= 186 for p in sealed), pieces
    assert len({p[:130] for p in sealed}) == len(sealed), "ephemeral keys reused"
    assert "".join(open_with(priv, p) for p in sealed) == "echo: secret words here"
    assert chunks[-1]["usage"]["completion_tokens"] == 4
    c = http.client.HTTPConnection("127.0.0.1", UP)
    c.request("GET", "/stats")
    last = json.loads(c.getresponse().read())["last_body"]
    assert last["messages"][0] == {"role": "system", "content": "be brief"}, last  # no server prompt under E2EE
    assert last["messages"][1]["content"] == "plain earlier answer"


@check("E2EE: every row of the error table of protocol.md 3.3")
def _():
    st, d = attest("/api/v1/tee/attestation", model="e2ee-mock", nonce=os.urandom(32).hex())
    model_key = d["signing_key"]
    priv, pub = keypair()
    other_priv, other_pub = keypair()
    h = {"X-Venice-TEE-Client-Pub-Key": pub, "X-Venice-TEE-Model-Pub-Key": model_key, "X-Venice-TEE-Signing-Algo": "ecdsa"}
    good = seal_to(model_key, "hi")

    def body(**kw):
        b = {"model": "e2ee-mock", "stream": True, "messages": [{"role": "user", "content": good}]}
        b.update(kw)
        return b
    expect_error(chat(body(), headers=dict(h, **{"X-Venice-TEE-Model-Pub-Key": other_pub})), 400,
                 "Model public key does not match this TEE")
    expect_error(chat(body(model="tools-mock"), headers=h), 400, "Model does not support E2EE")
    expect_error(chat(body(stream=False), headers=h), 400, "E2EE requires streaming")
    expect_error(chat(body(tools=[]), headers=h), 400, "Function calling is not supported with E2EE")
    expect_error(chat(body(venice_parameters={"enable_web_search": "on"}), headers=h), 400,
                 "Web search is not supported with E2EE")
    expect_error(chat(body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
                      headers=h), 400, "File uploads are not supported with E2EE")
    expect_error(chat(body(messages=[{"role": "user", "content": "What is 2+2?"}]), headers=h), 400,
                 "Encrypted field is not valid hex")
    expect_error(chat(body(messages=[{"role": "system", "content": "ab" * 92}]), headers=h), 400,
                 "Encrypted field is not valid hex")
    expect_error(chat(body(messages=[{"role": "user", "content": seal_to(other_pub, "not for you")}]), headers=h), 400,
                 "Failed to decrypt field")
    bad_utf8 = subprocess.run([VEIL, "crypto", "encrypt", "--to", model_key], input=b"\xff\xfe",
                              capture_output=True).stdout.decode().strip()
    expect_error(chat(body(messages=[{"role": "user", "content": bad_utf8}]), headers=h), 400,
                 "Decrypted content is not valid UTF-8")
    # enable_e2ee false: TEE-only, plaintext accepted even with the headers
    st, _, text = chat(body(messages=[{"role": "user", "content": "plain"}], venice_parameters={"enable_e2ee": False}),
                       headers=h)
    assert st == 200 and "echo: plain" in "".join(
        json.loads(e)["choices"][0]["delta"].get("content", "") for e in events(text)[:-1] if json.loads(e)["choices"])


@check("E2EE, NEAR dialect: non-streaming allowed, message.content sealed; Decryption failed")
def _():
    st, d = attest("/api/v1/tee/attestation", model="e2ee-mock", nonce=os.urandom(32).hex())
    model_key = d["signing_key"]
    priv, pub = keypair()
    h = {"X-Signing-Algo": "ecdsa", "X-Client-Pub-Key": pub[2:]}
    b = {"model": "e2ee-mock", "messages": [{"role": "user", "content": seal_to(model_key, "near side")}]}
    st, _, text = request("POST", "/v1/chat/completions", b, headers=h)
    assert st == 200, text
    sealed = json.loads(text)["choices"][0]["message"]["content"]
    assert open_with(priv, sealed) == "echo: near side"
    b["messages"][0]["content"] = seal_to(pub, "wrong key")
    expect_error(request("POST", "/v1/chat/completions", b, headers=h), 400, "Decryption failed")
    b["messages"] = [{"role": "assistant", "content": "plain"}, {"role": "user", "content": seal_to(model_key, "x")}]
    expect_error(request("POST", "/v1/chat/completions", b, headers=h), 400, "Encrypted field is not valid hex")


@check("a marker prompt sent over E2EE reaches neither the log nor any file in the state directory")
def _():
    st, d = attest("/api/v1/tee/attestation", model="e2ee-mock", nonce=os.urandom(32).hex())
    priv, pub = keypair()
    marker = "MARKER-E2EE-" + os.urandom(8).hex()
    h = {"X-Venice-TEE-Client-Pub-Key": pub, "X-Venice-TEE-Model-Pub-Key": d["signing_key"],
         "X-Venice-TEE-Signing-Algo": "ecdsa"}
    st, _, text = chat({"model": "e2ee-mock", "stream": True,
                        "messages": [{"role": "user", "content": seal_to(d["signing_key"], marker)}]}, headers=h)
    assert st == 200
    assert marker not in open(SERVE_ERR).read() and marker not in open(SERVE_OUT).read()
    for root, _, files in os.walk(tmp):
        for f in files:
            path = os.path.join(root, f)
            if path.endswith((".json", ".hex")) or "/ks/" in path or "/rl/" in path:
                continue  # files this test itself wrote
            assert marker.encode() not in open(path, "rb").read(), path


def raw_chat(body_bytes, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    h = {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"}
    h.update(headers or {})
    c.request("POST", "/api/v1/chat/completions", body=body_bytes, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def verify_signature(req_bytes, resp_bytes, request_id, model):
    import hashlib
    st, sig = attest("/api/v1/tee/signature", model=model, request_id=request_id)
    assert st == 200, sig
    want = hashlib.sha256(req_bytes).hexdigest() + ":" + hashlib.sha256(resp_bytes).hexdigest()
    assert sig["text"] == want, (sig["text"], want)
    assert sig["request_id"] == request_id and sig["model"] == model and sig["signing_algo"] == "ecdsa"
    signer = subprocess.run([VEIL, "crypto", "recover", "--signature", sig["signature"], sig["text"]],
                            capture_output=True, text=True).stdout.strip()
    st, att = attest("/api/v1/tee/attestation", model="e2ee-mock", nonce=os.urandom(32).hex())
    assert signer == att["signing_address"] == sig["signing_address"], (signer, att["signing_address"])
    return sig


@check("signatures: the client recomputes both hashes and recovers the attested signer (stream, JSON, E2EE)")
def _():
    body = json.dumps({"model": "e2ee-mock", "stream": True, "messages": msgs("sign this stream")}).encode()
    st, data = raw_chat(body)
    assert st == 200 and data.endswith(b"data: [DONE]\n\n")
    rid = json.loads(events(data.decode())[0])["id"]
    verify_signature(body, data, rid, "e2ee-mock")  # asked the moment [DONE] was read
    body = json.dumps({"model": "e2ee-mock", "messages": msgs("sign this json")}).encode()
    st, data = raw_chat(body)
    verify_signature(body, data, json.loads(data)["id"], "e2ee-mock")
    st, d = attest("/api/v1/tee/attestation", model="e2ee-mock", nonce=os.urandom(32).hex())
    priv, pub = keypair()
    body = json.dumps({"model": "e2ee-mock", "stream": True,
                       "messages": [{"role": "user", "content": seal_to(d["signing_key"], "sealed")}]}).encode()
    st, data = raw_chat(body, {"X-Venice-TEE-Client-Pub-Key": pub, "X-Venice-TEE-Model-Pub-Key": d["signing_key"],
                               "X-Venice-TEE-Signing-Algo": "ecdsa"})
    assert st == 200
    verify_signature(body, data, json.loads(events(data.decode())[0])["id"], "e2ee-mock")


@check("signatures: NEAR route, unknown ids, wrong model, and a stream cut short leaves none")
def _():
    import hashlib
    body = json.dumps({"model": "e2ee-mock", "messages": msgs("near sig")}).encode()
    st, data = raw_chat(body)
    rid = json.loads(data)["id"]
    c = http.client.HTTPConnection("127.0.0.1", PORT)
    c.request("GET", "/v1/signature/%s?signing_algo=ecdsa" % rid)
    near = json.loads(c.getresponse().read())
    assert near["text"] == "e2ee-mock:%s:%s" % (hashlib.sha256(body).hexdigest(), hashlib.sha256(data).hexdigest()), near
    signer = subprocess.run([VEIL, "crypto", "recover", "--signature", near["signature"], near["text"]],
                            capture_output=True, text=True).stdout.strip()
    assert signer == near["signing_address"]
    c.request("GET", "/v1/signature/chatcmpl-nope?signing_algo=ecdsa")
    r = c.getresponse()
    assert r.status == 404 and json.loads(r.read())["error"]["message"] == "Chat id not found or expired"
    st, d = attest("/api/v1/tee/signature", model="e2ee-mock", request_id="chatcmpl-" + "0" * 32)
    assert st == 404 and d["error"]["message"] == "Signature not found or expired"
    st, d = attest("/api/v1/tee/signature", model="tools-mock", request_id=rid)
    assert st == 404, d
    s2 = socket.create_connection(("127.0.0.1", PORT))
    b = json.dumps({"model": "e2ee-mock", "stream": True, "messages": msgs("SLOW " + "w " * 20)})
    s2.sendall(("POST /api/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (KEY, len(b), b)).encode())
    first = s2.recv(65536).decode(errors="replace")
    cut_id = first.split('"id":"')[1].split('"')[0]
    s2.close()
    time.sleep(1.5)
    st, d = attest("/api/v1/tee/signature", model="e2ee-mock", request_id=cut_id)
    assert st == 404, d


@check("veil attest verifies locally: accepted with --allow-simulated, refused without")
def _():
    base = "http://127.0.0.1:%d/api/v1" % PORT
    r = subprocess.run([VEIL, "attest", "--base-url", base, "--model", "e2ee-mock", "--allow-simulated", "--json"],
                       capture_output=True, text=True, timeout=60)
    rep = json.loads(r.stdout)
    assert r.returncode == 0 and rep["accepted"] and rep["simulated"], r.stdout
    assert {c["check"]: c["result"] for c in rep["checks"]}["REPORTDATA binds nonce"] == "PASS"
    r = subprocess.run([VEIL, "attest", "--base-url", base, "--model", "e2ee-mock"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and "REJECTED" in r.stdout and "simulated" in r.stdout, r.stdout
    r = subprocess.run([VEIL, "attest", "--base-url", base, "--model", "missing", "--allow-simulated"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Model not found" in r.stderr, r.stderr


@check("veil attest refuses a replayed attestation (a hostile server ignoring the nonce)")
def _():
    from http.server import BaseHTTPRequestHandler, HTTPServer
    st, stale = attest("/api/v1/tee/attestation", model="e2ee-mock", nonce=os.urandom(32).hex())
    assert st == 200

    class Replay(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            body = json.dumps(stale).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    hostile = HTTPServer(("127.0.0.1", 0), Replay)
    t = threading.Thread(target=hostile.serve_forever, daemon=True)
    t.start()
    r = subprocess.run([VEIL, "attest", "--base-url", "http://127.0.0.1:%d/api/v1" % hostile.server_address[1],
                        "--model", "e2ee-mock", "--allow-simulated"], capture_output=True, text=True, timeout=60)
    hostile.shutdown()
    assert r.returncode == 1, r.stdout
    lines = {l.split()[1] + " " + l.split()[2]: l.split()[0] for l in r.stdout.splitlines() if l[:4] in ("PASS", "FAIL")}
    assert lines["nonce echo"] == "FAIL" and lines["REPORTDATA binds"] == "FAIL", r.stdout


@check("veil chat: E2EE with a verified signature, TEE-only, plain; refuses an unaccepted attestation")
def _():
    base = "http://127.0.0.1:%d/api/v1" % PORT

    def run(*args):
        return subprocess.run([VEIL, "chat", "--base-url", base, "--api-key", KEY, "--model", "e2ee-mock"] + list(args),
                              capture_output=True, text=True, timeout=60)
    r = run("--allow-simulated", "--verify-signature", "secret chat words")
    assert r.returncode == 0 and r.stdout.strip() == "echo: secret chat words", (r.stdout, r.stderr)
    assert "E2EE answer" in r.stderr and "signature verified" in r.stderr, r.stderr
    r = run("--tee-only", "--allow-simulated", "--verify-signature", "tee words")
    assert r.returncode == 0 and r.stdout.strip() == "echo: tee words" and "signature verified" in r.stderr, r.stderr
    r = run("--plain", "plain words")
    assert r.returncode == 0 and r.stdout.strip() == "echo: plain words"
    r = run("--allow-simulated", "--verify-signature", "--json", "as json")  # default mode: E2EE for an e2ee model
    d = json.loads(r.stdout)
    assert d["answer"] == "echo: as json" and d["mode"] == "E2EE" and d["signature_verified"], d
    r = subprocess.run([VEIL, "chat", "--base-url", base, "--api-key", KEY, "--model", "tools-mock", "--json", "plainly"],
                       capture_output=True, text=True, timeout=60)
    d = json.loads(r.stdout)
    assert d["mode"] == "plain" and d["answer"] == "echo: plainly", d  # not a TEE model: plain by default
    r = run("not without simulation")
    assert r.returncode == 1 and "attestation was refused" in r.stderr and r.stdout.strip() == "", r.stderr
    r = subprocess.run([VEIL, "chat", "--base-url", base, "--api-key", KEY, "--model", "e2ee-mock", "--allow-simulated"],
                       input="one\ntwo\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.split("\n")[:2] == ["echo: one", "echo: two"], r.stdout


def hostile_proxy(mode):
    """A server that relays to veil but lies in one way: 'plaintext' answers an
    E2EE request with a plaintext chunk, 'otherkey' seals chunks to another key,
    'forged' serves a signature of other bytes."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    upstream_base = "http://127.0.0.1:%d" % PORT
    other_priv, other_pub = keypair()

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def relay(self, method, body=None):
            c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
            hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            c.request(method, self.path, body=body, headers=hdrs)
            r = c.getresponse()
            return r.status, r.getheader("Content-Type"), r.read()

        def answer(self, status, ctype, data):
            self.send_response(status)
            self.send_header("Content-Type", ctype or "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            st, ct, data = self.relay("GET")
            if mode == "forged" and "/tee/signature" in self.path:
                d = json.loads(data)
                d["text"] = "00" * 32 + ":" + "11" * 32
                data = json.dumps(d).encode()
            self.answer(st, ct, data)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if mode in ("plaintext", "otherkey"):
                content = "the host read your prompt" if mode == "plaintext" else seal_to(other_pub, "sealed to someone else")
                chunk = {"id": "chatcmpl-" + "ab" * 16, "object": "chat.completion.chunk", "created": 1, "model": "e2ee-mock",
                         "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
                data = ("data: %s\n\ndata: [DONE]\n\n" % json.dumps(chunk)).encode()
                return self.answer(200, "text/event-stream", data)
            st, ct, data = self.relay("POST", body)
            self.answer(st, ct, data)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@check("veil chat refuses a plaintext or foreign-key chunk in an E2EE stream, and a forged signature")
def _():
    for mode, needle in [("plaintext", "plaintext chunk"), ("otherkey", "did not decrypt"), ("forged", "signed text")]:
        srv = hostile_proxy(mode)
        r = subprocess.run([VEIL, "chat", "--base-url", "http://127.0.0.1:%d/api/v1" % srv.server_address[1],
                            "--api-key", KEY, "--model", "e2ee-mock", "--allow-simulated", "--verify-signature",
                            "hello"], capture_output=True, text=True, timeout=60)
        srv.shutdown()
        assert r.returncode == 1 and needle in r.stderr, (mode, r.stdout, r.stderr)
        assert "the host read your prompt" not in r.stdout and "someone else" not in r.stdout, (mode, r.stdout)


def lying_attestation(mode):
    """A server relaying veil's attestation but changing it: 'unbound' swaps in
    a signing key REPORTDATA does not hold, 'broken' alters a signed byte of
    the quote, 'debug' serves a (simulated, correctly signed) debug TD, 'gpu-broken'
    alters a signed byte of the GPU report, 'gpu-stale' serves GPU evidence made
    for another nonce."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlparse

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            if not self.path.startswith("/api/v1/tee/attestation"):
                st, ctype, text = request("GET", self.path, key=None)  # /models and the like: relayed as they are
                body = text.encode()
                self.send_response(st)
                self.send_header("Content-Type", ctype or "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            q = parse_qs(urlparse(self.path).query)
            st, d = attest("/api/v1/tee/attestation", model=q["model"][0], nonce=q["nonce"][0])
            if mode == "unbound":
                priv, pub = keypair()
                d["signing_key"] = d["signing_public_key"] = pub
                d["signing_address"] = subprocess.run([VEIL, "crypto", "address", pub], capture_output=True,
                                                      text=True).stdout.strip()
            elif mode == "broken":
                qb = bytearray(bytes.fromhex(d["intel_quote"]))
                qb[200] ^= 1  # inside MRTD, covered by the quote signature
                d["intel_quote"] = qb.hex()
            elif mode == "debug":
                rd = d["signing_address"][2:].lower() + "00" * 12 + q["nonce"][0]
                r = subprocess.run([VEIL, "tee", "quote", "--tee", "sim", "--sim-debug", "--report-data", rd,
                                    "--state", os.path.join(tmp, "debug-td")], capture_output=True, text=True)
                d["intel_quote"] = r.stdout.strip()
                d["event_log"] = []
            elif mode == "gpu-broken":
                gpu = json.loads(d["nvidia_payload"])
                ev = bytearray(base64.b64decode(gpu["evidence_list"][0]["evidence"]))
                ev[60] ^= 1  # inside the measurement record, covered by the P-384 signature
                gpu["evidence_list"][0]["evidence"] = base64.b64encode(bytes(ev)).decode()
                d["nvidia_payload"] = json.dumps(gpu)
            elif mode == "gpu-stale":
                st2, other = attest("/api/v1/tee/attestation", model=q["model"][0], nonce=os.urandom(32).hex())
                d["nvidia_payload"] = other["nvidia_payload"]
            body = json.dumps(d).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@check("veil attest refuses an unbound signing key, a broken quote signature, a debug TD, a broken GPU report "
       "and GPU evidence for another nonce")
def _():
    for mode, failing in [("unbound", "REPORTDATA binds signing address"), ("broken", "quote verified"),
                          ("debug", "quote verified"), ("gpu-broken", "GPU evidence verified"),
                          ("gpu-stale", "GPU reports bind nonce")]:
        srv = lying_attestation(mode)
        r = subprocess.run([VEIL, "attest", "--base-url", "http://127.0.0.1:%d/api/v1" % srv.server_address[1],
                            "--model", "e2ee-mock", "--allow-simulated", "--json"], capture_output=True, text=True,
                           timeout=60)
        chat = subprocess.run([VEIL, "chat", "--base-url", "http://127.0.0.1:%d/api/v1" % srv.server_address[1],
                               "--model", "e2ee-mock", "--allow-simulated", "x"], capture_output=True, text=True,
                              timeout=60)
        srv.shutdown()
        assert chat.returncode != 0 and "attestation was refused" in chat.stderr, (mode, chat.stderr)
        rep = json.loads(r.stdout)
        results = {c["check"]: c for c in rep["checks"]}
        assert r.returncode == 1 and not rep["accepted"], (mode, r.stdout)
        assert results[failing]["result"] == "FAIL", (mode, results[failing])
        if mode == "broken":
            assert "QUOTE_SIGNATURE_INVALID" in results[failing]["reason"], results[failing]
        if mode == "debug":
            assert "TD_DEBUG" in results[failing]["reason"], results[failing]
        if mode == "gpu-broken":
            assert "SIGNATURE_INVALID" in results[failing]["reason"], results[failing]


VECTORS = os.environ.get("VEIL_VECTORS") or os.path.join(HERE, "..", "..", "..", "shared", "vectors")


@check("veil attest --pcs-url fetches collateral from a PCS (a fake one serving Intel's 2023 files)")
def _():
    if not os.path.exists(os.path.join(VECTORS, "EXPECTED_PARSE.json")):
        raise Skip("shared vectors not found (set VEIL_VECTORS)")
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import quote as urlquote, urlparse, parse_qs
    g = os.path.join(VECTORS, "tdx", "go-tdx-guest")
    rd = lambda name: open(os.path.join(g, name), "rb").read()
    seen = []

    class PCS(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            u = urlparse(self.path)
            seen.append(self.path)
            if u.path == "/tdx/certification/v4/tcb" and parse_qs(u.query).get("fmspc") == ["50806f000000"]:
                body, hdr = rd("sample_tcbInfo_response"), ("TCB-Info-Issuer-Chain", rd("tcbInfoIssuerChain.derived.pem"))
            elif u.path == "/tdx/certification/v4/qe/identity":
                body, hdr = rd("sample_qeIdentity_response"), ("SGX-Enclave-Identity-Issuer-Chain",
                                                                rd("qeIdentityIssuerChain.derived.pem"))
            elif u.path == "/sgx/certification/v4/pckcrl":
                body, hdr = rd("pckcrl"), ("SGX-PCK-CRL-Issuer-Chain", rd("pckCrlIssuerChain.derived.pem"))
            elif u.path == "/sgx/certification/v4/rootcacrl":
                body, hdr = rd("rootcrl.der"), None
            elif u.path == "/api/v1/tee/attestation":
                q = parse_qs(u.query)
                body = json.dumps({"nonce": q["nonce"][0], "model": q["model"][0], "tee_provider": "intel-tdx",
                                   "intel_quote": rd("tdx_prod_quote_SPR_E4.dat").hex(), "event_log": [],
                                   "nvidia_payload": None}).encode()
                hdr = None
            else:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            if hdr:
                self.send_header(hdr[0], urlquote(hdr[1].decode()))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), PCS)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = "http://127.0.0.1:%d" % srv.server_address[1]
    r = subprocess.run([VEIL, "attest", "--base-url", base + "/api/v1", "--model", "m", "--pcs-url", base,
                        "--at", "1688173200", "--json"], capture_output=True, text=True, timeout=60)
    srv.shutdown()
    rep = json.loads(r.stdout)
    checks = {c["check"]: c for c in rep["checks"]}
    assert checks["collateral fetched"]["result"] == "PASS", checks["collateral fetched"]
    # with its 2023 collateral the SPR quote has no matching TCB level, which only collateral can tell
    assert "TCB_LEVEL_NOT_FOUND" in checks["quote verified"]["reason"], checks["quote verified"]
    assert any("fmspc=50806f000000" in p for p in seen) and any("ca=platform" in p for p in seen), seen


@check("veil models and veil signature verify (online by request id, and offline)")
def _():
    base = "http://127.0.0.1:%d/api/v1" % PORT
    r = subprocess.run([VEIL, "models", "--base-url", base, "--api-key", KEY], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "e2ee-mock" in r.stdout and "E2EE TEE" in r.stdout, r.stdout
    body = json.dumps({"model": "e2ee-mock", "messages": msgs("verify me")}).encode()
    st, data = raw_chat(body)
    rid = json.loads(data)["id"]
    st, att = attest("/api/v1/tee/attestation", model="e2ee-mock", nonce=os.urandom(32).hex())
    r = subprocess.run([VEIL, "signature", "verify", "--base-url", base, "--request-id", rid, "--model", "e2ee-mock",
                        "--address", att["signing_address"]], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "verified" in r.stdout, (r.stdout, r.stderr)
    st, sig = attest("/api/v1/tee/signature", model="e2ee-mock", request_id=rid)
    r = subprocess.run([VEIL, "signature", "verify", "--text", sig["text"], "--signature", sig["signature"], "--address",
                        att["signing_address"]], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([VEIL, "signature", "verify", "--text", sig["text"] + "x", "--signature", sig["signature"],
                        "--address", att["signing_address"]], capture_output=True, text=True)
    assert r.returncode == 1 and "signed by" in r.stderr, r.stderr
    r = subprocess.run([VEIL, "signature", "verify", "--base-url", base, "--request-id", rid, "--address",
                        "0x" + "11" * 20], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r.stdout
    r = subprocess.run([VEIL, "signature", "verify"], capture_output=True, text=True)
    assert r.returncode == 2


@check("the log has one line per request and never a body")
def _():
    chat({"model": "e2ee-mock", "messages": msgs("UNIQUE-MARKER-8812")})
    log = open(SERVE_ERR).read()
    assert "UNIQUE-MARKER-8812" not in log and "echo:" not in log
    assert "POST /api/v1/chat/completions 200" in log and "GET /api/v1/models 200" in log
    # a streamed answer's line carries its time to first piece and veil's own share of it
    st, _, text = chat({"model": "e2ee-mock", "stream": True, "messages": msgs("timed")})
    rid = json.loads(events(text)[0])["id"]
    line = [l for l in open(SERVE_ERR).read().splitlines() if rid in l][-1]
    m = re.search(r" ttfb=([0-9.]+)ms veil=([0-9.]+)ms", line)
    assert m and 0 <= float(m.group(2)) <= float(m.group(1)), line


@check("SIGTERM lets an in-flight stream finish, then exits 0")
def _():
    box = {}

    def slow():
        try:
            box["r"] = chat({"model": "e2ee-mock", "stream": True, "messages": msgs("SLOW a b c")})
        except Exception as e:
            box["r"] = (0, None, repr(e))

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    serve.send_signal(signal.SIGTERM)
    t.join(20)
    assert events(box["r"][2]) and events(box["r"][2])[-1] == "[DONE]", box["r"]
    assert serve.wait(20) == 0
    try:
        socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
        raise AssertionError("still accepting after shutdown")
    except OSError:
        pass


@check("attestation is rate-limited per client IP with Retry-After")
def _():
    global PORT
    p, port, _, _ = start_serve(["--upstream", "http://127.0.0.1:%d/v1" % UP, "--upstream-model", "m", "--model-id",
                                 "tee-m", "--api-key", "k", "--tee", "sim", "--tee-rate-limit", "2"],
                                os.path.join(tmp, "rl"))
    PORT = port
    codes = [attest("/api/v1/tee/attestation", model="tee-m", nonce="11" * 32)[0] for _ in range(3)]
    assert codes == [200, 200, 429], codes
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("GET", "/api/v1/tee/attestation?model=tee-m")
    r = c.getresponse()
    body = json.loads(r.read())
    assert r.status == 429 and 1 <= int(r.getheader("Retry-After")) <= 60
    assert body["error"]["type"] == "rate_limit_error", body
    p.send_signal(signal.SIGTERM)
    p.wait(20)


@check("key store: first start creates and shows one key; revoked keys are refused")
def _():
    state = os.path.join(tmp, "ks")
    p, port, out, _ = start_serve(["--upstream", "http://127.0.0.1:%d/v1" % UP, "--upstream-model", "m"], state)
    global PORT
    PORT = port
    text = open(out).read()
    key = text.split("It is shown only now:\n  ")[1].split()[0]
    assert key.startswith("vk-")
    assert chat({"model": "m", "messages": msgs("x")}, key=key)[0] == 200
    assert key.encode() not in open(os.path.join(state, "keys.db"), "rb").read()
    env = dict(os.environ, VEIL_STATE_DIR=state)
    listing = subprocess.run([VEIL, "keys", "list"], env=env, capture_output=True, text=True).stdout
    kid = listing.split()[0]
    subprocess.run([VEIL, "keys", "revoke", kid], env=env, check=True, capture_output=True)
    # the server reloads its keys off the event loop every second
    end = time.time() + 5
    while time.time() < end and chat({"model": "m", "messages": msgs("x")}, key=key)[0] != 401:
        time.sleep(0.2)
    assert chat({"model": "m", "messages": msgs("x")}, key=key)[0] == 401
    created = subprocess.run([VEIL, "keys", "create"], env=env, capture_output=True, text=True).stdout
    key2 = created.split("key: ")[1].split()[0]
    end = time.time() + 5
    while time.time() < end and chat({"model": "m", "messages": msgs("x")}, key=key2)[0] != 200:
        time.sleep(0.2)
    assert chat({"model": "m", "messages": msgs("x")}, key=key2)[0] == 200
    p.send_signal(signal.SIGINT)
    assert p.wait(20) == 0
    p2, port2, out2, _ = start_serve(["--upstream", "http://127.0.0.1:%d/v1" % UP, "--upstream-model", "m"], state)
    assert "shown only now" not in open(out2).read()  # keys exist: none is made
    p2.send_signal(signal.SIGTERM)
    p2.wait(20)


@check("signatures survive a restart of the same state directory")
def _():
    global PORT
    state = os.path.join(tmp, "restart")
    args = ["--upstream", "http://127.0.0.1:%d/v1" % UP, "--upstream-model", "m", "--model-id", "tee-m",
            "--api-key", KEY, "--tee", "sim"]
    p, PORT, _, _ = start_serve(args, state)
    body = json.dumps({"model": "tee-m", "messages": msgs("keep me")}).encode()
    st, data = raw_chat(body)
    rid = json.loads(data)["id"]
    st, before = attest("/api/v1/tee/signature", model="tee-m", request_id=rid)
    assert st == 200
    p.send_signal(signal.SIGTERM)
    assert p.wait(20) == 0
    p, PORT, _, _ = start_serve(args, state)
    st, after = attest("/api/v1/tee/signature", model="tee-m", request_id=rid)
    assert st == 200 and after["text"] == before["text"] and after["signature"] == before["signature"], after
    p.send_signal(signal.SIGTERM)
    p.wait(20)


if serve.poll() is None:
    serve.kill()
upstream.kill()
report()
