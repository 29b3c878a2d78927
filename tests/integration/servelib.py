"""Helpers shared by the integration suites: TAP checks and starting
`veil serve` on a free port."""
import os
import re
import shutil
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
    SIGKILL after 10 s) and removes the directory tmp."""
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
        shutil.rmtree(tmp, ignore_errors=True)
