#!/usr/bin/env python3
"""ASGI compatibility suite: FastAPI, Starlette, Django with Channels, Quart,
Litestar and BlackSheep under ferrocorn's ASGI worker (or uvicorn, for
reference).

compat/run.sh --asgi runs this with the python of compat/.venv-asgi, which
holds the pinned frameworks, uvicorn, `requests` and `websockets`. Each app
in compat/apps/asgi/ is served by the server under test with one worker on
127.0.0.1 on a free port, and each case checks what a user of the app would
see: JSON and headers, a POSTed body, server-sent events arriving as they
are sent, the app noticing a client that went away, lifespan startup and
shutdown, and websockets (echo, subprotocol, a close code). One line per
case, `ok NAME`, `FAIL NAME: reason` or `skip NAME: reason`, then the
totals; the exit status is 1 if any case failed.

Every socket, request and websocket has a timeout, the whole run has a time
limit, and each server runs in its own process group, killed on the way out.
"""

import argparse
import importlib.metadata
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from suite import (  # noqa: E402  (the WSGI suite's client and process handling)
    HTTP_TIMEOUT,
    CaseFailed,
    Server,
    ServerError,
    SuiteAborted,
    check,
    client,
    free_port,
    raw_request,
    sha256,
    signal_group,
    STARTED_GROUPS,
)

COMPAT_DIR = Path(__file__).resolve().parent
ASGI_APPS_DIR = COMPAT_DIR / "apps" / "asgi"
REPO_ROOT = COMPAT_DIR.parent

SUITE_TIME_LIMIT = 240  # seconds for the whole run
SHUTDOWN_TIMEOUT = 15  # from SIGTERM to the server's exit
WS_TIMEOUT = 10

# The apps' /sse sends EVENTS events, the first at once, then one every
# EVENT_GAP seconds (compat/apps/asgi/common.py).
EVENTS = 5
EVENT_GAP = 0.3
FIRST_EVENT_LIMIT = 0.25  # seconds from the request to the first event
SSE_TOTAL_MIN = 0.6  # seconds from the request to the last event, at least
DISCONNECT_NOTICE_LIMIT = 5.0  # seconds for the app to see a client gone
DISCONNECT_PROMPT_LIMIT = 1.5  # the same, as promptly as a user would expect
SUBPROTOCOL = "compat.v2"
CLOSE_CODE = 4321
CLOSE_REASON = "compat-close"

# name: (module:attribute, worker class given to ferrocorn's -k)
APPS = {
    "fastapi": ("fastapi_app:app", "asgi"),
    "starlette": ("starlette_app:app", "asgi"),
    # the same Starlette app again, under a uvicorn name for the worker
    "starlette-uvicorn-alias": ("starlette_app:app", "uvicorn.workers.UvicornWorker"),
    "django": ("django_proj.asgi:application", "asgi"),
    "quart": ("quart_app:app", "asgi"),
    "litestar": ("litestar_app:app", "asgi"),
    "blacksheep": ("blacksheep_app:app", "asgi"),
    # a tornado.web.Application under -k tornado (no ASGI: uvicorn cannot
    # serve it; no lifespan), WebSocketHandlers included
    "tornado": ("tornado_app:app", "tornado"),
}
FERROCORN_ONLY = {"starlette-uvicorn-alias", "tornado"}
# Apps checked on some cases only.
ONLY_CASES = {
    "tornado": {
        "http-json",
        "http-post-body",
        "sse-incremental",
        "ws-echo",
        "ws-subprotocol",
        "ws-server-close",
        "ws-pings",
        "ws-on-close",
        "ws-origin-refused",
    }
}
# Cases known to fail on ferrocorn for now; run, but reported as expected
# failures (`xfail NAME: reason`) until they pass (then `XPASS`, a failure).
EXPECTED_FAILURES = {}


@dataclass
class Context:
    app: str
    port: int
    state: Path
    server: Server
    framework: str
    server_name: str

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_base(self):
        return f"ws://127.0.0.1:{self.port}"


@dataclass
class Check:
    name: str
    run: Callable[[Context], None]
    websocket: bool = False
    # The apps this case is for (None: every app).
    apps: frozenset | None = None


CHECKS = []


def check_case(websocket=False, apps=None):
    def register(func):
        only = frozenset(apps) if apps is not None else None
        CHECKS.append(Check(func.__name__.replace("_", "-"), func, websocket, only))
        return func

    return register


