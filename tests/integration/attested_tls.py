#!/usr/bin/python3
"""Attested TLS in veil serve and libveil's client: --tls (a key made in
memory, a self-signed certificate) and --tls-cert/--tls-key (the
operator's), the attestation's tls_* fields against python3-cryptography's
own SPKI hash, veil attest and veil chat trusting the key by the attestation
(--tls-attested) or by CAs, a man in the middle with its own certificate,
and the server's guards speaking through TLS. Output: TAP lines."""
import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from relays import TlsMitm, self_signed_pem, spki_sha256_of_pem  # noqa: E402
from servelib import VEIL, check, report_and_stop, start_veil  # noqa: E402

KEY = "tls-test-key"
tmp = tempfile.mkdtemp(prefix="veil-tls-")
procs = []
ARGS = ["--api-key", KEY, "--tee", "sim", "--tee-rate-limit", "100000", "--header-timeout", "2"]


def start(args, name):
    p, port, out, err = start_veil("serve", ARGS + args, tmp, name=name)
    procs.append(p)
    return p, port, out, err


_, PORT, OUT, ERR = start(["--tls"], "enclave")
BASE = "https://127.0.0.1:%d/api/v1" % PORT
NOVERIFY = ssl.create_default_context()
NOVERIFY.check_hostname = False
NOVERIFY.verify_mode = ssl.CERT_NONE


def served_cert(port):
    return ssl.get_server_certificate(("127.0.0.1", port))


