#!/usr/bin/env python3
"""Real-apps compatibility suite: Django, Flask and Werkzeug under a WSGI server.

compat/run.sh runs this with the python of compat/.venv, which holds the
pinned apps and `requests`. The server under test (ferrocorn, or gunicorn
as a reference) is started once per app, on 127.0.0.1 on a free port with 2
workers, and each case checks what a user of the app would see. One line per
case, `ok NAME` or `FAIL NAME: reason`, then `N passed, N failed`; the exit
status is 1 if any case failed.

Every socket and request has a timeout, the whole run has a time limit, and
each server runs in its own process group, which is killed on the way out.
"""

import argparse
import hashlib
import importlib.metadata
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

COMPAT_DIR = Path(__file__).resolve().parent
APPS_DIR = COMPAT_DIR / "apps"
REPO_ROOT = COMPAT_DIR.parent

SUITE_TIME_LIMIT = 240  # seconds for the whole run, setup included
SETUP_TIMEOUT = 120  # per manage.py command
BOOT_TIMEOUT = 60  # until a new server answers /healthz
STOP_TIMEOUT = 10  # after SIGTERM, before SIGKILL
HTTP_TIMEOUT = 10  # per request, connect and read
WORKERS = 2

# Streaming: every app generator yields its first piece at once and then
# sleeps 0.3 s (0.5 s for events) before each further piece.
FIRST_BYTE_LIMIT = 0.8  # seconds
TICK_SPREAD_MIN = 0.9  # seconds between the first and the fifth tick

ADMIN_USER = "compat-admin"
DOWNLOAD_SIZE = 2 * 1024 * 1024 + 123  # not a round number, on purpose
UPLOAD_BIG_SIZE = 1024 * 1024 + 7
CHUNKED_UPLOAD_SIZE = 300 * 1024


class CaseFailed(Exception):
    """An expectation of a case was not met."""


class ServerError(Exception):
    """The server under test did not start or serve."""


class SetupError(Exception):
    """Preparing the apps' state (manage.py) failed."""


class SuiteAborted(BaseException):
    """The time limit ran out or the suite was told to stop (not an Exception,
    so that no case can swallow it)."""


def check(condition, message):
    if not condition:
        raise CaseFailed(message)


def client():
    """A requests session that ignores proxy settings from the environment."""
    session = requests.Session()
    session.trust_env = False
    return session


def sha256(data):
    return hashlib.sha256(data).hexdigest()


# --- a raw HTTP/1.1 client that records when each body byte arrived ---------


@dataclass
class RawResponse:
    status: int
    headers: list
    body: bytes = b""
    # (seconds after the request was sent, body length received by then)
    arrivals: list = field(default_factory=list)
    started: float = 0.0

    def header(self, name):
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def add(self, data):
        self.body += data
        self.arrivals.append((time.monotonic() - self.started, len(self.body)))

    def time_of_byte(self, count):
        """Seconds until the first `count` body bytes had arrived, or None."""
        for at, length in self.arrivals:
            if length >= count:
                return at
        return None


class _Reader:
    """Buffered reads from a socket, all bounded by one deadline."""

    def __init__(self, sock, deadline):
        self.sock = sock
        self.deadline = deadline
        self.buf = b""

    def _fill(self):
        """Read more into the buffer; False at end of stream."""
        remaining = self.deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
        except TimeoutError:
            raise TimeoutError("response not complete within the time limit") from None
        self.buf += data
        return bool(data)

    def readline(self):
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError("connection closed in the middle of a line")
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read(self, limit):
        """Up to `limit` bytes, waiting for at least one; b"" at end of stream."""
        if not self.buf and not self._fill():
            return b""
        data, self.buf = self.buf[:limit], self.buf[limit:]
        return data