@check_case()
def http_json(ctx):
    with client() as http:
        response = http.get(f"{ctx.base}/hello", timeout=HTTP_TIMEOUT)
    check(response.status_code == 200, f"GET /hello gave {response.status_code}")
    ctype = response.headers.get("Content-Type", "")
    check(ctype.startswith("application/json"), f"Content-Type {ctype!r}, expected application/json")
    check(
        response.json() == {"hello": "world", "framework": ctx.framework},
        f"body {response.text[:200]!r}",
    )
    check(
        response.headers.get("X-Compat") == ctx.framework,
        f"X-Compat header {response.headers.get('X-Compat')!r}, expected {ctx.framework!r}",
    )
    length = response.headers.get("Content-Length")
    check(length is None or int(length) == len(response.content), f"Content-Length {length} for {len(response.content)} bytes")


@check_case()
def http_post_body(ctx):
    body = random.Random(7).randbytes(200 * 1024 + 3)
    with client() as http:
        response = http.post(
            f"{ctx.base}/echo",
            data=body,
            headers={"Content-Type": "application/octet-stream"},
            timeout=HTTP_TIMEOUT,
        )
    check(response.status_code == 200, f"POST /echo gave {response.status_code}: {response.text[:200]!r}")
    got = response.json()
    check(got.get("length") == len(body), f"the app read {got.get('length')} bytes of {len(body)}")
    check(got.get("sha256") == sha256(body), "the app's sha256 of the body differs")


@check_case()
def lifespan_startup(ctx):
    with client() as http:
        response = http.get(f"{ctx.base}/lifespan", timeout=HTTP_TIMEOUT)
    check(response.status_code == 200, f"GET /lifespan gave {response.status_code}: {response.text[:200]!r}")
    started = response.json().get("started")
    check(
        isinstance(started, str) and started.startswith(f"{ctx.framework}-started-"),
        f"the route reports started={started!r}: lifespan startup did not run first",
    )


def sse_events(body):
    return [chunk for chunk in body.decode(errors="replace").split("\n\n") if chunk.strip()]


@check_case()
def sse_incremental(ctx):
    response = raw_request(ctx.port, "GET", "/sse")
    check(response.status == 200, f"status {response.status}")
    ctype = response.header("Content-Type") or ""
    check(ctype.startswith("text/event-stream"), f"Content-Type {ctype!r}")
    expected = "".join(f"id: {i}\ndata: event {i}\n\n" for i in range(EVENTS)).encode()
    check(response.body == expected, f"body {response.body[:200]!r}")
    first_len = len(b"id: 0\ndata: event 0\n\n")
    first = response.time_of_byte(first_len)
    last = response.time_of_byte(len(expected))
    check(
        first < FIRST_EVENT_LIMIT,
        f"first event after {first:.3f} s (last after {last:.3f} s), expected < {FIRST_EVENT_LIMIT} s: held back",
    )
    check(last >= SSE_TOTAL_MIN, f"last event after {last:.3f} s, expected >= {SSE_TOTAL_MIN} s (the app sleeps)")


def drop_sse_stream(ctx, limit):
    """Read 2 events of /sse-endless, close the connection, and wait up to
    `limit` seconds for the app to report that its stream ended."""
    tag = f"{ctx.app}-{os.getpid()}-{random.randrange(1 << 30)}"
    request = (
        f"GET /sse-endless?id={tag} HTTP/1.1\r\nHost: 127.0.0.1:{ctx.port}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", ctx.port), timeout=HTTP_TIMEOUT) as sock:
        sock.sendall(request)
        received = b""
        deadline = time.monotonic() + HTTP_TIMEOUT
        while received.count(b"data: event") < 2:
            check(time.monotonic() < deadline, f"2 events not received within {HTTP_TIMEOUT} s: {received[:200]!r}")
            data = sock.recv(65536)
            check(data, f"connection closed before 2 events: {received[:200]!r}")
            received += data
        status_line = received.split(b"\r\n", 1)[0]
        check(b" 200 " in status_line, f"status line {status_line!r}")
    gone = time.monotonic()
    with client() as http:
        while True:
            response = http.get(f"{ctx.base}/disconnected", params={"id": tag}, timeout=HTTP_TIMEOUT)
            check(response.status_code == 200, f"GET /disconnected gave {response.status_code}")
            if response.json().get("disconnected"):
                return f"noticed after {time.monotonic() - gone:.2f} s"
            waited = time.monotonic() - gone
            check(waited < limit, f"the app's stream still running {waited:.1f} s after the client closed the connection")
            time.sleep(0.05)


