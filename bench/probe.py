#!/usr/bin/env python3
"""A normal client for bench/slowloris.sh: while an attack runs, keep
requesting GET / on fresh connections (so every request has to be accepted
past the slow clients) from a few threads, and report the success rate and
latency percentiles as one JSON line.

    probe.py PORT SECONDS [THREADS] [TIMEOUT]

Standard library only. A request succeeds when a 200 arrives within TIMEOUT
seconds (default 5), connect included.
"""

import json
import socket
import sys
import threading
import time


def one(port, timeout):
    t0 = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(max(0.01, timeout - (time.monotonic() - t0)))
            s.sendall(b"GET / HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        ok = data.startswith(b"HTTP/1.1 200") or data.startswith(b"HTTP/1.0 200")
    except OSError:
        ok = False
    return ok, time.monotonic() - t0


def main():
    port = int(sys.argv[1])
    seconds = float(sys.argv[2])
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 5.0
    results = []
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def loop():
        while time.monotonic() < end:
            ok, dt = one(port, timeout)
            with lock:
                results.append((ok, dt))
            time.sleep(0.05)

    ts = [threading.Thread(target=loop) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    oks = sorted(dt for ok, dt in results if ok)
    n = len(results)

    def pct(p):
        if not oks:
            return None
        return round(oks[min(len(oks) - 1, int(p * len(oks)))] * 1000, 1)

    print(json.dumps({
        "requests": n,
        "ok": len(oks),
        "success_pct": round(100.0 * len(oks) / n, 1) if n else 0.0,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "timeout_s": timeout,
    }))


if __name__ == "__main__":
    main()
