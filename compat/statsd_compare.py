#!/usr/bin/env python3
"""statsd side by side: gunicorn 27 and ferrocorn serve the same small WSGI
app with --statsd-host pointed at a UDP receiver each, get the same three
requests (two 200s, a 404) and a TERM, and the metric names, types and
counts they send are compared (durations differ by nature and are shown,
not compared). Standard library only; run it with a python that has
gunicorn 27 (compat/.venv-green has it):

    compat/.venv-green/bin/python compat/statsd_compare.py [FERROCORN_BIN]

Prints `same` or `DIFF` per (metric, type) and exits 1 on any DIFF.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

APP = """def app(environ, start_response):
    if environ["PATH_INFO"] == "/missing":
        start_response("404 Not Found", [("Content-Length", "1")])
        return [b"x"]
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
"""
FERROCORN = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parent.parent / "target" / "release" / "ferrocorn")


def run(argv, cwd):
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(0.2)
    sport = rx.getsockname()[1]
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    argv = argv + ["-b", f"127.0.0.1:{port}", "-w", "1", "--statsd-host", f"127.0.0.1:{sport}", "--statsd-prefix", "app", "app:app"]
    p = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        for path in ["/", "/", "/missing"]:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2).read()
            except OSError:
                pass
        time.sleep(1.5)
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)
    got = []
    while True:
        try:
            got.append(rx.recv(65536).decode())
        except socket.timeout:
            break
    return got


def shape(datagrams):
    out = {}
    for d in datagrams:
        for m in d.split("\n"):
            name, _, rest = m.partition(":")
            val, _, typ = rest.partition("|")
            out.setdefault((name, typ), []).append(val)
    return out


def main():
    with tempfile.TemporaryDirectory(prefix="ferrocorn-statsd-") as tmp:
        Path(tmp, "app.py").write_text(APP)
        g = shape(run([sys.executable, "-m", "gunicorn"], tmp))
        f = shape(run([FERROCORN], tmp))
    diffs = 0
    for k in sorted(set(g) | set(f)):
        gv, fv = g.get(k), f.get(k)
        counted = not k[1].startswith("ms")
        same = gv is not None and fv is not None and (not counted or gv == fv)
        diffs += not same
        print(f"{'same' if same else 'DIFF'} {k[0]}|{k[1]}  gunicorn={gv} ferrocorn={fv}")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
