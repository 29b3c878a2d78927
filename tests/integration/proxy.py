#!/usr/bin/python3
"""veil proxy end to end: curl through veil proxy to veil serve (simulated
TEE, the mock upstream's deterministic answers), with a recording relay
between them showing that no plaintext crossed; the refusals of what E2EE
cannot carry and of non-TEE models; hostile upstreams (a replayed
attestation, a key that changed between attestation and chat, a plaintext
chunk, a forged signature, a TLS key that is not the attested one), each
giving the tool an error and no unverified text; and re-attestation after
the server restarts with a new key. Output: TAP lines."""
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from relays import HostileRelay, RecordingRelay, TlsMitm  # noqa: E402
from servelib import check, report_and_stop, start_veil  # noqa: E402

KEY = "proxy-test-key"
tmp = tempfile.mkdtemp(prefix="veil-proxy-")
procs = []


def start(command, args, name, port=0):
    p, port, out, err = start_veil(command, args, tmp, name=name, port=port)
    procs.append(p)
    return p, port, out, err


# the mock upstream: "echo: <the prompt's words>", one chunk a word
portfile = os.path.join(tmp, "up.port")
procs.append(subprocess.Popen(["/usr/bin/python3", os.path.join(os.path.dirname(__file__), "mock_upstream.py"),
                               portfile]))
end = time.time() + 10
while not (os.path.exists(portfile) and os.path.getsize(portfile)) and time.time() < end:
    time.sleep(0.05)
UP = int(open(portfile).read())
SERVE_ARGS = ["--api-key", KEY, "--tee", "sim", "--tee-rate-limit", "100000", "--upstream",
              "http://127.0.0.1:%d/v1" % UP, "--upstream-model", "mock", "--model-id", "e2ee-mock"]
_, SERVE, _, _ = start("serve", SERVE_ARGS, "serve")
relay = RecordingRelay(SERVE)
PROXY_ARGS = ["--api-key", KEY, "--allow-simulated"]
_, PROXY, PROXY_OUT, PROXY_ERR = start("proxy", ["--base-url", "http://127.0.0.1:%d/api/v1" % relay.port] + PROXY_ARGS,
                                       "proxy")


def curl(port, path, body=None, stream=False, extra=()):
    """(status, headers text, body text) of a request to the proxy, by curl."""
    hdr = os.path.join(tmp, "h.txt")
    args = ["curl", "-s", "-N", "-D", hdr, "--max-time", "60", "http://127.0.0.1:%d%s" % (port, path)]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
    r = subprocess.run(args + list(extra), capture_output=True, timeout=90)
    head = open(hdr).read() if os.path.exists(hdr) else ""
    status = int(head.split()[1]) if head else 0
    return status, head, r.stdout.decode("utf-8", "replace")


def sse(text):
    """The data lines of an SSE body: parsed JSON objects, and "[DONE]"."""
    out = []
    for block in text.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                d = line[6:]
                out.append(d if d == "[DONE]" else json.loads(d))
    return out


def answer_of(events):
    return "".join((e.get("choices") or [{}])[0].get("delta", {}).get("content") or ""
                   for e in events if isinstance(e, dict) and "error" not in e)


def chat_body(text, stream=True, **extra):
    b = {"model": "e2ee-mock", "messages": [{"role": "system", "content": "be brief"},
                                            {"role": "user", "content": text}]}
    if stream:
        b["stream"] = True
    b.update(extra)
    return b


def status(port=None):
    return json.loads(curl(port or PROXY, "/veil/status")[2])


@check("the start banner says what was verified for each TEE model")
def _():
    text = open(PROXY_OUT).read()
    assert "E2EE e2ee-mock: verified: SIMULATED quote (simulation allowed), signing address 0x" in text, text
    assert "listening on http://127.0.0.1:%d/v1" % PROXY in text, text