@check_case()
def sse_client_disconnect(ctx):
    return drop_sse_stream(ctx, DISCONNECT_NOTICE_LIMIT)


@check_case()
def sse_client_disconnect_prompt(ctx):
    # uvicorn lets each of these apps notice in well under 0.3 s: an app
    # waiting in receive() gets http.disconnect as soon as the server sees the
    # close, and a send() after that fails.
    return drop_sse_stream(ctx, DISCONNECT_PROMPT_LIMIT)


def closed_code(exc):
    frame = exc.rcvd
    return (frame.code, frame.reason) if frame is not None else (None, None)


@check_case(websocket=True)
def ws_echo(ctx):
    with ws_connect(f"{ctx.ws_base}/ws/echo", open_timeout=WS_TIMEOUT, close_timeout=WS_TIMEOUT) as ws:
        for text in ("hello", "ünïcødé ✓", "x" * 70000):
            ws.send(text)
            got = ws.recv(timeout=WS_TIMEOUT)
            check(got == text, f"text echo: sent {len(text)} chars {text[:20]!r}, got {got[:40]!r}")
        for data in (bytes(range(256)), random.Random(3).randbytes(100_000)):
            ws.send(data)
            got = ws.recv(timeout=WS_TIMEOUT)
            check(isinstance(got, bytes), f"binary echo came back as {type(got).__name__}")
            check(got == data, f"binary echo: sent {len(data)} bytes, got {len(got)}")


@check_case(websocket=True)
def ws_subprotocol(ctx):
    with ws_connect(
        f"{ctx.ws_base}/ws/subprotocol",
        subprotocols=["compat.v1", SUBPROTOCOL],
        open_timeout=WS_TIMEOUT,
        close_timeout=WS_TIMEOUT,
    ) as ws:
        check(ws.subprotocol == SUBPROTOCOL, f"negotiated subprotocol {ws.subprotocol!r}, expected {SUBPROTOCOL!r}")
        got = ws.recv(timeout=WS_TIMEOUT)
        check(got == SUBPROTOCOL, f"the app saw subprotocol {got!r}")


@check_case(websocket=True)
def ws_server_close(ctx):
    with ws_connect(f"{ctx.ws_base}/ws/close", open_timeout=WS_TIMEOUT, close_timeout=WS_TIMEOUT) as ws:
        got = ws.recv(timeout=WS_TIMEOUT)
        check(got == "bye", f"first message {got!r}, expected 'bye'")
        try:
            extra = ws.recv(timeout=WS_TIMEOUT)
        except ConnectionClosed as exc:
            code, reason = closed_code(exc)
        except TimeoutError:
            raise CaseFailed(f"connection not closed by the server within {WS_TIMEOUT} s") from None
        else:
            raise CaseFailed(f"message {extra!r} after 'bye', expected the close")
    check(code == CLOSE_CODE, f"close code {code}, expected {CLOSE_CODE}")
    check(reason == CLOSE_REASON, f"close reason {reason!r}, expected {CLOSE_REASON!r}")


@check_case(websocket=True, apps={"tornado"})
def ws_pings(ctx):
    # The handler pings every 0.2 s (its ping_interval); the client's
    # automatic pongs reach on_pong. The client's own ping reaches on_ping.
    with ws_connect(f"{ctx.ws_base}/ws/ping", open_timeout=WS_TIMEOUT, close_timeout=WS_TIMEOUT) as ws:
        started = time.monotonic()
        got = ws.recv(timeout=WS_TIMEOUT)
        took = time.monotonic() - started
        check(got == "pong seen", f"first message {got!r}, expected 'pong seen' (the handler's on_pong)")
        check(0.1 <= took <= 3.0, f"'pong seen' after {took:.2f} s, expected about 0.2 s (the ping interval)")
        ws.ping(b"from-client")
        got = ws.recv(timeout=WS_TIMEOUT)
        check(got == "ping seen: from-client", f"after a client ping, got {got!r}")


