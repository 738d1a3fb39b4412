#!/usr/bin/env python3
"""ASGI side by side: the same raw requests to ferrocorn -k asgi and to
gunicorn 27 -k asgi, both serving compat/apps/asgi/scope_app.py, and a
comparison of what the app saw (the scope, field by field, and the body),
the status codes, the access-log lines, and how each master ends when the
app's lifespan startup fails.

compat/run.sh --asgi-differential runs it with compat/.venv-asgi's python
(which has gunicorn). Each difference is either one of DELIBERATE (reported,
with the reason, and documented in the README) or a failure. Standard
library only; every socket has a timeout and each server runs in its own
process group, killed on the way out.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMPAT_DIR = Path(__file__).resolve().parent
APPS_DIR = COMPAT_DIR / "apps" / "asgi"
REPO_ROOT = COMPAT_DIR.parent
TIMEOUT = 10
BOOT_TIMEOUT = 30

WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def req(method, target, headers=(), body=b"", version="1.1"):
    lines = [f"{method} {target} HTTP/{version}", "Host: compat.test"]
    lines += [f"{k}: {v}" for k, v in headers]
    if body and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


REQUESTS = [
    ("plain-get", req("GET", "/plain")),
    ("encoded-path", req("GET", "/caf%C3%A9/a%20b/c%2Fd?x=1&y=%20&z=%2F")),
    ("repeated-headers", req("GET", "/h", [("X-Thing", "a"), ("x-thing", "b"), ("Accept", "*/*"), ("X-Empty", "")])),
    ("post-length", req("POST", "/post", [("Content-Type", "text/plain")], b"hello body")),
    ("post-chunked", req("POST", "/chunked", [("Transfer-Encoding", "chunked")], b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")),
    ("head", req("HEAD", "/head")),
    ("http10", req("GET", "/old", version="1.0")),
    ("forwarded", req("GET", "/fwd", [("X-Forwarded-For", "203.0.113.7, 10.0.0.1"), ("X-Forwarded-Proto", "https")])),
    ("params", req("GET", "/with;params?q=1")),
    ("absolute-form", req("GET", "http://example.com/abs?q=1")),
    ("options-star", req("OPTIONS", "*")),
    ("websocket", req("GET", "/ws?x=1", [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", WS_KEY),
                                         ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Protocol", "one, two")]).replace(b"Connection: close\r\n", b"")),
]

# (request, what): why the two servers differ there, on purpose.
EXTENSIONS = "ferrocorn announces the extensions it implements (pathsend, zerocopysend, trailers; websocket.http.response); gunicorn 27's ASGI worker announces none"
DELIBERATE = {
    **{(name, "extensions"): EXTENSIONS for name, _ in REQUESTS},
    ("absolute-form", "path"): "for an absolute-form target ferrocorn's path is the URL's path, as the ASGI spec and uvicorn have it; gunicorn 27 passes the whole URL",
    ("absolute-form", "raw_path"): "likewise for raw_path",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Srv:
    def __init__(self, name, argv, log, port):
        self.name, self.argv, self.log, self.port = name, argv, log, port
        self.proc = None

    def start(self):
        out = open(self.log.with_suffix(".out"), "ab")
        self.proc = subprocess.Popen(self.argv, cwd=APPS_DIR, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        return self

    def wait_ready(self):
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before serving")
            try:
                status, _, _ = exchange(self.port, req("GET", "/ready"))
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not serving after {BOOT_TIMEOUT} s")

    def stop(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(5)
        self.proc = None


def exchange(port, raw):
    """(status, headers dict, body) of one request; a websocket answer's
    body is the payload of the first frame."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(raw)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
            if data.startswith(b"HTTP/1.1 101") and b"\r\n\r\n" in data:
                rest = data.split(b"\r\n\r\n", 1)[1]
                if len(rest) >= 2 and len(rest) >= 2 + (rest[1] & 0x7F) + (2 if rest[1] & 0x7F == 126 else 0):
                    break
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1]) if lines[0].startswith("HTTP/") else 0
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if status == 101 and len(body) >= 2:
        n = body[1] & 0x7F
        off = 2
        if n == 126:
            n = int.from_bytes(body[2:4], "big")
            off = 4
        body = body[off : off + n]
    elif headers.get("transfer-encoding") == "chunked":
        out, rest = b"", body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size.split(b";")[0], 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2 :]
        body = out
    return status, headers, body


def normalize(scope, port):
    scope = dict(scope)
    if isinstance(scope.get("client"), list):
        scope["client"] = [scope["client"][0], "PORT"]
    if isinstance(scope.get("server"), list) and scope["server"][1] == port:
        scope["server"] = [scope["server"][0], "PORT"]
    return scope


def compare(a, b):
    keys = sorted(set(a) | set(b))
    return [(k, a.get(k, "<absent>"), b.get(k, "<absent>")) for k in keys if a.get(k, "<absent>") != b.get(k, "<absent>")]


# gunicorn's default line, then the atoms that read the request apart.
ACCESS_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" U=%(U)s q=%(q)s H=%(H)s m=%(m)s thing=%({x-thing}i)s'
ACCESS_TIME = re.compile(r"\[[^\]]+\]")
# The response body is the scope, whose size differs with the extensions
# announced: the byte count (after the status) is masked.
ACCESS_BYTES = re.compile(r'(" \d{3}) \d+ ')