@check("models: passed through under /v1 and /api/v1")
def _():
    for path in ("/v1/models", "/api/v1/models"):
        st, _, body = curl(PROXY, path)
        assert st == 200, (st, body)
        ids = [m["id"] for m in json.loads(body)["data"]]
        assert ids == ["e2ee-mock"], ids


MARK = "marker" + secrets.token_hex(8)


@check("stream: curl gets the verified answer, X-Veil-Mode e2ee, [DONE] last")
def _():
    before = len(relay.seen())
    st, head, body = curl(PROXY, "/v1/chat/completions", chat_body("hello " + MARK))
    assert st == 200, (st, body)
    assert "x-veil-mode: e2ee" in head.lower(), head
    ev = sse(body)
    assert ev[-1] == "[DONE]", ev[-3:]
    assert answer_of(ev) == "echo: hello " + MARK, answer_of(ev)
    assert all(e["object"] == "chat.completion.chunk" for e in ev[:-1]), ev
    wire = relay.seen()[before:]
    assert b"X-Venice-TEE-Client-Pub-Key" in wire, "the upstream request was not E2EE"
    assert MARK.encode() not in wire and b"echo:" not in wire and b"be brief" not in wire, \
        "plaintext crossed the wire between the proxy and the server"


@check("non-stream: one chat.completion with the verified answer and usage; nothing in plaintext on the wire")
def _():
    before = len(relay.seen())
    st, head, body = curl(PROXY, "/api/v1/chat/completions", chat_body("plain " + MARK, stream=False))
    assert st == 200, (st, body)
    c = json.loads(body)
    assert c["object"] == "chat.completion", c
    assert c["choices"][0]["message"] == {"role": "assistant", "content": "echo: plain " + MARK}, c
    assert c["choices"][0]["finish_reason"] == "stop", c
    assert c["usage"]["completion_tokens"] == 3, c
    assert c["id"].startswith("chatcmpl-"), c
    wire = relay.seen()[before:]
    assert MARK.encode() not in wire and b"echo:" not in wire, "plaintext crossed the wire"
    assert b'"stream":true' in wire, "the upstream request was not streamed"


@check("one attestation serves many requests (fresh nonce, then held); /veil/status reports every check")
def _():
    for i in range(3):
        assert curl(PROXY, "/v1/chat/completions", chat_body("again %d" % i))[0] == 200
    s = status()
    m = s["models"]["e2ee-mock"]
    assert m["state"] == "verified" and m["accepted"] is True, m
    assert m["attestations"] == 1, m
    names = {c["name"]: c["result"] for c in m["checks"]}
    assert names["nonce echo"] == "pass" and names["quote verified"] == "pass", names
    assert names["not simulated"] == "skip" and names["TLS key bound"] == "skip", names
    assert all(r in ("pass", "skip") for r in names.values()), names
    assert m["signing_address"].startswith("0x") and m["simulated"] is True, m
    assert s["upstream"].endswith("/api/v1") and s["policy"]["allow_simulated"] is True, s


@check("what E2EE cannot carry is refused with 400 and a reason, and never sent upstream")
def _():
    before = len(relay.seen())
    cases = [
        (chat_body("t", tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}]),
         "Function calling is not supported with E2EE"),
        (chat_body("w", venice_parameters={"enable_web_search": "on"}), "Web search is not supported with E2EE"),
        ({"model": "e2ee-mock", "stream": True, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:,x"}}]}]},
         "File uploads are not supported with E2EE"),
    ]
    for body, message in cases:
        st, _, text = curl(PROXY, "/v1/chat/completions", body)
        assert st == 400, (st, text)
        err = json.loads(text)["error"]
        assert message in err["message"] and "--allow-tee-only" in err["message"], err
        assert err["type"] == "invalid_request_error", err
    assert b"POST" not in relay.seen()[before:], "a refused request went upstream"