def tls_request(port, raw, timeout=10):
    """Sends raw bytes over TLS; returns everything the server answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with NOVERIFY.wrap_socket(s) as t:
            t.sendall(raw)
            out = b""
            while True:
                try:
                    d = t.recv(65536)
                except (ssl.SSLError, OSError):
                    break
                if not d:
                    break
                out += d
            return out


def get_json(port, path):
    raw = tls_request(port, b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def veil(*args):
    return subprocess.run([VEIL] + list(args), capture_output=True, text=True, timeout=60)


@check("--tls: the banner says https and the key's origin; the attestation binds the certificate served")
def _():
    text = open(OUT).read()
    assert "listening on https://127.0.0.1:%d/api/v1" % PORT in text, text
    assert "never written" in text and "bound to every attestation" in text, text
    st, d = get_json(PORT, "/api/v1/tee/attestation?model=veil-tiny&nonce=" + secrets.token_hex(32))
    assert st == 200, d
    assert d["tls_spki_sha256"] == spki_sha256_of_pem(served_cert(PORT)), d["tls_spki_sha256"]
    assert d["tls_key_origin"] == "enclave", d
    assert len(d["tls_binding_signature"]) == 132 and d["tls_binding_signature"].startswith("0x"), d
    spki = d["tls_spki_sha256"]
    assert spki in text, "the banner does not show the SPKI hash"


@check("the binding signature recovers to the attested address (veil crypto recover), and to no other key's")
def _():
    st, d = get_json(PORT, "/api/v1/tee/attestation?model=veil-tiny&nonce=" + secrets.token_hex(32))
    r = veil("crypto", "recover", "--signature", d["tls_binding_signature"], "veil-tls-spki:" + d["tls_spki_sha256"])
    assert r.returncode == 0 and r.stdout.strip() == d["signing_address"], (r.stdout, r.stderr, d["signing_address"])
    r = veil("crypto", "recover", "--signature", d["tls_binding_signature"], "veil-tls-spki:" + "00" * 32)
    assert r.stdout.strip() != d["signing_address"]


@check("no key file is written: the state directory holds no PEM and no private key")
def _():
    for root, _, files in os.walk(os.path.join(tmp, "enclave")):
        for f in files:
            data = open(os.path.join(root, f), "rb").read()
            assert b"PRIVATE KEY" not in data and b"BEGIN CERTIFICATE" not in data, f


@check("veil attest --tls-attested: the TLS check passes and pins; without it the self-signed certificate fails")
def _():
    r = veil("attest", "--base-url", BASE, "--model", "veil-tiny", "--allow-simulated", "--tls-attested", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    checks = {c["check"]: c for c in json.loads(r.stdout)["checks"]}
    assert checks["TLS key bound"]["result"] == "PASS" and "pinned" in checks["TLS key bound"]["reason"], checks
    r = veil("attest", "--base-url", BASE, "--model", "veil-tiny", "--allow-simulated")
    assert r.returncode == 2 and "certificate" in r.stderr, r.stderr


@check("veil chat --tls-attested --verify-signature: E2EE over the attested TLS key")
def _():
    r = veil("chat", "--base-url", BASE, "--api-key", KEY, "--model", "veil-tiny", "--allow-simulated",
             "--tls-attested", "--verify-signature", "--json", "hello")
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["signature_verified"] is True and out["mode"] == "E2EE", out


@check("a man in the middle with its own certificate: attestation refused, chat refused, the API key withheld")
def _():
    mitm = TlsMitm(PORT)
    base = "https://127.0.0.1:%d/api/v1" % mitm.port
    r = veil("attest", "--base-url", base, "--model", "veil-tiny", "--allow-simulated", "--tls-attested", "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    checks = {c["check"]: c for c in json.loads(r.stdout)["checks"]}
    assert checks["TLS key bound"]["result"] == "FAIL", checks
    assert "not the attested one" in checks["TLS key bound"]["reason"], checks
    r = veil("chat", "--base-url", base, "--api-key", KEY, "--model", "veil-tiny", "--allow-simulated",
             "--tls-attested", "hello")
    assert r.returncode != 0 and "refused" in r.stderr, r.stderr
    assert KEY.encode() not in mitm.seen(), "the API key reached the man in the middle"
    assert b"/tee/attestation" in mitm.seen(), "the relay saw nothing: the test proves nothing"


@check("--tls-cert/--tls-key: the operator's certificate is served and bound with origin operator")
def _():
    cert, key = self_signed_pem(tmp, "operator.test")
    _, port, out, _ = start(["--tls-cert", cert, "--tls-key", key], "operator")
    assert "the operator's certificate" in open(out).read()
    pem = open(cert).read()
    assert spki_sha256_of_pem(served_cert(port)) == spki_sha256_of_pem(pem)
    st, d = get_json(port, "/api/v1/tee/attestation?model=veil-tiny&nonce=" + secrets.token_hex(32))
    assert d["tls_key_origin"] == "operator" and d["tls_spki_sha256"] == spki_sha256_of_pem(pem), d
    r = veil("attest", "--base-url", "https://127.0.0.1:%d/api/v1" % port, "--model", "veil-tiny",
             "--allow-simulated", "--tls-attested")
    assert r.returncode == 0 and "(operator," in r.stdout, r.stdout


@check("bad TLS flags: --tls with --tls-cert, a cert without its key, a key that is not the cert's")
def _():
    cert, key = self_signed_pem(tmp, "a.test")
    cert2, key2 = self_signed_pem(tmp, "b.test")
    env = dict(os.environ, VEIL_STATE_DIR=os.path.join(tmp, "bad"))
    for args, want in [(["--tls", "--tls-cert", cert, "--tls-key", key], "--tls makes its own key"),
                       (["--tls-cert", cert], "go together"),
                       (["--tls-cert", cert, "--tls-key", key2], "--tls-key")]:
        r = subprocess.run([VEIL, "serve", "--port", "0", "--tee", "sim"] + args, capture_output=True, text=True,
                           timeout=30, env=env)
        assert r.returncode != 0 and want in r.stderr, (args, r.stderr)


@check("the head guard answers through TLS: an oversized head gets 431 JSON, and the server keeps serving")
def _():
    raw = tls_request(PORT, b"GET /api/v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431"), raw[:200]
    assert json.loads(body)["error"]["message"] == "Request headers are too large", body
    assert get_json(PORT, "/api/v1/models")[0] == 200


@check("a client that never finishes its head, or its TLS handshake, is cut off; others are served meanwhile")
def _():
    slow = socket.create_connection(("127.0.0.1", PORT))
    t = NOVERIFY.wrap_socket(slow)
    t.sendall(b"GET /api/v1/models HTTP/1.1\r\nHost: x\r\n")  # no end of head
    bare = socket.create_connection(("127.0.0.1", PORT))  # TCP only: no ClientHello
    assert get_json(PORT, "/api/v1/models")[0] == 200
    t.settimeout(10)
    start_t = time.time()
    try:
        rest = t.recv(100)
    except (ssl.SSLError, OSError):
        rest = b""
    assert rest == b"" and time.time() - start_t < 9, "the slow head was not cut off"
    t.close()
    bare.close()


@check("plain HTTP to the TLS port gets no answer, and the server keeps serving")
def _():
    with socket.create_connection(("127.0.0.1", PORT), timeout=5) as s:
        s.sendall(b"GET /api/v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            data = s.recv(100)
        except OSError:
            data = b""
        assert b"HTTP/1.1 200" not in data
    assert get_json(PORT, "/api/v1/models")[0] == 200


@check("many streams on one kept TLS connection each end whole (the deferred-write-callback race)")
def _():
    # the C mock (make tests builds it): the race needs answers faster than the Python mock gives
    mock = os.path.join(os.path.dirname(VEIL), "bench", "mock_upstream")
    assert os.access(mock, os.X_OK), "build/bench/mock_upstream is missing (make tests builds it)"
    portfile = os.path.join(tmp, "up.port")
    procs.append(subprocess.Popen([mock, portfile]))
    end = time.time() + 10
    while not (os.path.exists(portfile) and os.path.getsize(portfile)) and time.time() < end:
        time.sleep(0.05)
    _, port, _, _ = start(["--tls", "--signature-rate-limit", "100000", "--upstream",
                           "http://127.0.0.1:%s/v1" % open(portfile).read().strip(), "--upstream-model", "m",
                           "--model-id", "e2ee-mock"], "streams")
    body = json.dumps({"model": "e2ee-mock", "stream": True, "messages": [{"role": "user", "content": "FAST 150"}]})
    args = []
    for _ in range(120):
        args += ["--next", "-sk", "-m", "10", "-o", "/dev/null", "-w", "%{size_download}:%{exitcode}:%{num_connects} ",
                 "https://127.0.0.1:%d/api/v1/chat/completions" % port, "-H", "Authorization: Bearer " + KEY,
                 "-H", "Content-Type: application/json", "-d", body]
    r = subprocess.run(["curl"] + args[1:], capture_output=True, text=True, timeout=600)
    results_ = [x.split(":") for x in r.stdout.split()]
    assert len(results_) == 120, r.stdout
    sizes = {x[0] for x in results_}
    assert all(x[1] == "0" for x in results_) and len(sizes) == 1, r.stdout
    assert sum(int(x[2]) for x in results_) == 1, "the connection was not kept: the test proves nothing"


@check("the server log holds no content and no key material")
def _():
    log = open(ERR).read()
    assert "PRIVATE" not in log and KEY not in log and "hello" not in log, log[-500:]


report_and_stop(procs, tmp)
