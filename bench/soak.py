#!/usr/bin/env python3
"""Soak test: two ferrocorn masters (a sync one and a gthread one, 2 workers
each) under mixed load for --duration seconds (default 30 min), with a HUP to
each master every --hup-every seconds (60) and one random worker of each
master SIGKILLed every --kill-every seconds (20). Standard library only.

    python3 bench/soak.py [--duration 1800] [--bin target/release/ferrocorn]

Load, per server (each client a thread, every request with a unique
X-Soak-Id header): keep-alive GETs, GETs with Connection: close, uploads
(64 KiB Content-Length bodies and chunked bodies, checked against the
length and CRC-32 the app answers), slow clients (head and body trickled
over about a second), and pipelining (4 requests written at once on a
keep-alive connection).

Accounting. Every response is checked (status 200, body length and CRC).
A request without a good response is *failed* when the app had started it
(its id is in the app's record, see bench/apps/soak.py), and *lost before
the app* otherwise: a connection that died before the app saw the request
(held by a killed worker, or an idle keep-alive connection closed by a
reload), which a client may safely retry. Each miss is attributed to the
kill or HUP just before it. Pass criteria: failed <= kills for the sync
server and <= kills x --threads for gthread, no miss unexplained by a kill
or HUP, no timeout, and the masters' RSS and open fds do not grow between
the start and the end. One JSON summary at the end; exit 1 on a failure.
"""

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# How long after a kill or HUP a miss can still be caused by it (slow
# clients notice a dead connection only at their next write or read).
ATTRIBUTE_WINDOW = 8.0
TIMEOUT = 30.0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(d))
    return out


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def nfds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