def raw_request(port, method, target, headers=(), *, timeout=HTTP_TIMEOUT, until=None):
    """Send one request on a new connection (`Connection: close`) and read the
    response, recording the arrival time of the body as it comes.

    `until(body)` returning true ends the read early, for long streams.
    """
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        started = time.monotonic()
        reader = _Reader(sock, deadline)
        status_line = reader.readline().decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ConnectionError(f"bad status line {status_line!r}")
        response = RawResponse(int(parts[1]), [], started=started)
        while line := reader.readline():
            name, _, value = line.decode("latin-1").partition(":")
            response.headers.append((name.strip(), value.strip()))

        def stop():
            return until is not None and until(response.body)

        if method == "HEAD" or response.status in (204, 304):
            # No body may follow; whatever arrives before the close is one.
            reader.deadline = min(deadline, time.monotonic() + 1.0)
            try:
                while data := reader.read(65536):
                    response.add(data)
            except TimeoutError:
                pass  # connection left open, but nothing more was sent
        elif "chunked" in (response.header("Transfer-Encoding") or "").lower():
            while size := int(reader.readline().split(b";")[0], 16):
                while size:
                    data = reader.read(size)
                    if not data:
                        raise ConnectionError("connection closed inside a chunk")
                    response.add(data)
                    size -= len(data)
                    if stop():
                        return response
                if reader.readline() != b"":
                    raise ConnectionError("chunk data not followed by CRLF")
            while reader.readline():
                pass  # trailer fields
        elif (length := response.header("Content-Length")) is not None:
            remaining = int(length)
            while remaining and not stop():
                data = reader.read(remaining)
                if not data:
                    raise ConnectionError(f"connection closed {remaining} bytes short of Content-Length")
                response.add(data)
                remaining -= len(data)
        else:
            while not stop() and (data := reader.read(65536)):
                response.add(data)
        return response


# --- the server under test ---------------------------------------------------


def free_port():
    """A port that was free a moment ago (bind to port 0, then close)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Process groups of every server started, killed once more at exit.
STARTED_GROUPS = []


def signal_group(pgid, signum):
    try:
        os.killpg(pgid, signum)
        return True
    except ProcessLookupError:
        return False


class Server:
    """A server process started in a session of its own; stop() kills the
    whole process group (master and workers) whatever state it is in."""

    def __init__(self, argv, log_path, port, tls=None):
        """`tls`: the CA file that verifies an HTTPS server."""
        self.argv = argv
        self.log_path = log_path
        self.port = port
        self.tls = tls
        self.proc = None

    def __enter__(self):
        with open(self.log_path, "ab") as log:
            try:
                self.proc = subprocess.Popen(
                    self.argv,
                    cwd=APPS_DIR,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ServerError(f"cannot start {self.argv[0]}: {exc}") from None
        STARTED_GROUPS.append(self.proc.pid)
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def wait_ready(self):
        url = f"http://127.0.0.1:{self.port}/healthz"
        verify = True
        if self.tls:
            url, verify = f"https://localhost:{self.port}/healthz", self.tls
        deadline = time.monotonic() + BOOT_TIMEOUT
        with client() as http:
            while time.monotonic() < deadline:
                if (code := self.proc.poll()) is not None:
                    raise ServerError(f"server exited with status {code} before serving")
                try:
                    if http.get(url, timeout=2, verify=verify).text == "ok":
                        return
                except requests.RequestException:
                    pass
                time.sleep(0.2)
        raise ServerError(f"server not answering /healthz after {BOOT_TIMEOUT} s")

    def stop(self):
        if self.proc is None:
            return
        pgid = self.proc.pid  # leader of its own session and process group
        signal_group(pgid, signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(f"# server did not stop within {STOP_TIMEOUT} s of SIGTERM; killing it", flush=True)
        # Anything left in the group (the master, or workers it left behind).
        signal_group(pgid, signal.SIGKILL)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            print(f"# server pid {pgid} not gone 5 s after SIGKILL", flush=True)
        self.proc = None
        deadline = time.monotonic() + 5
        while signal_group(pgid, 0):
            if time.monotonic() > deadline:
                print(f"# processes of group {pgid} still alive after SIGKILL", flush=True)
                return
            time.sleep(0.05)
        STARTED_GROUPS.remove(pgid)

    def log_tail(self, lines=20):
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return text.splitlines()[-lines:]


# --- cases -------------------------------------------------------------------


@dataclass
class Context:
    port: int
    state: Path
    admin_password: str

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Case:
    name: str
    app: str
    run: Callable[[Context], None]


CASES = []


def case(app):
    """Register a case; its name is the function's, with dashes."""

    def register(func):
        CASES.append(Case(func.__name__.replace("_", "-"), app, func))
        return func

    return register


