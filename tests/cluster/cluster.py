#!/usr/bin/python3
"""Three veil replicas acting as one service (docs/cluster.md), everything
on loopback with real parts: redis-server holds the API keys, signatures
and rate-limit counters; replica 1 makes the instance key and releases it to
replicas 2 and 3 after mutual attestation (simulated TEE, shared simulation
root); HAProxy balances round-robin in front, checking /readyz.

Through HAProxy, the page's Python and JavaScript E2EE examples and
`veil chat --e2ee --verify-signature` succeed 20 times each (attestation,
chat and signature land on different replicas); every replica reports the
same signing address; a response's signature is found from every replica;
a replica killed mid-run is routed around and no completed response loses
its signature; a joiner running another binary is refused the key; Redis
going away fails signed requests cleanly and makes /readyz say not ready,
and its return is noticed without a restart."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from servelib import (VEIL, check, free_port, http_request, report_and_stop, results, start_veil,  # noqa: E402
                      wait_until)

ROOT = os.path.join(HERE, "..", "..")
tmp = tempfile.mkdtemp(prefix="veil-cluster-")
procs = []


missing = [p for p in ("redis-server", "haproxy") if not shutil.which(p)]
if missing:
    print("not ok 1 - %s not installed: run scripts/install-deps" % " and ".join(missing))
    print("1..1")
    sys.exit(1)

RP = free_port()
STORE = "redis://127.0.0.1:%d" % RP
redis_dir = os.path.join(tmp, "redis")
os.makedirs(redis_dir)


def start_redis():
    # appendonly: what Redis holds comes back when it does (as an operator would run it)
    p = subprocess.Popen(["redis-server", "--port", str(RP), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "yes", "--dir", redis_dir],
                         stdout=open(os.path.join(tmp, "redis.log"), "a"), stderr=subprocess.STDOUT)
    procs.append(p)

    def up():
        with socket.create_connection(("127.0.0.1", RP), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    wait_until(up, what="redis-server")
    return p


redis = KEY = state = holder_url = HP = BASE = page_env = None
replicas = []  # (process, port)
common = ["--tee", "sim", "--store", STORE, "--key-release", "--peer-allow-simulated", "--trust-proxy",
          "--tee-rate-limit", "100000", "--signature-rate-limit", "100000"]


def start_cluster():
    global redis, KEY, state, replicas, holder_url, HP, BASE, page_env
    redis = start_redis()
    made = subprocess.run([VEIL, "keys", "create", "--store", STORE], capture_output=True, text=True, timeout=30)
    KEY = next(line.split()[1] for line in made.stdout.splitlines() if line.startswith("key:"))
    state = os.path.join(tmp, "state")  # shared: the simulated platform's root and the built-in model
    p, port, out, _ = start_veil("serve", common, state, name="replica1")
    procs.append(p)
    replicas.append((p, port))
    holder_url = "http://127.0.0.1:%d" % port
    for i in (2, 3):
        p, port, out, _ = start_veil("serve", common + ["--key-from", holder_url], state, name="replica%d" % i)
        procs.append(p)
        replicas.append((p, port))

    HP = free_port()
    cfg = os.path.join(tmp, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write("""global
        maxconn 512
    defaults
        mode http
        timeout connect 2s
        timeout client 120s
        timeout server 120s
        option forwardfor
        retries 3
        option redispatch
    frontend veil
        bind 127.0.0.1:%d
        default_backend replicas
    backend replicas
        balance roundrobin
        option httpchk
        http-check send meth GET uri /readyz
        http-check expect status 200
        default-server inter 300ms fall 2 rise 2
    """ % HP)
        for i, (_, port) in enumerate(replicas, 1):
            f.write("    server r%d 127.0.0.1:%d check\n" % (i, port))
    hap = subprocess.Popen(["haproxy", "-db", "-f", cfg], stdout=open(os.path.join(tmp, "haproxy.log"), "w"),
                           stderr=subprocess.STDOUT)
    procs.append(hap)
    BASE = "http://127.0.0.1:%d/api/v1" % HP
    wait_until(lambda: http_request(HP, "GET", "/readyz")[0] == 200, what="HAProxy")
    page_env = dict(os.environ, API_KEY_VENICE=KEY, VEIL_BASE_URL=BASE, VEIL_MODEL="veil-tiny")


def attestation(port):
    nonce = os.urandom(32).hex()
    status, body = http_request(port, "GET", "/api/v1/tee/attestation?model=veil-tiny&nonce=" + nonce, key=KEY)
    assert status == 200, body
    doc = json.loads(body)
    assert doc["verified"] is True and doc["nonce"] == nonce, doc
    return doc


def run_checks():
    global redis
    @check("every replica reports the same signing address, and its attestation verifies")
    def _():
        addrs = {attestation(port)["signing_address"] for _, port in replicas}
        assert len(addrs) == 1, addrs
        for _, port in replicas:
            r = subprocess.run([VEIL, "attest", "--base-url", "http://127.0.0.1:%d/api/v1" % port, "--api-key", KEY,
                                "--model", "veil-tiny", "--allow-simulated"], capture_output=True, text=True, timeout=60)
            assert r.returncode == 0 and list(addrs)[0] in r.stdout, r.stdout + r.stderr


    @check("HAProxy spreads requests over all three replicas (round-robin)")
    def _():
        def served():  # attestation requests each replica logged
            return [open(os.path.join(state, "replica%d.err" % i)).read().count("GET /api/v1/tee/attestation")
                    for i in (1, 2, 3)]
        before = served()
        for _ in range(6):
            status, body = http_request(HP, "GET", "/api/v1/tee/attestation?model=veil-tiny", key=KEY)
            assert status == 200, body
        time.sleep(0.2)
        after = served()
        assert [a - b for a, b in zip(after, before)] == [2, 2, 2], (before, after)


    def run_times(n, argv, env, marker):
        for i in range(n):
            r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, "run %d: %s%s" % (i + 1, r.stdout[-2000:], r.stderr[-2000:])
            assert marker in r.stdout + r.stderr, "run %d: %s" % (i + 1, r.stdout[-2000:])


    @check("the page's Python E2EE example succeeds 20 times in a row through HAProxy")
    def _():
        run_times(20, ["/usr/bin/python3", os.path.join(ROOT, "tests", "integration", "page", "e2ee_example.py")],
                  page_env, "Response decrypted end-to-end")


    @check("the page's JavaScript E2EE example succeeds 20 times in a row through HAProxy")
    def _():
        if not os.path.isdir(os.path.join(ROOT, "tests", "interop", "node_modules", "elliptic")):
            raise AssertionError("the npm packages of tests/interop are not installed: run scripts/install-deps")
        run_times(20, ["node", os.path.join(ROOT, "tests", "interop", "page", "e2ee_example.mjs")], page_env,
                  "Response decrypted end-to-end")


    @check("veil chat --e2ee --verify-signature succeeds 20 times in a row through HAProxy")
    def _():
        run_times(20, [VEIL, "chat", "--base-url", BASE, "--api-key", KEY, "--model", "veil-tiny", "--allow-simulated",
                       "--e2ee", "--verify-signature", "Hello"], dict(os.environ),
                  "signature verified")


    def chat_once(port, stream=False):
        body = {"model": "veil-tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16,
                "stream": stream}
        return http_request(port, "POST", "/api/v1/chat/completions", body, key=KEY)


    def completed_id(status, data, stream):
        """The id of a completed response, or None."""
        if status != 200:
            return None
        if not stream:
            return json.loads(data)["id"]
        text = data.decode()
        if "data: [DONE]" not in text:
            return None
        first = next(line for line in text.splitlines() if line.startswith("data: {"))
        return json.loads(first[6:])["id"]


    def chat_with(port, key):
        body = {"model": "veil-tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
        return http_request(port, "POST", "/api/v1/chat/completions", body, key=key)[0]

    def signature(port, rid):
        return http_request(port, "GET", "/api/v1/tee/signature?model=veil-tiny&request_id=" + rid, key=KEY)


    @check("a response's signature is found from every replica, the same record each time")
    def _():
        status, data = chat_once(HP)
        rid = completed_id(status, data, False)
        assert rid, data
        records = []
        for _, port in replicas:
            s, body = signature(port, rid)
            assert s == 200, body
            records.append(json.loads(body))
        assert all(r == records[0] for r in records), records
        assert records[0]["signing_address"] == attestation(replicas[0][1])["signing_address"]


    @check("API keys are shared: a key made in Redis while the replicas run is accepted by all, and revoked by all")
    def _():
        r = subprocess.run([VEIL, "keys", "create", "--store", STORE], capture_output=True, text=True, timeout=30)
        new_key = next(line.split()[1] for line in r.stdout.splitlines() if line.startswith("key:"))
        new_id = next(line.split()[1] for line in r.stdout.splitlines() if line.startswith("id:"))
        for _, port in replicas:
            wait_until(lambda: chat_with(port, new_key) == 200, what="the new key on :%d" % port)
        subprocess.run([VEIL, "keys", "revoke", new_id, "--store", STORE], check=True, capture_output=True, timeout=30)
        for _, port in replicas:
            wait_until(lambda: chat_with(port, new_key) == 401, what="the revocation on :%d" % port)


    @check("a replica killed mid-run: HAProxy routes around it and no completed response loses its signature")
    def _():
        done, lost = [], []
        stop = threading.Event()

        def load():
            i = 0
            while not stop.is_set() and i < 20000:
                stream = i % 2 == 0
                try:
                    status, data = chat_once(HP, stream)
                    rid = completed_id(status, data, stream)
                    (done if rid else lost).append(rid or (status, data[-300:]))
                except Exception as e:  # a cut connection, an incomplete body: a lost response, said
                    lost.append(repr(e))
                i += 1
        t = threading.Thread(target=load)
        t.start()
        time.sleep(1.5)
        victim, victim_port = replicas[2]
        assert t.is_alive(), "the load ended before the kill: %r" % lost[-3:]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        replicas.pop()
        before = len(done)
        time.sleep(3)
        stop.set()
        t.join(timeout=120)
        assert len(done) > before + 5, "requests stopped completing after the kill: %d then %d" % (before, len(done))
        # only what was in flight on the killed replica may fail (HAProxy retries refused connections elsewhere)
        assert len(lost) <= 2, lost
        print("# replica 3 killed after %d completed responses; %d more completed, %d cut in flight" %
              (before, len(done) - before, len(lost)))
        for rid in done:
            s, body = signature(HP, rid)
            assert s == 200, (rid, body)


    @check("a joiner running another binary is refused the key, and the holder logs why")
    def _():
        other = os.path.join(tmp, "veil-other")
        shutil.copy(VEIL, other)
        with open(other, "ab") as f:
            f.write(b"another build")
        r = subprocess.run([other, "serve", "--tee", "sim", "--state", state, "--port", "0", "--store", STORE,
                            "--peer-allow-simulated", "--key-from", holder_url], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode != 0, r.stdout
        assert "refused the key release (HTTP 403)" in r.stderr and "binary-sha384 differs" in r.stderr, r.stderr
        assert "listening" not in r.stdout, r.stdout
        log = open(os.path.join(state, "replica1.err")).read()
        assert "Key release refused: the peer's binary-sha384 differs" in log, log[-2000:]


    @check("a joiner that does not allow simulation is refused before it asks")
    def _():
        r = subprocess.run([VEIL, "serve", "--tee", "sim", "--state", state, "--port", "0", "--key-from", holder_url],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and "--peer-allow-simulated" in r.stderr, r.stderr


    @check("Redis away: signed requests fail cleanly (never unsigned), /readyz says not ready; back: served again")
    def _():
        global redis
        redis.send_signal(signal.SIGTERM)
        redis.wait(timeout=10)
        port = replicas[0][1]
        wait_until(lambda: http_request(port, "GET", "/readyz")[0] == 503, what="/readyz 503")
        status, body = http_request(port, "GET", "/readyz")
        assert json.loads(body)["error"]["message"] == "Signature store unavailable", body
        for stream in (False, True):
            status, data = chat_once(port, stream)
            assert completed_id(status, data, stream) is None, (status, data[-500:])
            if not stream:
                assert status >= 500 and b"choices" not in data, (status, data)
        # the load balancer takes every replica out
        wait_until(lambda: http_request(HP, "GET", "/readyz")[0] == 503, what="HAProxy without ready replicas")
        redis = start_redis()
        for _, p in replicas:
            wait_until(lambda: http_request(p, "GET", "/readyz")[0] == 200, what="/readyz 200 again on :%d" % p)
        status, data = chat_once(port)
        rid = completed_id(status, data, False)
        assert rid, data
        assert signature(replicas[1][1], rid)[0] == 200


try:
    start_cluster()
    run_checks()
except Exception:
    results.append((False, "the cluster starts and its checks run", traceback.format_exc()))
report_and_stop(procs, tmp)
