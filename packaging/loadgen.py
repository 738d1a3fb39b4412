#!/usr/bin/env python3
"""Stand-in load generator for the packaging tests, used only while
bench/loadgen.py is absent (stdlib only, same command line and summary).

    loadgen.py --url URL [--clients 100] (--duration S | --until-file FILE)

Half the clients reuse one keep-alive connection, half open a new connection
per request. Prints a JSON summary {ok, failed, by_body, errors}; exits 1 if
any request failed.
"""

import argparse
import http.client
import json
import os
import threading
import time
from collections import Counter
from urllib.parse import urlsplit


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--duration", type=float)
    p.add_argument("--until-file")
    a = p.parse_args()
    u = urlsplit(a.url)
    path = u.path or "/"
    deadline = time.monotonic() + a.duration if a.duration else None
    lock = threading.Lock()
    ok = Counter()
    errors = Counter()

    def done():
        if deadline is not None and time.monotonic() >= deadline:
            return True
        return a.until_file is not None and os.path.exists(a.until_file)

    def client(keepalive):
        conn = None
        while not done():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=30)
                conn.request("GET", path, headers={} if keepalive else {"Connection": "close"})
                r = conn.getresponse()
                body = r.read()
                if r.status != 200:
                    raise RuntimeError(f"status {r.status}")
                with lock:
                    ok[body.decode(errors="replace")] += 1
                if not keepalive or r.will_close:
                    conn.close()
                    conn = None
            except Exception as e:  # noqa: BLE001 - every failure is counted
                with lock:
                    errors[f"{type(e).__name__}: {e}"] += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=client, args=(i % 2 == 0,)) for i in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    summary = {
        "ok": sum(ok.values()),
        "failed": sum(errors.values()),
        "by_body": dict(ok),
        "errors": dict(errors.most_common(5)),
    }
    print(json.dumps(summary))
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
