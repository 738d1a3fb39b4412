#!/usr/bin/env python3
"""TLS side by side: ferrocorn --certfile against granian --ssl-certificate,
2 workers each, WSGI hello world (bench/apps/hello.py), alternating rounds.

Scenarios:
  keepalive  wrk over https with keep-alive (-t1 -c50): requests/s
  handshake  wrk with `Connection: close`: every request is a new TLS
             connection (full handshake, ECDSA P-256 certificate): requests/s
  idle       N idle TLS connections (handshake done, one request served
             each), the servers' RSS before and after: KiB per connection

    bench/tls.py [--rounds 5] [--duration 5] [--idle 1000]
                 [--scenarios keepalive,handshake,idle]
                 [--ferrocorn target/release/ferrocorn] [--granian PATH]

Prints one line per round and a summary of medians with ratios
(ferrocorn / granian). Standard library only (plus wrk and the servers).
"""

import argparse
import os
import socket
import ssl
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (bench/bench.py: process helpers, wrk parsing)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CERTS = os.path.join(ROOT, "tests", "apps", "tls")
CERT = os.path.join(CERTS, "server.pem")
KEY = os.path.join(CERTS, "server-key.pem")


def argv_for(server, args, port):
    if server == "ferrocorn":
        return [args.ferrocorn, "-w", "2", "-b", "127.0.0.1:%d" % port,
                "--chdir", os.path.join(HERE, "apps"), "--certfile", CERT,
                "--keyfile", KEY, "--no-control-socket", "--log-level", "warning",
                "hello:app"]
    return [args.granian, "--interface", "wsgi", "--workers", "2",
            "--host", "127.0.0.1", "--port", str(port), "--ssl-certificate", CERT,
            "--ssl-keyfile", KEY, "--log-level", "warning", "--working-dir",
            os.path.join(HERE, "apps"), "hello:app"]


def tls_get(port, timeout=2.0):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    data = b""
    while b"Hello, World!" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return s, data


def start(server, args):
    port = bench.free_port()
    proc = subprocess.Popen(argv_for(server, args, port), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            s, data = tls_get(port)
            s.close()
            if b"Hello, World!" in data:
                # Every worker up: a few more connections.
                time.sleep(1.0)
                return proc, port
        except OSError:
            time.sleep(0.1)
    bench.stop_process(proc)
    raise SystemExit("%s did not serve https in time" % server)


def wrk(port, args, close):
    cmd = ["wrk", "-t1", "-c50", "-d%ds" % args.duration]
    if close:
        cmd += ["-H", "Connection: close"]
    cmd.append("https://127.0.0.1:%d/" % port)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 30)
    res = bench.parse_wrk(out.stdout)
    return res.get("rps", 0.0), res.get("errors_total", 0)


def tree_rss_kb(pid):
    total = 0
    for p in [pid] + bench.descendants_of(pid):
        m = bench.proc_memory(p)
        if m:
            total += m.get("rss_kb", 0)
    return total


def idle(proc, port, n):
    before = tree_rss_kb(proc.pid)
    socks = []
    for _ in range(n):
        s, data = tls_get(port, timeout=10)
        if b"Hello" not in data:
            raise SystemExit("an idle-connection request failed")
        socks.append(s)
    time.sleep(1.0)
    after = tree_rss_kb(proc.pid)
    for s in socks:
        s.close()
    return (after - before) / n


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--idle", type=int, default=1000)
    p.add_argument("--scenarios", default="keepalive,handshake,idle")
    p.add_argument("--ferrocorn", default=os.path.join(ROOT, "target", "release", "ferrocorn"))
    p.add_argument("--granian", default=os.path.join(HERE, ".venv", "bin", "granian"))
    args = p.parse_args()
    scenarios = args.scenarios.split(",")
    servers = ["ferrocorn", "granian"]
    results = {(sc, sv): [] for sc in scenarios for sv in servers}
    for rnd in range(args.rounds):
        order = servers if rnd % 2 == 0 else servers[::-1]
        for sv in order:
            proc, port = start(sv, args)
            try:
                for sc in scenarios:
                    if sc == "idle":
                        v = idle(proc, port, args.idle)
                        print("round %d %-9s %-9s %8.1f KiB/conn" % (rnd, sv, sc, v), flush=True)
                    else:
                        v, errs = wrk(port, args, close=sc == "handshake")
                        print("round %d %-9s %-9s %9.0f req/s  errors %d" % (rnd, sv, sc, v, errs),
                              flush=True)
                    results[(sc, sv)].append(v)
            finally:
                bench.stop_process(proc)
    print("\nmedians over %d rounds (load average %s)" % (args.rounds, os.getloadavg()[0]))
    for sc in scenarios:
        f = statistics.median(results[(sc, "ferrocorn")])
        g = statistics.median(results[(sc, "granian")])
        unit = "KiB/conn" if sc == "idle" else "req/s"
        ratio = (f / g) if g else float("nan")
        print("  %-9s ferrocorn %9.1f  granian %9.1f %s  ratio %.2fx" % (sc, f, g, unit, ratio))


if __name__ == "__main__":
    main()