def access_lines(path):
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [ACCESS_BYTES.sub(r"\1 B ", ACCESS_TIME.sub("[T]", line)) for line in text.splitlines() if line.strip()]


def lifespan_failure(args, tmp):
    """(exit code, seconds, the reason logged) for each server when the
    app's lifespan startup fails."""
    out = {}
    for name in ("ferrocorn", "gunicorn"):
        port = free_port()
        log = tmp / f"lifespan-{name}.log"
        srv = Srv(name, server_argv(args, name, port, log, "scope_app:failing", ["--asgi-lifespan", "on"]), log, port).start()
        started = time.monotonic()
        try:
            code = srv.proc.wait(30)
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - started
        srv.stop()
        text = log.with_suffix(".out").read_text(errors="replace")
        out[name] = (code, took, "the database is down" in text)
    return out


def server_argv(args, name, port, log, module="scope_app:app", extra=()):
    common = ["-w", "1", "-b", f"127.0.0.1:{port}", "--access-logfile", str(log), "--access-logformat", ACCESS_FORMAT, *extra]
    if name == "gunicorn":
        return [sys.executable, "-m", "gunicorn", "-k", "asgi", *common, module]
    return [str(args.ferrocorn_bin), "-k", "asgi", "--virtualenv", sys.prefix, *common, module]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ferrocorn-bin", type=Path, default=REPO_ROOT / "target" / "release" / "ferrocorn")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args()
    failures = same = deliberate = 0
    reasons = {}
    with tempfile.TemporaryDirectory(prefix="ferrocorn-asgi-diff-") as tmpname:
        tmp = Path(tmpname)
        servers = {}
        try:
            for name in ("ferrocorn", "gunicorn"):
                port = free_port()
                log = tmp / f"{name}.log"
                servers[name] = Srv(name, server_argv(args, name, port, log), log, port).start()
            for s in servers.values():
                s.wait_ready()
            for rname, raw in REQUESTS:
                got = {}
                for name, s in servers.items():
                    status, headers, body = exchange(s.port, raw)
                    scope = None
                    if status in (101, 200) and body:
                        try:
                            scope = normalize(json.loads(body), s.port)
                        except ValueError:
                            scope = {"<not json>": body[:100].decode("latin-1")}
                    got[name] = (status, scope)
                (fs, fscope), (gs, gscope) = got["ferrocorn"], got["gunicorn"]
                problems = []
                if fs != gs:
                    problems.append(("status", fs, gs))
                if fscope is not None and gscope is not None:
                    problems += compare(fscope, gscope)
                elif (fscope is None) != (gscope is None) and rname != "head":
                    problems.append(("scope", fscope, gscope))
                if not problems:
                    same += 1
                    print(f"same {rname} (status {fs})", flush=True)
                    if args.verbose and fscope:
                        print(f"    {json.dumps(fscope, sort_keys=True)}")
                for what, fv, gv in problems:
                    why = DELIBERATE.get((rname, what))
                    if why:
                        deliberate += 1
                        reasons.setdefault(why, []).append(f"{rname} {what}")
                        if args.verbose:
                            print(f"deliberate {rname} {what}: ferrocorn {fv!r}, gunicorn {gv!r}", flush=True)
                    else:
                        failures += 1
                        print(f"DIFF {rname} {what}: ferrocorn {fv!r}, gunicorn {gv!r}", flush=True)
        finally:
            for s in servers.values():
                s.stop()
        # Access-log lines of the plain requests (the websocket one is left out:
        # gunicorn logs it at the end of the session, ferrocorn at the 101).
        flines = [line for line in access_lines(tmp / "ferrocorn.log") if "/ready" not in line and "/ws" not in line]
        glines = [line for line in access_lines(tmp / "gunicorn.log") if "/ready" not in line and "/ws" not in line]
        for fl, gl in zip(sorted(flines), sorted(glines)):
            if fl == gl:
                same += 1
                if args.verbose:
                    print(f"same access line: {fl}")
            elif "http://example.com/abs" in fl and "U=/abs " in fl and "U=http://example.com/abs " in gl:
                deliberate += 1
                reasons.setdefault(DELIBERATE[("absolute-form", "path")], []).append("absolute-form access-log U")
            else:
                failures += 1
                print(f"DIFF access line:\n    ferrocorn {fl}\n    gunicorn  {gl}", flush=True)
        if len(flines) != len(glines):
            failures += 1
            print(f"DIFF access-log line count: ferrocorn {len(flines)}, gunicorn {len(glines)}", flush=True)
        else:
            print(f"same access-log lines: {len(flines)}", flush=True)
        ends = lifespan_failure(args, tmp)
        (fc, ft, fr), (gc, gt, gr) = ends["ferrocorn"], ends["gunicorn"]
        if fc == gc and fr and gr:
            same += 1
            print(f"same lifespan-startup-failed: both exit {fc} and log the app's message ({ft:.1f} s / {gt:.1f} s)", flush=True)
        else:
            failures += 1
            print(f"DIFF lifespan-startup-failed: ferrocorn exit {fc} (message logged: {fr}), gunicorn exit {gc} (message logged: {gr})", flush=True)
    for why, where in reasons.items():
        print(f"deliberate ({len(where)}: {', '.join(where[:3])}{', ...' if len(where) > 3 else ''}): {why}")
    print(f"{same} same, {deliberate} deliberate, {failures} different")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