class Server:
    def __init__(self, name, args, binary, started_dir):
        self.name = name
        self.port = free_port()
        self.threads = 1
        if "--threads" in args:
            self.threads = int(args[args.index("--threads") + 1])
        cmd = [binary, "-w", "2", "-b", "127.0.0.1:%d" % self.port,
               "--chdir", HERE, "--graceful-timeout", "10"] + args + ["apps.soak:app"]
        env = dict(os.environ, SOAK_STARTED_DIR=started_dir)
        self.log = open(os.path.join(started_dir, "..", name + ".log"), "wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.kills = 0
        self.hups = 0
        self.exited_at = None
        self.events = []  # (time, "kill" | "hup")
        self.lock = threading.Lock()
        self.ok = 0
        self.misses = []  # (time, id, kind, detail)

    def wait_ready(self):
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                sys.exit("%s exited at start (see its log)" % self.name)
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                if len(children(self.proc.pid)) >= 2:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        sys.exit("%s did not start" % self.name)

    def figures(self):
        if self.proc.poll() is not None:
            return {"exited": self.proc.returncode}
        try:
            return {"rss_kib": rss_kib(self.proc.pid), "fds": nfds(self.proc.pid),
                    "workers": len(children(self.proc.pid))}
        except OSError:
            return {"exited": self.proc.poll()}


class Miss(Exception):
    def __init__(self, kind, detail):
        super().__init__(kind, detail)
        self.kind = kind
        self.detail = detail


def read_response(f):
    """One response from the buffered socket file: (status, body)."""
    line = f.readline(65537)
    if not line:
        raise Miss("closed", "connection closed before the response")
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise Miss("bad", "bad status line %r" % line[:80])
    status = int(parts[1])
    length = None
    while True:
        h = f.readline(65537)
        if not h:
            raise Miss("closed", "connection closed in the response head")
        if h in (b"\r\n", b"\n"):
            break
        name, _, value = h.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None:
        raise Miss("bad", "response without Content-Length")
    body = f.read(length)
    if len(body) != length:
        raise Miss("closed", "connection closed in the response body")
    return status, body


def request_bytes(rid, method="GET", body=b"", chunked=False, close=False):
    head = "%s /soak HTTP/1.1\r\nHost: soak\r\nX-Soak-Id: %s\r\n" % (method, rid)
    if close:
        head += "Connection: close\r\n"
    if chunked:
        head += "Transfer-Encoding: chunked\r\n\r\n"
        out = b""
        for i in range(0, len(body), 5000):
            piece = body[i:i + 5000]
            out += b"%x\r\n%s\r\n" % (len(piece), piece)
        return head.encode() + out + b"0\r\n\r\n"
    if method == "POST":
        head += "Content-Length: %d\r\n" % len(body)
    return head.encode() + b"\r\n" + body


def expect(body):
    return b"%d %08x\n" % (len(body), zlib.crc32(body))


class Client(threading.Thread):
    """One connection at a time, requests of one style back to back."""

    def __init__(self, server, style, n, stop, pace):
        super().__init__(daemon=True)
        self.server = server
        self.style = style
        self.n = n
        self.stop = stop
        self.pace = pace
        self.seq = 0
        self.sock = None
        self.file = None
        self.rng = random.Random(hash((server.name, style, n)))

    def rid(self):
        self.seq += 1
        return "%s-%s%d-%d" % (self.server.name, self.style, self.n, self.seq)

    def connect(self):
        self.drop()
        self.sock = socket.create_connection(("127.0.0.1", self.server.port), TIMEOUT)
        self.sock.settimeout(TIMEOUT)
        self.file = self.sock.makefile("rb")

    def drop(self):
        if self.sock is not None:
            try:
                self.file.close()
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.file = None

    def run(self):
        while not self.stop.is_set():
            reqs = self.next_requests()
            try:
                if self.sock is None:
                    self.connect()
                self.send(reqs)
                for rid, _, want in reqs:
                    status, body = read_response(self.file)
                    if status != 200 or body != want:
                        raise Miss("bad", "status %d body %r" % (status, body[:60]))
                    with self.server.lock:
                        self.server.ok += 1
                    reqs = reqs[1:]
                if self.style in ("close", "slow"):
                    self.drop()
            except (Miss, OSError) as e:
                if isinstance(e, Miss):
                    kind, detail = e.kind, e.detail
                elif isinstance(e, socket.timeout):
                    kind, detail = "timeout", "no response in %ds" % TIMEOUT
                else:
                    kind, detail = "closed", repr(e)
                now = time.time()
                with self.server.lock:
                    for rid, _, _ in reqs:
                        self.server.misses.append((now, rid, kind, detail))
                self.drop()
            time.sleep(self.pace * self.rng.uniform(0.5, 1.5))
        self.drop()

    def next_requests(self):
        s = self.style
        if s == "keepalive":
            return [(self.rid(), request_bytes(self.rid_last()), expect(b""))]
        if s == "close":
            return [(self.rid(), request_bytes(self.rid_last(), close=True), expect(b""))]
        if s == "pipeline":
            return [(self.rid(), request_bytes(self.rid_last()), expect(b"")) for _ in range(4)]
        if s == "upload":
            body = os.urandom(self.rng.choice([1, 1000, 65536, 200000]))
            chunked = self.seq % 2 == 1
            r = self.rid()
            return [(r, request_bytes(r, "POST", body, chunked=chunked), expect(body))]
        if s == "slow":
            body = os.urandom(3000)
            r = self.rid()
            return [(r, request_bytes(r, "POST", body, chunked=self.seq % 2 == 1, close=True),
                     expect(body))]
        raise ValueError(s)

    def rid_last(self):
        return "%s-%s%d-%d" % (self.server.name, self.style, self.n, self.seq)

    def send(self, reqs):
        data = b"".join(raw for _, raw, _ in reqs)
        if self.style != "slow":
            self.sock.sendall(data)
            return
        # About a second, in 12 pieces.
        step = max(1, len(data) // 12)
        for i in range(0, len(data), step):
            self.sock.sendall(data[i:i + step])
            time.sleep(0.08)


def read_started(started_dir):
    ids = set()
    for name in os.listdir(started_dir):
        with open(os.path.join(started_dir, name), "rb") as f:
            ids.update(line.strip().decode() for line in f)
    return ids


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=1800)
    ap.add_argument("--hup-every", type=float, default=60)
    ap.add_argument("--kill-every", type=float, default=20)
    ap.add_argument("--threads", type=int, default=4, help="gthread server's --threads")
    ap.add_argument("--bin", default=os.environ.get("FERROCORN_BIN",
                                                    os.path.join(REPO, "target/release/ferrocorn")))
    ap.add_argument("--pace", type=float, default=0.01,
                    help="mean pause between a client's requests, seconds (load level)")
    ap.add_argument("--out", help="also write the JSON summary here")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="ferrocorn-soak-")
    started_dir = os.path.join(tmp, "started")
    os.mkdir(started_dir)
    servers = [
        Server("sync", ["-k", "sync"], args.bin, started_dir),
        Server("gthread", ["-k", "gthread", "--threads", str(args.threads)], args.bin, started_dir),
    ]
    for s in servers:
        s.wait_ready()
    stop = threading.Event()
    mix = [("keepalive", 3), ("close", 2), ("upload", 2), ("slow", 2), ("pipeline", 1)]
    clients = [Client(s, style, i, stop, args.pace)
               for s in servers for style, n in mix for i in range(n)]
    for c in clients:
        c.start()
    time.sleep(3)
    start_figures = {s.name: s.figures() for s in servers}
    t0 = time.time()
    samples = []
    rng = random.Random()
    next_kill = t0 + args.kill_every
    next_hup = t0 + args.hup_every
    next_sample = t0 + 60
    end = t0 + args.duration
    while True:
        now = time.time()
        if now >= end:
            break
        live = [s for s in servers if s.proc.poll() is None]
        for s in servers:
            if s.proc.poll() is not None and s.exited_at is None:
                s.exited_at = round(now - t0)
                print("%s master exited (%s) at %ds; see %s" % (s.name, s.proc.returncode,
                      s.exited_at, s.log.name), file=sys.stderr, flush=True)
        if now >= next_kill:
            for s in live:
                workers = children(s.proc.pid)
                if workers:
                    victim = rng.choice(workers)
                    try:
                        os.kill(victim, signal.SIGKILL)
                        s.kills += 1
                        s.events.append((time.time(), "kill"))
                    except ProcessLookupError:
                        pass
            next_kill += args.kill_every
        if now >= next_hup:
            for s in live:
                s.proc.send_signal(signal.SIGHUP)
                s.hups += 1
                s.events.append((time.time(), "hup"))
            next_hup += args.hup_every
        if now >= next_sample:
            samples.append({"t": round(now - t0), **{s.name: s.figures() for s in servers}})
            print(json.dumps(samples[-1]), file=sys.stderr, flush=True)
            next_sample += 60
        time.sleep(max(0.05, min(next_kill, next_hup, next_sample, end) - time.time()))
    # Let the last kill and HUP settle before the final figures.
    time.sleep(2)
    stop.set()
    for c in clients:
        c.join(TIMEOUT + 5)
    time.sleep(2)
    end_figures = {s.name: s.figures() for s in servers}
    for s in servers:
        if s.proc.poll() is None:
            s.proc.send_signal(signal.SIGTERM)
    for s in servers:
        try:
            s.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(s.proc.pid, signal.SIGKILL)

    started = read_started(started_dir)
    summary = {"duration_s": round(time.time() - t0), "command": " ".join(sys.argv),
               "servers": {}, "samples": samples}
    ok = True
    for s in servers:
        failed = [m for m in s.misses if m[1] in started]
        lost = [m for m in s.misses if m[1] not in started]
        unexplained = []
        causes = {"kill": 0, "hup": 0}
        for m in s.misses:
            cause = [e for e in s.events if 0 <= m[0] - e[0] <= ATTRIBUTE_WINDOW]
            if not cause:
                unexplained.append(m)
            else:
                causes[cause[-1][1]] += 1
        timeouts = [m for m in s.misses if m[2] == "timeout"]
        bad = [m for m in s.misses if m[2] == "bad"]
        bound = s.kills * s.threads
        a, b = start_figures[s.name], end_figures[s.name]
        if "exited" in b:
            b = dict(b, rss_kib=float("inf"), fds=float("inf"))
        checks = {
            "master ran to the end": s.exited_at is None,
            "failed <= kills x threads": len(failed) <= bound,
            "every miss follows a kill or HUP": not unexplained,
            "no timeouts or bad responses": not timeouts and not bad,
            "master fds do not grow": b["fds"] <= a["fds"],
            "master RSS does not grow (<= +1 MiB)": b["rss_kib"] <= a["rss_kib"] + 1024,
        }
        ok = ok and all(checks.values())
        summary["servers"][s.name] = {
            "threads": s.threads, "served": s.ok, "failed": len(failed),
            "lost_before_app": len(lost), "kills": s.kills, "hups": s.hups,
            "failed_bound": bound, "misses_after": causes, "master_exited_at_s": s.exited_at, "master_start": a, "master_end": b,
            "checks": checks,
            "examples": [m[1:] for m in (unexplained + timeouts + bad + failed)[:8]],
        }
    summary["pass"] = ok
    text = json.dumps(summary, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
