"""Helpers shared by the integration suites: TAP checks and starting
`veil serve` on a free port."""
import os
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


def start_serve(args, state):
    os.makedirs(state, exist_ok=True)
    out = open(os.path.join(state, "serve.out"), "w+")
    err = open(os.path.join(state, "serve.err"), "w+")
    env = dict(os.environ, VEIL_STATE_DIR=state)
    p = subprocess.Popen([VEIL, "serve", "--port", "0"] + args, stdout=out, stderr=err, env=env)
    end = time.time() + 10
    while time.time() < end:
        text = open(out.name).read()
        if "listening on http://127.0.0.1:" in text:
            port = int(text.split("listening on http://127.0.0.1:")[1].split("/")[0])
            return p, port, out.name, err.name
        if p.poll() is not None:
            raise RuntimeError("veil serve exited: " + open(err.name).read())
        time.sleep(0.05)
    raise RuntimeError("veil serve did not start")



def report():
    """Prints the TAP lines of every check and exits with their verdict."""
    for i, (ok, name, detail) in enumerate(results, 1):
        print("%s %d - %s" % ("ok" if ok else "not ok", i, name))
        for line in detail.splitlines():
            print("# " + line)
    print("1..%d" % len(results))
    sys.exit(0 if all(ok for ok, _, _ in results) else 1)