def csrf_form_token(html):
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    check(match, "no csrfmiddlewaretoken in the login form")
    return match[1]


@case("django")
def django_admin_login(ctx):
    with client() as http:
        login_url = f"{ctx.base}/admin/login/?next=/admin/"
        page = http.get(login_url, timeout=HTTP_TIMEOUT)
        check(page.status_code == 200, f"GET /admin/login/ gave {page.status_code}")
        check(http.cookies.get("csrftoken"), "no csrftoken cookie set by the login page")
        form = {
            "csrfmiddlewaretoken": csrf_form_token(page.text),
            "username": ADMIN_USER,
            "password": ctx.admin_password,
            "next": "/admin/",
        }
        login = http.post(login_url, data=form, allow_redirects=False, timeout=HTTP_TIMEOUT)
        check(login.status_code == 302, f"login POST gave {login.status_code}, expected 302")
        location = login.headers.get("Location")
        check(location == "/admin/", f"login redirected to {location!r}, expected '/admin/'")
        check(http.cookies.get("sessionid"), "no sessionid cookie after logging in")
        index = http.get(f"{ctx.base}/admin/", allow_redirects=False, timeout=HTTP_TIMEOUT)
        check(index.status_code == 200, f"GET /admin/ after login gave {index.status_code}")
        check(f"<strong>{ADMIN_USER}</strong>" in index.text, "admin index does not greet the user")


@case("django")
def django_csrf_reject(ctx):
    with client() as http:
        login_url = f"{ctx.base}/admin/login/"
        page = http.get(login_url, timeout=HTTP_TIMEOUT)
        check(page.status_code == 200, f"GET /admin/login/ gave {page.status_code}")
        form = {"username": ADMIN_USER, "password": ctx.admin_password}
        post = http.post(login_url, data=form, allow_redirects=False, timeout=HTTP_TIMEOUT)
        check(
            post.status_code == 403, f"login POST without a CSRF token gave {post.status_code}, expected 403"
        )
        check("CSRF verification failed" in post.text, "403 page does not name the CSRF failure")
        index = http.get(f"{ctx.base}/admin/", allow_redirects=False, timeout=HTTP_TIMEOUT)
        check(index.status_code == 302, f"GET /admin/ gave {index.status_code}: logged in after all?")


def check_prompt_stream(response, expected_body, what):
    """Body complete, first byte early, and the last one clearly later."""
    check(response.status == 200, f"status {response.status}")
    check(response.body == expected_body, f"body {response.body[:80]!r}, expected {expected_body[:80]!r}")
    first = response.time_of_byte(1)
    last = response.time_of_byte(len(expected_body))
    check(
        first < FIRST_BYTE_LIMIT,
        f"first byte after {first:.2f} s (last after {last:.2f} s), expected < {FIRST_BYTE_LIMIT} s: "
        f"{what} held back",
    )
    return first, last


@case("django")
def django_streaming(ctx):
    response = raw_request(ctx.port, "GET", "/stream/")
    expected = "".join(f"piece {i}\n" for i in range(5)).encode()
    first, last = check_prompt_stream(response, expected, "StreamingHttpResponse")
    check(last - first >= 1.0, f"5 pieces arrived within {last - first:.2f} s; the generator sleeps 1.2 s")