@check("bad requests: not JSON 400, no model 400, unknown model 404, wrong method 405, unknown route 404")
def _():
    st, _, text = curl(PROXY, "/v1/chat/completions", extra=["--data-binary", "{not json"])
    assert st == 400 and json.loads(text)["error"]["message"] == "Invalid JSON body", (st, text)
    st, _, text = curl(PROXY, "/v1/chat/completions", {"messages": []})
    assert st == 400 and "names no model" in text, (st, text)
    st, _, text = curl(PROXY, "/v1/chat/completions", {"model": "nope", "messages": []})
    assert st == 404 and "no model nope" in text, (st, text)
    assert curl(PROXY, "/v1/chat/completions")[0] == 405
    assert curl(PROXY, "/v1/embeddings")[0] == 404


@check("content arrays of text parts are sealed part by part")
def _():
    before = len(relay.seen())
    body = {"model": "e2ee-mock", "stream": True, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "parts " + MARK}]}]}
    st, _, text = curl(PROXY, "/v1/chat/completions", body)
    assert st == 200, (st, text)
    assert MARK.encode() not in relay.seen()[before:]


@check("--allow-tee-only: a request that turns E2EE off goes to the attested TEE (mode tee, signature checked)")
def _():
    _, port, _, _ = start("proxy", ["--base-url", "http://127.0.0.1:%d/api/v1" % SERVE, "--allow-tee-only"] +
                          PROXY_ARGS, "proxy-teeonly")
    st, head, body = curl(port, "/v1/chat/completions",
                          chat_body("tee only", venice_parameters={"enable_e2ee": False}))
    assert st == 200, (st, body)
    assert "x-veil-mode: tee" in head.lower(), head
    ev = sse(body)
    assert ev[-1] == "[DONE]" and answer_of(ev) == "echo: tee only", ev


@check("non-TEE models: 400 without --allow-plain; passed through (mode plain) with it")
def _():
    _, plain_serve, _, _ = start("serve", ["--api-key", KEY, "--tee", "none", "--upstream",
                                           "http://127.0.0.1:%d/v1" % UP, "--upstream-model", "mock", "--model-id",
                                           "open-mock"], "serve-plain")
    base = ["--base-url", "http://127.0.0.1:%d/api/v1" % plain_serve] + PROXY_ARGS
    _, p1, _, _ = start("proxy", base, "proxy-noplain")
    body = {"model": "open-mock", "messages": [{"role": "user", "content": "x"}], "stream": True}
    st, _, text = curl(p1, "/v1/chat/completions", body)
    assert st == 400 and "is not a TEE model" in text and "--allow-plain" in text, (st, text)
    _, p2, _, _ = start("proxy", base + ["--allow-plain"], "proxy-plain")
    st, head, text = curl(p2, "/v1/chat/completions", body)
    assert st == 200 and "x-veil-mode: plain" in head.lower(), (st, head, text)
    assert answer_of(sse(text)) == "echo: x"


@check("the upstream's own refusal reaches the tool with its status and message")
def _():
    st, _, text = curl(PROXY, "/v1/chat/completions", chat_body("x", top_p=2))
    assert st == 400, (st, text)
    assert "top_p" in json.loads(text)["error"]["message"], text


# ---- hostile upstreams ----

_, ALT, _, _ = start("serve", SERVE_ARGS, "serve-alt")  # the same model under another key
hostile = HostileRelay(SERVE, ALT)


def hostile_proxy(mode, extra=()):
    return start("proxy", ["--base-url", "http://127.0.0.1:%d/%s/api/v1" % (hostile.port, mode)] + PROXY_ARGS +
                 list(extra), "proxy-" + mode + "".join(extra).replace("-", ""))[1]


def assert_no_text(body, *texts):
    for t in texts:
        assert t not in body, "the tool saw %r: %s" % (t, body[:400])


@check("hostile: an honest relay changes nothing (the control)")
def _():
    port = hostile_proxy("honest")
    st, _, body = curl(port, "/v1/chat/completions", chat_body("control"))
    assert st == 200 and answer_of(sse(body)) == "echo: control", (st, body)