@check_case(websocket=True, apps={"tornado"})
def ws_on_close(ctx):
    token = f"c{random.Random().randrange(10**9)}"
    with ws_connect(f"{ctx.ws_base}/ws/onclose?id={token}", open_timeout=WS_TIMEOUT, close_timeout=WS_TIMEOUT) as ws:
        got = ws.recv(timeout=WS_TIMEOUT)
        check(got == "open", f"first message {got!r}, expected 'open'")
        ws.close(code=4001, reason="client-bye")
    deadline = time.monotonic() + DISCONNECT_NOTICE_LIMIT
    seen = None
    with client() as http:
        while time.monotonic() < deadline:
            seen = http.get(f"{ctx.base}/ws/closed?id={token}", timeout=HTTP_TIMEOUT).json()["closed"]
            if seen is not None:
                break
            time.sleep(0.05)
    check(seen == "4001 client-bye", f"on_close saw close_code/close_reason {seen!r}, expected '4001 client-bye'")


@check_case(websocket=True, apps={"tornado"})
def ws_origin_refused(ctx):
    # Tornado's check_origin refuses a cross-origin handshake with 403; a plain
    # GET (no Upgrade) gets the handler's 400.
    try:
        with ws_connect(
            f"{ctx.ws_base}/ws/echo", origin="http://elsewhere.example", open_timeout=WS_TIMEOUT
        ):
            pass
    except InvalidStatus as exc:
        status = exc.response.status_code
    else:
        raise CaseFailed("a cross-origin handshake was accepted")
    check(status == 403, f"cross-origin handshake answered {status}, expected 403")
    with client() as http:
        response = http.get(f"{ctx.base}/ws/echo", timeout=HTTP_TIMEOUT)
    check(response.status_code == 400, f"GET without Upgrade answered {response.status_code}, expected 400")
    check("Upgrade" in response.text, f"GET without Upgrade: body {response.text[:100]!r}")


