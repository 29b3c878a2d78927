"""Helpers shared by the integration suites: TAP checks and starting
`veil serve` on a free port."""
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import traceback

VEIL = os.environ.get("VEIL", "build/veil")
results = []


class Skip(Exception):
    pass


def check(name):
    def wrap(fn):
        try:
            fn()
            results.append((True, name, ""))
        except Skip as e:
            results.append((True, name + " # SKIP " + str(e), ""))
        except Exception:
            results.append((False, name, traceback.format_exc()))
        return fn
    return wrap


def wait_file(path, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return open(path).read()
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for " + path)


def free_port():
    """A TCP port on loopback that was free a moment ago."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_request(port, method, path, body=None, key=None, raw=None, timeout=60):
    """One request to 127.0.0.1:port (body as JSON, or raw text): (status, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = "Bearer " + key
    c.request(method, path, raw if raw is not None else (json.dumps(body) if body is not None else None), headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def wait_until(fn, timeout=15, what="condition"):
    """Polls fn (connection errors count as not yet) until it is true, or raises."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            if fn():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def start_veil(command, args, state, name=None, port=0):
    """Starts `veil COMMAND --port/--listen … ARGS` with its state in STATE
    and waits for its banner: (process, port, stdout path, stderr path)."""
    name = name or command
    os.makedirs(state, exist_ok=True)
    out = open(os.path.join(state, name + ".out"), "w+")
    err = open(os.path.join(state, name + ".err"), "w+")
    env = dict(os.environ, VEIL_STATE_DIR=state)
    where = ["--port", str(port)] if command == "serve" else ["--listen", "127.0.0.1:%d" % port]
    p = subprocess.Popen([VEIL, command] + where + args, stdout=out, stderr=err, env=env)
    end = time.time() + 20
    while time.time() < end:
        m = re.search(r"listening on https?://127\.0\.0\.1:(\d+)/", open(out.name).read())
        if m:
            return p, int(m.group(1)), out.name, err.name
        if p.poll() is not None:
            raise RuntimeError("veil %s exited: %s" % (command, open(err.name).read()))
        time.sleep(0.05)
    raise RuntimeError("veil %s did not start" % command)


def start_serve(args, state, port=0):
    return start_veil("serve", args, state, port=port)



def report():
    """Prints the TAP lines of every check and exits with their verdict."""
    for i, (ok, name, detail) in enumerate(results, 1):
        print("%s %d - %s" % ("ok" if ok else "not ok", i, name))
        for line in detail.splitlines():
            print("# " + line)
    print("1..%d" % len(results))
    sys.exit(0 if all(ok for ok, _, _ in results) else 1)


def report_and_stop(procs, tmp):
    """Reports (report()), then stops every process of procs (SIGTERM, then
    SIGKILL after 10 s) and removes the directory tmp (kept, and said, with
    $VEIL_KEEP_TMP)."""
    try:
        report()
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        if os.environ.get("VEIL_KEEP_TMP"):
            print("# kept " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