@case("django")
def django_file_response(ctx):
    data = (ctx.state / "files" / "download.bin").read_bytes()
    with client() as http:
        response = http.get(f"{ctx.base}/download/", timeout=HTTP_TIMEOUT)
    check(response.status_code == 200, f"status {response.status_code}")
    length = response.headers.get("Content-Length")
    check(length == str(len(data)), f"Content-Length {length}, expected {len(data)}")
    check(len(response.content) == len(data), f"got {len(response.content)} bytes, expected {len(data)}")
    check(response.content == data, "body differs from the file")
    ctype = response.headers.get("Content-Type")
    check(ctype == "application/octet-stream", f"Content-Type {ctype!r}")
    disposition = response.headers.get("Content-Disposition", "")
    check(
        disposition == 'attachment; filename="download.bin"',
        f"Content-Disposition {disposition!r}",
    )


@case("django")
def django_multipart_upload(ctx):
    rng = random.Random(1)
    big = rng.randbytes(UPLOAD_BIG_SIZE)
    small = "Grüße from the compat suite\n".encode() * 3
    fields = {"title": "compat upload", "note": "héllo wörld ✓"}
    files = {
        "big": ("big.bin", big, "application/octet-stream"),
        "small": ("notes.txt", small, "text/plain; charset=utf-8"),
    }
    with client() as http:
        response = http.post(f"{ctx.base}/upload/", data=fields, files=files, timeout=HTTP_TIMEOUT)
    check(response.status_code == 200, f"status {response.status_code}: {response.text[:200]!r}")
    got = response.json()
    expected_files = {
        "big": {"name": "big.bin", "size": len(big), "sha256": sha256(big)},
        "small": {"name": "notes.txt", "size": len(small), "sha256": sha256(small)},
    }
    for name, expected in expected_files.items():
        check(got["files"].get(name) == expected, f"file {name}: server saw {got['files'].get(name)}")
    check(got["fields"] == fields, f"fields: server saw {got['fields']}")


@case("django")
def django_whitenoise_static(ctx):
    with client() as http:
        page = http.get(f"{ctx.base}/admin/login/", timeout=HTTP_TIMEOUT)
        match = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', page.text)
        check(match, "login page links no hashed admin/css/base.css")
        url = ctx.base + match[1]
        data = (ctx.state / "static" / match[1].removeprefix("/static/")).read_bytes()

        full = http.get(url, timeout=HTTP_TIMEOUT)
        check(full.status_code == 200, f"GET gave {full.status_code}")
        check(full.content == data, "body differs from the collected file")
        encoding = full.headers.get("Content-Encoding")
        check(encoding == "gzip", f"Content-Encoding {encoding!r}: whitenoise's gzip variant expected")
        etag = full.headers.get("ETag")
        modified = full.headers.get("Last-Modified")
        check(etag and modified, f"ETag {etag!r}, Last-Modified {modified!r}")

        for name, value in (("If-None-Match", etag), ("If-Modified-Since", modified)):
            cond = http.get(url, headers={name: value}, timeout=HTTP_TIMEOUT)
            check(cond.status_code == 304, f"{name} gave {cond.status_code}, expected 304")
            check(cond.content == b"", f"304 with a {len(cond.content)}-byte body")

        part = http.get(
            url, headers={"Range": "bytes=0-99", "Accept-Encoding": "identity"}, timeout=HTTP_TIMEOUT
        )
        check(part.status_code == 206, f"Range gave {part.status_code}, expected 206")
        check(part.content == data[:100], f"Range body: {len(part.content)} bytes, not the first 100")
        content_range = part.headers.get("Content-Range")
        check(content_range == f"bytes 0-99/{len(data)}", f"Content-Range {content_range!r}")
        check(
            part.headers.get("Content-Length") == "100",
            f"Content-Length {part.headers.get('Content-Length')}",
        )


