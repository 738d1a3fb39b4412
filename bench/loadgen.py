#!/usr/bin/env python3
"""Constant HTTP load that counts every failure, for upgrade and reload proofs.

Standard library only, so it runs in a bare Debian root and from the test
suite. Each client is a thread that sends GET requests back to back:

* half of the clients keep one connection alive across requests (HTTP/1.1),
  the other half open a new connection for every request (Connection: close);
* optional slow clients request ``--slow-path`` (an app endpoint that takes
  seconds) to prove in-flight long requests complete across a handoff.

There are no retries: a refused connection, a reset, a connection closed
before the full response, a timeout or a non-2xx status all count as failed.
It stops after ``--duration`` seconds, or once ``--until-file`` exists, lets
every request in flight finish, prints one JSON summary line, and exits 1 if
anything failed (2 if it never got a single response).

    python3 bench/loadgen.py --url http://127.0.0.1:8000/ --clients 100 \\
        --until-file /tmp/stop --slow-path /slow --slow-clients 4
"""

import argparse
import collections
import json
import os
import socket
import sys
import threading
import time
import urllib.parse


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0
        self.failed = 0
        self.slow_ok = 0
        self.slow_failed = 0
        self.errors = collections.Counter()
        self.bodies = collections.Counter()
        self.statuses = collections.Counter()
        self.first_error = None

    def success(self, status, body, slow):
        key = body.strip()[:40].decode("latin-1")
        with self.lock:
            self.statuses[status] += 1
            self.bodies[key] += 1
            if slow:
                self.slow_ok += 1
            else:
                self.ok += 1

    def failure(self, kind, detail, slow):
        with self.lock:
            self.errors[kind] += 1
            if slow:
                self.slow_failed += 1
            else:
                self.failed += 1
            if self.first_error is None:
                self.first_error = "%s: %s (at %.3f)" % (kind, detail, time.time())


class Failed(Exception):
    def __init__(self, kind, detail=""):
        super().__init__(kind)
        self.kind = kind
        self.detail = detail


def read_response(sock, buf):
    """Read one response from sock; returns (status, body, keep_alive, rest)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise Failed("closed-before-response" if not buf else "closed-in-head")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise Failed("bad-status-line", lines[0][:60])
    length = None
    chunked = False
    close = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value:
            chunked = True
        elif name == b"connection" and value == b"close":
            close = True
    if chunked:
        body = b""
        while True:
            while b"\r\n" not in rest:
                chunk = sock.recv(65536)
                if not chunk:
                    raise Failed("closed-in-body")
                rest += chunk
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                chunk = sock.recv(65536)
                if not chunk:
                    raise Failed("closed-in-body")
                rest += chunk
            body += rest[:size]
            rest = rest[size + 2 :]
            if size == 0:
                break
    elif length is not None:
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise Failed("closed-in-body")
            rest += chunk
        body, rest = rest[:length], rest[length:]
    else:
        body = rest
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        rest = b""
        close = True
    return status, body, not close, rest


def client(stats, host, port, path, keep_alive, slow, stop, timeout):
    request = (
        "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: ferrocorn-loadgen\r\n%s\r\n"
        % (path, host, port, "" if keep_alive else "Connection: close\r\n")
    ).encode()
    sock = None
    buf = b""
    while not stop.is_set():
        try:
            if sock is None:
                try:
                    sock = socket.create_connection((host, port), timeout=timeout)
                except ConnectionRefusedError as e:
                    raise Failed("connect-refused", e)
                except OSError as e:
                    raise Failed("connect-error", e)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buf = b""
            try:
                sock.sendall(request)
                status, body, server_keeps, buf = read_response(sock, buf)
            except socket.timeout:
                raise Failed("timeout")
            except ConnectionResetError as e:
                raise Failed("reset", e)
            except BrokenPipeError as e:
                raise Failed("broken-pipe", e)
            except OSError as e:
                raise Failed("io-error", e)
            if 200 <= status < 300:
                stats.success(status, body, slow)
            else:
                stats.failure("status-%d" % status, body[:80], slow)
            if not (keep_alive and server_keeps):
                sock.close()
                sock = None
        except Failed as f:
            stats.failure(f.kind, f.detail, slow)
            if sock is not None:
                sock.close()
                sock = None
            time.sleep(0.01)
    if sock is not None:
        sock.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="http://HOST:PORT/PATH")
    p.add_argument("--clients", type=int, default=100)
    p.add_argument(
        "--close-ratio",
        type=float,
        default=0.5,
        help="share of clients that open a new connection per request",
    )
    p.add_argument("--duration", type=float, help="seconds to run")
    p.add_argument("--until-file", help="run until this file exists")
    p.add_argument("--slow-path", help="path of a long request, e.g. /slow")
    p.add_argument("--slow-clients", type=int, default=0)
    p.add_argument("--timeout", type=float, default=30.0, help="per-request I/O timeout")
    p.add_argument("--started-file", help="create this file once the load runs")
    a = p.parse_args()
    if a.duration is None and a.until_file is None:
        p.error("give --duration or --until-file")
    u = urllib.parse.urlsplit(a.url)
    host, port = u.hostname, u.port or 80
    path = (u.path or "/") + ("?" + u.query if u.query else "")

    stats = Stats()
    stop = threading.Event()
    threads = []
    closing = int(round(a.clients * a.close_ratio))
    for i in range(a.clients):
        keep = i >= closing
        t = threading.Thread(
            target=client,
            args=(stats, host, port, path, keep, False, stop, a.timeout),
            daemon=True,
        )
        threads.append(t)
    if a.slow_path:
        for i in range(a.slow_clients):
            t = threading.Thread(
                target=client,
                args=(stats, host, port, a.slow_path, i % 2 == 0, True, stop, a.timeout),
                daemon=True,
            )
            threads.append(t)
    started = time.monotonic()
    for t in threads:
        t.start()
    if a.started_file:
        open(a.started_file, "w").close()
    while True:
        time.sleep(0.05)
        if a.duration is not None and time.monotonic() - started >= a.duration:
            break
        if a.until_file and os.path.exists(a.until_file):
            break
    stop.set()
    for t in threads:
        t.join(a.timeout + 5)
    elapsed = time.monotonic() - started
    summary = {
        "seconds": round(elapsed, 2),
        "requests": stats.ok + stats.failed + stats.slow_ok + stats.slow_failed,
        "ok": stats.ok,
        "failed": stats.failed,
        "slow_ok": stats.slow_ok,
        "slow_failed": stats.slow_failed,
        "rps": round((stats.ok + stats.slow_ok) / elapsed, 1) if elapsed else 0,
        "errors": dict(stats.errors),
        "statuses": {str(k): v for k, v in stats.statuses.items()},
        "bodies": dict(stats.bodies.most_common(10)),
        "first_error": stats.first_error,
    }
    print(json.dumps(summary, sort_keys=True), flush=True)
    if stats.ok + stats.slow_ok == 0:
        return 2
    return 1 if stats.failed or stats.slow_failed else 0


if __name__ == "__main__":
    sys.exit(main())