# Run last, by run_app: it stops the server.
def lifespan_shutdown(ctx):
    proc = ctx.server.proc
    check(proc is not None and proc.poll() is None, "server not running before SIGTERM")
    os.kill(proc.pid, signal.SIGTERM)
    try:
        code = proc.wait(SHUTDOWN_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise CaseFailed(f"server still running {SHUTDOWN_TIMEOUT} s after SIGTERM") from None
    marker = ctx.state / f"shutdown-{ctx.framework}"
    check(marker.exists(), f"no shutdown marker after the server exited (status {code}): lifespan shutdown did not run")
    # uvicorn re-raises the SIGTERM it handled once it is done, so it "dies" of
    # it; a gunicorn-style master exits 0.
    expected = (0, -signal.SIGTERM) if ctx.server_name == "uvicorn" else (0,)
    check(code in expected, f"server exited with status {code} after SIGTERM, expected 0")


# --- running -----------------------------------------------------------------


def server_argv(args, app, port, state):
    module, worker = APPS[app]
    if args.server == "uvicorn":
        return [
            sys.executable, "-m", "uvicorn",
            "--host", "127.0.0.1", "--port", str(port),
            "--app-dir", str(ASGI_APPS_DIR),
            "--lifespan", "on", "--ws", "websockets-sansio",
            "--timeout-graceful-shutdown", "5",
            module,
        ]  # fmt: skip
    return [
        str(args.binary),
        "-k", worker, "-w", "1",
        "-b", f"127.0.0.1:{port}",
        "--chdir", str(ASGI_APPS_DIR),
        "--virtualenv", sys.prefix,
        "--access-logfile", "-",
        "--graceful-timeout", "5",
        "-e", f"COMPAT_STATE_DIR={state}",
        module,
    ]  # fmt: skip


class Results:
    def __init__(self):
        self.counts = {"ok": 0, "FAIL": 0, "skip": 0, "xfail": 0, "XPASS": 0}
        self.reported = set()

    @property
    def failed(self):
        return self.counts["FAIL"] + self.counts["XPASS"]

    def report(self, name, error=None, *, skip=None, note=None):
        self.reported.add(name)
        known = EXPECTED_FAILURES.get(name)
        if skip is not None:
            kind, text = "skip", skip
        elif error is None:
            kind, text = ("XPASS", f"passes now; remove it from EXPECTED_FAILURES ({known})") if known else ("ok", None)
            if note and kind == "ok":
                name = f"{name} ({note})"
        else:
            kind, text = ("xfail", f"{error} [expected: {known}]") if known else ("FAIL", error)
        self.counts[kind] += 1
        print(f"{kind} {name}" + (f": {text}" if text else ""), flush=True)


def describe(exc):
    if isinstance(exc, CaseFailed):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def case_names(app):
    names = [f"{app}-{c.name}" for c in CHECKS if c.apps is None or app in c.apps]
    names.append(f"{app}-lifespan-shutdown")
    only = ONLY_CASES.get(app)
    return [n for n in names if only is None or n[len(app) + 1 :] in only]


def run_app(app, wanted, args, tmp, results):
    state = tmp / app
    state.mkdir()
    if args.server != "ferrocorn" and app in FERROCORN_ONLY:
        for name in wanted:
            results.report(name, skip=f"ferrocorn only (a worker-class alias, or -k tornado); nothing to check under {args.server}")
        return
    framework = app.split("-", 1)[0]
    port = free_port()
    log_path = state / "server.log"
    os.environ["COMPAT_STATE_DIR"] = str(state)  # uvicorn's app reads it from the environment
    server = Server(server_argv(args, app, port, state), log_path, port)
    ctx = Context(app, port, state, server, framework, args.server)
    failed_before = results.failed
    checks = [c for c in CHECKS if f"{app}-{c.name}" in wanted]
    try:
        with server:
            server.wait_ready()
            for c in checks:
                name = f"{app}-{c.name}"
                try:
                    note = c.run(ctx)
                except Exception as exc:
                    results.report(name, describe(exc))
                else:
                    results.report(name, note=note)
            name = f"{app}-lifespan-shutdown"
            if name in wanted:
                try:
                    lifespan_shutdown(ctx)
                except Exception as exc:
                    results.report(name, describe(exc))
                else:
                    results.report(name)
    except ServerError as exc:
        for name in wanted:
            if name not in results.reported:
                results.report(name, str(exc))
    finally:
        if results.failed > failed_before:
            print(f"# {args.server} log for {app} (last lines):", flush=True)
            for line in server.log_tail(30):
                print(f"#   {line}", flush=True)


def abort(signum, frame):
    if signum == signal.SIGALRM:
        reason = f"suite time limit ({SUITE_TIME_LIMIT} s) reached"
    else:
        reason = f"suite stopped by {signal.Signals(signum).name}"
    raise SuiteAborted(reason)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=("ferrocorn", "uvicorn"), default="ferrocorn")
    parser.add_argument(
        "--ferrocorn-bin",
        type=Path,
        default=Path(
            os.environ.get("FERROCORN_BIN")
            or Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target")) / "release" / "ferrocorn"
        ),
        help="ferrocorn binary (default: $FERROCORN_BIN or target/release/ferrocorn)",
    )
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("names", nargs="*", help="run only cases whose name contains one of these")
    args = parser.parse_args()
    args.binary = args.ferrocorn_bin.resolve() if args.server == "ferrocorn" else Path(sys.executable)
    return args


def main():
    args = parse_args()
    selected = {app: [n for n in case_names(app) if not args.names or any(s in n for s in args.names)] for app in APPS}
    if args.list:
        for names in selected.values():
            print("\n".join(names))
        return 0
    if not args.binary.is_file():
        print(f"compat: {args.server} binary not found: {args.binary}", file=sys.stderr)
        return 2
    packages = ("fastapi", "starlette", "Django", "channels", "Quart", "litestar", "blacksheep", "tornado", "uvicorn", "websockets")
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in packages)
    print(f"compat-asgi: {args.server} ({args.binary}) with {versions}", flush=True)

    for signum in (signal.SIGALRM, signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, abort)
    signal.alarm(SUITE_TIME_LIMIT)
    results = Results()
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="ferrocorn-compat-asgi-") as tmp:
            for app, names in selected.items():
                if names:
                    run_app(app, names, args, Path(tmp), results)
    except SuiteAborted as exc:
        for names in selected.values():
            for name in names:
                if name not in results.reported:
                    results.report(name, f"not finished: {exc}")
    finally:
        signal.alarm(0)
        for pgid in STARTED_GROUPS:
            signal_group(pgid, signal.SIGKILL)
    print(f"# {time.monotonic() - started:.1f} s", flush=True)
    c = results.counts
    extra = "".join(f", {c[k]} {k}" for k in ("skip", "xfail", "XPASS") if c[k])
    print(f"{c['ok']} passed, {c['FAIL']} failed{extra}", flush=True)
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main())