@case("django")
def django_sse(ctx):
    def has_event(body):
        return b"\n\n" in body

    # The stream lasts 4.5 s; wait for all of it, to tell "late" from "never".
    response = raw_request(
        ctx.port, "GET", "/events/", [("Accept", "text/event-stream")], timeout=8, until=has_event
    )
    check(response.status == 200, f"status {response.status}")
    ctype = response.header("Content-Type") or ""
    check(ctype.startswith("text/event-stream"), f"Content-Type {ctype!r}")
    check(has_event(response.body), f"stream ended without a complete event: {response.body[:80]!r}")
    event = response.body.split(b"\n\n", 1)[0]
    check(event == b"id: 0\nevent: tick\ndata: tick 0", f"first event {event!r}")
    arrived = response.time_of_byte(len(event) + 2)
    check(
        arrived < FIRST_BYTE_LIMIT,
        f"first event after {arrived:.2f} s, expected < {FIRST_BYTE_LIMIT} s: events held back",
    )


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


@case("prometheus")
def prometheus_multiprocess_hooks(ctx):
    """when_ready serves the metrics of every worker, child_exit marks a
    gone worker dead (its live gauge leaves the sum)."""
    port_file = ctx.state / "prom-metrics.port"
    deadline = time.monotonic() + 10
    while not port_file.exists():
        check(time.monotonic() < deadline, "when_ready did not start the metrics server")
        time.sleep(0.1)
    metrics = f"http://127.0.0.1:{port_file.read_text().strip()}/metrics"
    with client() as http:
        for _ in range(10):
            check(http.get(f"{ctx.base}/count", timeout=HTTP_TIMEOUT).status_code == 200, "a request failed")
        text = http.get(metrics, timeout=HTTP_TIMEOUT).text
        check(metric(text, "compat_requests_total") == 10.0, f"requests total: {metric(text, 'compat_requests_total')}")
        # The second worker may still be importing the app.
        deadline = time.monotonic() + 10
        while (up := metric(http.get(metrics, timeout=HTTP_TIMEOUT).text, "compat_worker_up")) != 2.0:
            check(time.monotonic() < deadline, f"workers up: {up}, expected 2")
            time.sleep(0.2)
        master = int((APPS_DIR / "prom.pid").read_text().strip())
        os.kill(master, signal.SIGTTOU)
        deadline = time.monotonic() + 10
        while True:
            up = metric(http.get(metrics, timeout=HTTP_TIMEOUT).text, "compat_worker_up")
            if up == 1.0:
                break
            check(time.monotonic() < deadline, f"after TTOU, workers up still {up}: child_exit did not mark the worker dead")
            time.sleep(0.2)


@case("paste")
def paste_deploy_app(ctx):
    with client() as http:
        r = http.get(f"{ctx.base}/hello", timeout=HTTP_TIMEOUT)
    check(r.status_code == 200, f"status {r.status_code}")
    check(r.text == "hi from paste, world", f"body {r.text!r}: the ini's setting and --paste-global")
    log = ctx.state / "paste-server.log"
    deadline = time.monotonic() + 5
    while "PASTELOG pasteapp pasteapp served /hello" not in log.read_text(errors="replace"):
        check(time.monotonic() < deadline, "the ini's [loggers] did not configure logging")
        time.sleep(0.1)


@case("flask")
def flask_stream_with_context(ctx):
    response = raw_request(ctx.port, "GET", "/ticks?n=5")
    tick = b"tick\n"
    first, last = check_prompt_stream(response, tick * 5, "stream_with_context body")
    check(
        last - first >= TICK_SPREAD_MIN,
        f"1st and 5th tick {last - first:.2f} s apart, expected >= {TICK_SPREAD_MIN} s",
    )