@check("hostile: a replayed attestation (old nonce) gives 503 and no answer, stream or not")
def _():
    # the relay keeps the first attestation it sees (another client's, another nonce) and replays it
    curl(hostile.port, "/replay/api/v1/tee/attestation?model=e2ee-mock&nonce=" + secrets.token_hex(32))
    port = hostile_proxy("replay")
    assert "NOT verified" in open(os.path.join(tmp, "proxy-replay.out")).read()
    for stream in (True, False):
        st, _, body = curl(port, "/v1/chat/completions", chat_body("replayed " + MARK, stream=stream))
        assert st == 503, (st, body)
        err = json.loads(body)["error"]
        assert "nonce echo" in err["message"] and err["type"] == "server_error", err
        assert_no_text(body, "echo:", MARK)
    m = status(port)["models"]["e2ee-mock"]
    assert m["state"] == "failed" and m["accepted"] is False, m
    assert {c["name"]: c["result"] for c in m["checks"]}["nonce echo"] == "fail", m


@check("hostile: the key changed between attestation and chat: re-attested once, then an error and no answer")
def _():
    port = hostile_proxy("keychange")
    st, _, body = curl(port, "/v1/chat/completions", chat_body("moved " + MARK))
    assert st == 400, (st, body)
    assert json.loads(body)["error"]["message"] == "Model public key does not match this TEE", body
    assert_no_text(body, "echo:", MARK)
    assert status(port)["models"]["e2ee-mock"]["attestations"] >= 2, "no re-attestation"


@check("hostile: a plaintext chunk ends the stream with an error; the tool never sees it and gets no [DONE]")
def _():
    port = hostile_proxy("plaintext")
    st, _, body = curl(port, "/v1/chat/completions", chat_body("one two three"))
    assert st == 200, (st, body)
    ev = sse(body)
    assert "[DONE]" not in ev, ev
    assert "error" in ev[-1] and "plaintext chunk" in ev[-1]["error"]["message"], ev[-1]
    assert_no_text(body, "PWNED")
    st, _, body = curl(port, "/v1/chat/completions", chat_body("one two three", stream=False))
    assert st == 502 and "plaintext chunk" in body, (st, body)
    assert_no_text(body, "PWNED", "echo:")


@check("hostile: a forged signature: stream ends in an error without [DONE]; non-stream gets an error, no text")
def _():
    port = hostile_proxy("forgedsig")
    st, _, body = curl(port, "/v1/chat/completions", chat_body("signed"))
    ev = sse(body)
    assert st == 200 and "[DONE]" not in ev, ev
    assert "error" in ev[-1] and "could not be verified" in ev[-1]["error"]["message"], ev[-1]
    st, _, body = curl(port, "/v1/chat/completions", chat_body("signed " + MARK, stream=False))
    assert st == 502, (st, body)
    msg = json.loads(body)["error"]["message"]
    assert "signature" in msg or "signed" in msg, msg
    assert_no_text(body, "echo:", MARK)


@check("--hold-until-verified: a forged signature leaves the tool with an error and no text at all; "
       "an honest stream arrives whole")
def _():
    port = hostile_proxy("forgedsig", ["--hold-until-verified"])
    st, _, body = curl(port, "/v1/chat/completions", chat_body("held " + MARK))
    msg = json.loads(body)["error"]["message"]
    assert st == 502 and ("signature" in msg or "signed" in msg), (st, body)
    assert_no_text(body, "echo:", MARK)
    port = hostile_proxy("honest", ["--hold-until-verified"])
    st, _, body = curl(port, "/v1/chat/completions", chat_body("held fine"))
    ev = sse(body)
    assert st == 200 and ev[-1] == "[DONE]" and answer_of(ev) == "echo: held fine", (st, body)


