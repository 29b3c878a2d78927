#!/usr/bin/python3
"""veil serve's replica features one at a time (the whole cluster is
tests/cluster/): rate-limit counters shared through Redis, the key release
route's refusals over HTTP, --key-from dstack against a dstack guest agent
speaking its GetKey API on a unix socket (the key checked against
python-ecdsa's public key for it), and the flags' errors."""
import http.server
import json
import os
import shutil
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

from ecdsa import SECP256k1, SigningKey

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from servelib import VEIL, check, free_port, http_request, report_and_stop, start_veil, wait_until  # noqa: E402

tmp = tempfile.mkdtemp(prefix="veil-replicas-")
procs = []


redis_port = free_port()
STORE = "redis://127.0.0.1:%d/3" % redis_port
if shutil.which("redis-server"):
    procs.append(subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    wait_until(lambda: socket.create_connection(("127.0.0.1", redis_port), timeout=1).close() is None,
               what="redis-server")


def need_redis():
    if not shutil.which("redis-server"):
        raise AssertionError("redis-server is not installed: run scripts/install-deps")


@check("rate limits are counted in Redis: two replicas together allow a client what one does")
def _():
    need_redis()
    state = os.path.join(tmp, "rate")
    args = ["--tee", "sim", "--store", STORE, "--api-key", "k1", "--tee-rate-limit", "3"]
    a = start_veil("serve", args, state, name="a")
    b = start_veil("serve", args, state, name="b")
    procs.extend([a[0], b[0]])
    # the window is a minute: start clear of its end, so that all five requests count in one
    if time.time() % 60 > 50:
        time.sleep(61 - time.time() % 60)
    got = [http_request(port, "GET", "/api/v1/tee/attestation?model=veil-tiny", key="k1")[0]
           for port in (a[1], b[1], a[1], b[1], a[1])]
    assert got == [200, 200, 200, 429, 429], got


@check("--store: API keys made with veil keys --store are accepted, and veil keys list reads them from Redis")
def _():
    need_redis()
    r = subprocess.run([VEIL, "keys", "create", "--store", STORE], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    key = next(line.split()[1] for line in r.stdout.splitlines() if line.startswith("key:"))
    kid = next(line.split()[1] for line in r.stdout.splitlines() if line.startswith("id:"))
    listed = subprocess.run([VEIL, "keys", "list", "--store", STORE], capture_output=True, text=True, timeout=30)
    assert kid in listed.stdout and "active" in listed.stdout, listed.stdout
    p, port, out, _ = start_veil("serve", ["--tee", "sim", "--store", STORE], os.path.join(tmp, "keys"))
    procs.append(p)
    assert "no API key yet" not in open(out).read()  # the store has one
    body = {"model": "veil-tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    assert http_request(port, "POST", "/api/v1/chat/completions", body, key=key)[0] == 200
    assert http_request(port, "POST", "/api/v1/chat/completions", body, key="vk-" + "0" * 48)[0] == 401
    bad = subprocess.run([VEIL, "keys", "revoke", "0000000000000000", "--store", STORE], capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode != 0 and "no active key with id" in bad.stderr, bad.stderr


holder = None


@check("the key release route: a challenge to GET, 400 for malformed requests, 403 for a foreign challenge; "
       "the server keeps serving")
def _():
    global holder
    holder = start_veil("serve", ["--tee", "sim", "--api-key", "k1", "--key-release", "--peer-allow-simulated"],
                        os.path.join(tmp, "holder"), name="holder")
    procs.append(holder[0])
    port = holder[1]
    st, body = http_request(port, "GET", "/veil/v1/key-release")
    doc = json.loads(body)
    assert st == 200 and len(doc["nonce"]) == 64 and doc["expires_in"] == 120, body
    for raw, want in (("{", 400), ("[]", 400), ('{"version":2}', 400), ('{"version":1,"ephemeral_key":"04"}', 400)):
        st, body = http_request(port, "POST", "/veil/v1/key-release", raw=raw)
        assert st == want and "Key release request malformed" in json.loads(body)["error"]["message"], (raw, body)
    sk = SigningKey.generate(curve=SECP256k1)
    req = {"version": 1, "ephemeral_key": "04" + sk.get_verifying_key().to_string().hex(), "holder_nonce": "ab" * 32,
           "joiner_nonce": "cd" * 32, "quote": "00" * 64, "event_log": []}
    st, body = http_request(port, "POST", "/veil/v1/key-release", req)
    assert st == 403 and "holder nonce is not this service's" in json.loads(body)["error"]["message"], body
    assert http_request(port, "DELETE", "/veil/v1/key-release")[0] == 405
    assert http_request(port, "GET", "/healthz")[0] == 200
    # a server without --key-release does not serve it
    p, other, _, _ = start_veil("serve", ["--tee", "sim", "--api-key", "k1"], os.path.join(tmp, "plain"))
    procs.append(p)
    assert http_request(other, "GET", "/veil/v1/key-release")[0] == 404
    r = subprocess.run([VEIL, "serve", "--tee", "sim", "--state", os.path.join(tmp, "plain"), "--port", "0",
                        "--peer-allow-simulated", "--key-from", "http://127.0.0.1:%d" % other],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "is the holder running with --key-release?" in r.stderr, r.stderr


@check("--key-from: a holder that is not there, or not veil, is a clear error at start")
def _():
    dead = free_port()
    r = subprocess.run([VEIL, "serve", "--tee", "sim", "--state", os.path.join(tmp, "j1"), "--port", "0",
                        "--peer-allow-simulated", "--key-from", "http://127.0.0.1:%d" % dead],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--key-from" in r.stderr and "127.0.0.1:%d" % dead in r.stderr, r.stderr
    # a holder with another simulation root (another platform) refuses the joiner's quote
    r = subprocess.run([VEIL, "serve", "--tee", "sim", "--state", os.path.join(tmp, "j2"), "--port", "0",
                        "--peer-allow-simulated", "--key-from", "http://127.0.0.1:%d" % holder[1]],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "refused the key release (HTTP 403)" in r.stderr and "PCK_CHAIN_INVALID" in r.stderr, \
        r.stderr


@check("the flags' errors: --store wants redis://, --key-from and --key-release want a TEE")
def _():
    for args, want in ((["--store", "/tmp/x.db"], "--store takes a redis://"),
                       (["--store", "redis://"], "needs redis://HOST:PORT"),
                       (["--store", "redis://h:99999"], "port must be"),
                       (["--tee", "none", "--key-release"], "need a TEE"),
                       (["--tee", "none", "--key-from", "dstack"], "need a TEE")):
        r = subprocess.run([VEIL, "serve", "--state", os.path.join(tmp, "flags"), "--port", "0"] + args,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and want in r.stderr, (args, r.stderr)


class Agent(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def dstack_agent(path, secret_hex):
    """A dstack guest agent's GetKey (v0 API) on a unix socket: the same key for the same path."""
    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != "/GetKey" or body.get("path") != "veil/instance-key/v1":
                self.send_response(404)
                self.end_headers()
                return
            out = json.dumps({"key": secret_hex, "signature_chain": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *a):
            pass

        def address_string(self):
            return "unix"
    srv = Agent(path, H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@check("--key-from dstack: every replica of the app gets the key dstack derives, and its public key is "
       "python-ecdsa's for that secret")
def _():
    secret = os.urandom(32)
    sk = SigningKey.from_string(secret, curve=SECP256k1)
    want_pub = "04" + sk.get_verifying_key().to_string().hex()
    sock = os.path.join(tmp, "dstack.sock")
    srv = dstack_agent(sock, secret.hex())
    try:
        keys = []
        for i in (1, 2):
            p, port, out, _ = start_veil("serve", ["--tee", "sim", "--api-key", "k1", "--key-from", "dstack",
                                                   "--dstack-socket", sock], os.path.join(tmp, "dstack%d" % i))
            procs.append(p)
            assert "from dstack's key service" in open(out).read()
            st, body = http_request(port, "GET", "/api/v1/tee/attestation?model=veil-tiny&nonce=" + "11" * 32, key="k1")
            doc = json.loads(body)
            assert st == 200 and doc["verified"] is True, body
            keys.append(doc["signing_key"].lower())
        assert keys == [want_pub.lower()] * 2, (keys, want_pub)
    finally:
        srv.shutdown()
        srv.server_close()
    # an agent that is not there is a clear error
    r = subprocess.run([VEIL, "serve", "--tee", "sim", "--state", os.path.join(tmp, "dstack3"), "--port", "0",
                        "--key-from", "dstack", "--dstack-socket", os.path.join(tmp, "none.sock")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "dstack guest agent at" in r.stderr, r.stderr


report_and_stop(procs, tmp)