@case("flask")
def flask_behind_a_proxy(ctx):
    # From 127.0.0.1, trusted by forwarded_allow_ips' default: the
    # secure_scheme_headers decide the scheme; an underscore header is
    # dropped (header_map's default) so it cannot pose as X-Custom.
    with client() as http:
        r = http.get(f"{ctx.base}/whoami", headers={"X-Forwarded-Proto": "https", "X_Custom": "1"})
        check(r.status_code == 200, f"status {r.status_code}")
        seen = r.json()
        check(seen["scheme"] == "https", f"scheme {seen['scheme']!r}, expected 'https'")
        check(seen["url"].startswith("https://"), f"external URL {seen['url']!r}")
        check(seen["x_custom"] is None, f"X_Custom reached the app as {seen['x_custom']!r}")
        r = http.get(f"{ctx.base}/whoami", headers={"X-Forwarded-Proto": "http"})
        check(r.json()["scheme"] == "http", f"scheme {r.json()['scheme']!r}, expected 'http'")


@case("flask")
def flask_send_file(ctx):
    data = (ctx.state / "files" / "report.csv").read_bytes()
    url = f"{ctx.base}/report.csv"
    with client() as http:
        full = http.get(url, timeout=HTTP_TIMEOUT)
        check(full.status_code == 200, f"status {full.status_code}")
        check(full.content == data, f"body: {len(full.content)} bytes, not the file's {len(data)}")
        length = full.headers.get("Content-Length")
        check(length == str(len(data)), f"Content-Length {length}, expected {len(data)}")
        ctype = full.headers.get("Content-Type", "")
        check(ctype.startswith("text/csv"), f"Content-Type {ctype!r}")
        etag = full.headers.get("ETag")
        modified = full.headers.get("Last-Modified")
        check(etag and modified, f"ETag {etag!r}, Last-Modified {modified!r}")

        for name, value in (("If-None-Match", etag), ("If-Modified-Since", modified)):
            cond = http.get(url, headers={name: value}, timeout=HTTP_TIMEOUT)
            check(cond.status_code == 304, f"{name} gave {cond.status_code}, expected 304")
            check(cond.content == b"", f"304 with a {len(cond.content)}-byte body")

        part = http.get(url, headers={"Range": "bytes=0-99"}, timeout=HTTP_TIMEOUT)
        check(part.status_code == 206, f"Range gave {part.status_code}, expected 206")
        check(part.content == data[:100], f"Range body: {len(part.content)} bytes, not the first 100")
        content_range = part.headers.get("Content-Range")
        check(content_range == f"bytes 0-99/{len(data)}", f"Content-Range {content_range!r}")


@case("flask")
def flask_head_streamed(ctx):
    get = raw_request(ctx.port, "GET", "/ticks?n=3")
    check(get.status == 200 and get.body == b"tick\n" * 3, f"GET: status {get.status}, body {get.body!r}")
    head = raw_request(ctx.port, "HEAD", "/ticks?n=3")
    check(head.status == 200, f"HEAD status {head.status}")
    check(head.body == b"", f"HEAD response followed by {len(head.body)} bytes: {head.body[:40]!r}")
    get_length = get.header("Content-Length")
    head_length = head.header("Content-Length")
    check(
        head_length == get_length,
        f"HEAD has Content-Length: {head_length} but GET has "
        f"{'none' if get_length is None else get_length} (RFC 9110 9.3.2)",
    )
    check(
        head.header("Content-Type") == get.header("Content-Type"),
        f"Content-Type: HEAD {head.header('Content-Type')!r}, GET {get.header('Content-Type')!r}",
    )