@check("hostile: a TLS key that is not the attested one: 503, and the API key never crosses")
def _():
    _, tls_serve, _, _ = start("serve", SERVE_ARGS + ["--tls"], "serve-tls")
    mitm = TlsMitm(tls_serve)
    port = start("proxy", ["--base-url", "https://127.0.0.1:%d/api/v1" % mitm.port, "--tls-attested"] + PROXY_ARGS,
                 "proxy-mitm")[1]
    st, _, body = curl(port, "/v1/chat/completions", chat_body("mitm " + MARK))
    assert st == 503 and "TLS key bound" in body, (st, body)
    assert_no_text(body, "echo:")
    seen = mitm.seen()
    assert KEY.encode() not in seen and MARK.encode() not in seen, "the MITM saw the API key or the prompt"
    # the same proxy set-up straight to the server: the binding verifies and the key is pinned
    port = start("proxy", ["--base-url", "https://127.0.0.1:%d/api/v1" % tls_serve, "--tls-attested"] + PROXY_ARGS,
                 "proxy-tls")[1]
    st, _, body = curl(port, "/v1/chat/completions", chat_body("tls ok"))
    assert st == 200 and answer_of(sse(body)) == "echo: tls ok", (st, body)
    assert status(port)["tls_pin"], status(port)


@check("the server restarts with a new key: the proxy re-attests and the next request is answered")
def _():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    fixed = s.getsockname()[1]
    s.close()
    state = os.path.join(tmp, "restart")
    p1 = start_veil("serve", SERVE_ARGS, state, name="r1", port=fixed)[0]
    procs.append(p1)
    port = start("proxy", ["--base-url", "http://127.0.0.1:%d/api/v1" % fixed] + PROXY_ARGS, "proxy-restart")[1]
    assert curl(port, "/v1/chat/completions", chat_body("before"))[0] == 200
    first = status(port)["models"]["e2ee-mock"]["signing_address"]
    p1.terminate()
    p1.wait(timeout=20)
    procs.append(start_veil("serve", SERVE_ARGS, state, name="r2", port=fixed)[0])
    st, _, body = curl(port, "/v1/chat/completions", chat_body("after restart"))
    assert st == 200 and answer_of(sse(body)) == "echo: after restart", (st, body)
    m = status(port)["models"]["e2ee-mock"]
    assert m["signing_address"] != first and m["attestations"] == 2, (first, m)


@check("--reattest: an attestation older than the limit is replaced by a fresh one")
def _():
    port = start("proxy", ["--base-url", "http://127.0.0.1:%d/api/v1" % SERVE, "--reattest", "1"] + PROXY_ARGS,
                 "proxy-reattest")[1]
    assert curl(port, "/v1/chat/completions", chat_body("a"))[0] == 200
    n = status(port)["models"]["e2ee-mock"]["attestations"]
    time.sleep(1.2)
    assert curl(port, "/v1/chat/completions", chat_body("b"))[0] == 200
    assert status(port)["models"]["e2ee-mock"]["attestations"] == n + 1


@check("the proxy never logs content, and says each request's mode")
def _():
    log = open(PROXY_ERR).read() + open(PROXY_OUT).read()
    assert MARK not in log and "echo:" not in log and "be brief" not in log, "content in the proxy's log"
    assert "POST /v1/chat/completions 200" in log and " e2ee " in log, log[-600:]


@check("a tool that leaves mid-stream: the proxy keeps serving")
def _():
    s = socket.create_connection(("127.0.0.1", PROXY))
    body = json.dumps(chat_body("SLOW one two three four five six")).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    s.recv(100)
    s.close()
    st, _, body = curl(PROXY, "/v1/chat/completions", chat_body("still here"))
    assert st == 200 and answer_of(sse(body)) == "echo: still here", (st, body)


@check("SIGTERM: the proxy exits cleanly")
def _():
    p = start("proxy", ["--base-url", "http://127.0.0.1:%d/api/v1" % SERVE] + PROXY_ARGS, "proxy-term")[0]
    p.terminate()
    assert p.wait(timeout=15) == 0


report_and_stop(procs, tmp)