@case("flask")
def flask_sock_websocket(ctx):
    # A real WebSocket client (the websockets package) against flask-sock,
    # which takes the connection over through environ["gunicorn.socket"].
    from websockets.sync.client import connect

    url = f"ws://127.0.0.1:{ctx.port}/echo"
    with connect(url, open_timeout=HTTP_TIMEOUT, close_timeout=HTTP_TIMEOUT) as ws:
        for text in ("hello", "caf\u00e9", "x" * 70000):
            ws.send(text)
            reply = ws.recv(timeout=HTTP_TIMEOUT)
            check(reply == text.upper(), f"echo of {text[:20]!r}: {reply[:40]!r}")
        ws.send("bye")
        check(ws.recv(timeout=HTTP_TIMEOUT) == "BYE", "no BYE")
    # The server still answers plain HTTP afterwards.
    with client() as http:
        check(http.get(f"{ctx.base}/healthz", timeout=HTTP_TIMEOUT).text == "ok", "healthz after the socket")


@case("flask")
def werkzeug_chunked_upload(ctx):
    payload = random.Random(2).randbytes(CHUNKED_UPLOAD_SIZE)

    def pieces():
        for offset in range(0, len(payload), 64 * 1024):
            yield payload[offset : offset + 64 * 1024]

    with client() as http:
        response = http.post(
            f"{ctx.base}/wz/digest",
            data=pieces(),
            headers={"Content-Type": "application/octet-stream"},
            timeout=HTTP_TIMEOUT,
        )
    check(response.request.headers.get("Transfer-Encoding") == "chunked", "request was not sent chunked")
    check(response.status_code == 200, f"status {response.status_code}")
    expected = {"size": len(payload), "sha256": sha256(payload)}
    check(response.json() == expected, f"server saw {response.json()}, expected {expected}")


# --- setup and the run -------------------------------------------------------


APPS = {
    # app: (APP_MODULE, description)
    "django": ("djsite.wsgi", "Django project"),
    "flask": ("flaskapp:app", "Flask app with a Werkzeug app at /wz"),
    "prometheus": (
        ["-c", str(APPS_DIR / "prom_conf.py"), "-p", "prom.pid", "promapp:app"],
        "prometheus_client multiprocess app with gunicorn.conf.py hooks",
    ),
    "paste": (
        ["--paste", str(APPS_DIR / "paste.ini"), "--paste-global", "who=world"],
        "PasteDeploy app",
    ),
}


def manage(state, *args, extra_env=None):
    env = dict(os.environ, COMPAT_STATE_DIR=str(state), **(extra_env or {}))
    try:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=APPS_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SETUP_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise SetupError(f"manage.py {args[0]} took over {SETUP_TIMEOUT} s") from None
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip().splitlines() or ["no output"]
        raise SetupError(f"manage.py {args[0]} exited with status {done.returncode}: {output[-1]}")


def prepare_files(state):
    """The files the apps serve, and Django's upload spool."""
    files = state / "files"
    files.mkdir()
    (state / "uploads").mkdir()
    (files / "download.bin").write_bytes(random.Random(0).randbytes(DOWNLOAD_SIZE))
    rows = ["id,name,amount"] + [f"{i},item {i},{i * 7 % 1000}.{i % 100:02d}" for i in range(10000)]
    (files / "report.csv").write_text("\n".join(rows) + "\n")


def prepare_django(state, admin_password):
    """The database with a superuser, and the collected static files."""
    manage(state, "migrate", "--noinput")
    manage(
        state,
        "createsuperuser",
        "--noinput",
        "--username",
        ADMIN_USER,
        "--email",
        "admin@example.invalid",
        extra_env={"DJANGO_SUPERUSER_PASSWORD": admin_password},
    )
    manage(state, "collectstatic", "--noinput")


def server_argv(server, binary, port, state, app_module):
    """The same gunicorn-style command line for both servers."""
    flags = [
        "-w", str(WORKERS),
        "-b", f"127.0.0.1:{port}",
        "--chdir", str(APPS_DIR),
        "--access-logfile", "-",
        "--graceful-timeout", "5",
        "-e", f"COMPAT_STATE_DIR={state}",
    ]  # fmt: skip
    if server == "ferrocorn":
        # gunicorn runs from the venv; ferrocorn embeds /usr/bin/python3 and
        # is pointed at it.
        flags += ["--virtualenv", sys.prefix]
    tail = app_module if isinstance(app_module, list) else [app_module]
    return [str(binary), *flags, *tail]


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.reported = set()

    def report(self, name, error=None):
        self.reported.add(name)
        if error is None:
            self.passed += 1
            print(f"ok {name}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL {name}: {error}", flush=True)


def describe(exc):
    if isinstance(exc, CaseFailed):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def run_app(app, cases, args, state, admin_password, setup_error, results):
    if setup_error:
        for c in cases:
            results.report(c.name, f"setup failed: {setup_error}")
        return
    port = free_port()
    log_path = state / f"{app}-server.log"
    argv = server_argv(args.server, args.binary, port, state, APPS[app][0])
    ctx = Context(port, state, admin_password)
    server = Server(argv, log_path, port)
    failed_before = results.failed
    try:
        with server:
            server.wait_ready()
            for c in cases:
                try:
                    c.run(ctx)
                except Exception as exc:
                    results.report(c.name, describe(exc))
                else:
                    results.report(c.name)
    except ServerError as exc:
        for c in cases:
            if c.name not in results.reported:
                results.report(c.name, str(exc))
    finally:
        if results.failed > failed_before:
            print(f"# {args.server} log for the {APPS[app][1]} (last lines):", flush=True)
            for line in server.log_tail():
                print(f"#   {line}", flush=True)


def abort(signum, frame):
    if signum == signal.SIGALRM:
        reason = f"suite time limit ({SUITE_TIME_LIMIT} s) reached"
    else:
        reason = f"suite stopped by {signal.Signals(signum).name}"
    raise SuiteAborted(reason)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=("ferrocorn", "gunicorn"), default="ferrocorn")
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
    if args.server == "ferrocorn":
        args.binary = args.ferrocorn_bin.resolve()
    else:
        args.binary = Path(sys.prefix) / "bin" / "gunicorn"
    return args


def main():
    args = parse_args()
    selected = [c for c in CASES if not args.names or any(n in c.name for n in args.names)]
    if args.list:
        for c in selected:
            print(c.name)
        return 0
    if not args.binary.is_file():
        print(f"compat: {args.server} binary not found: {args.binary}", file=sys.stderr)
        return 2
    versions = ", ".join(
        f"{pkg} {importlib.metadata.version(pkg)}" for pkg in ("Django", "Flask", "Werkzeug", "whitenoise")
    )
    print(f"compat: {args.server} ({args.binary}) with {versions}", flush=True)

    signal.signal(signal.SIGALRM, abort)
    signal.signal(signal.SIGTERM, abort)
    signal.signal(signal.SIGHUP, abort)
    signal.signal(signal.SIGINT, abort)
    signal.alarm(SUITE_TIME_LIMIT)
    results = Results()
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="ferrocorn-compat-") as tmp:
            state = Path(tmp)
            admin_password = secrets.token_urlsafe(18)
            prepare_files(state)
            for app in APPS:
                cases = [c for c in selected if c.app == app]
                if not cases:
                    continue
                setup_error = None
                if app == "django":
                    try:
                        prepare_django(state, admin_password)
                    except SetupError as exc:
                        setup_error = str(exc)
                run_app(app, cases, args, state, admin_password, setup_error, results)
    except SuiteAborted as exc:
        for c in selected:
            if c.name not in results.reported:
                results.report(c.name, f"not finished: {exc}")
    finally:
        signal.alarm(0)
        # Should a stop have been cut short by an abort: no process outlives us.
        for pgid in STARTED_GROUPS:
            signal_group(pgid, signal.SIGKILL)
    print(f"# {time.monotonic() - started:.1f} s", flush=True)
    print(f"{results.passed} passed, {results.failed} failed", flush=True)
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main())
