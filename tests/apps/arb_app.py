"""The arbiter tests' app: reports pids, sleeps, hangs, grows, prints.

Routes (by PATH_INFO):
  /pid          the serving worker's pid
  /pids         "IMPORT_PID WORKER_PID" (IMPORT_PID: os.getpid() at import)
  /sleep?s=X    sleep X seconds, then answer "slept X"; with &mark=PATH it
                first creates the file PATH (so a test knows it is running)
  /hang         never answer (sleeps forever in hang_forever_here)
  /half-hang    start a 200 response (its head and "partial\n" through
                write()), then hang like /hang
  /grow         keep ~80 MiB alive in a module-level list
  /print?m=TXT  print TXT to stdout (flushed), then answer "printed"
  anything else "ok PID" with Content-Type text/x-arb
"""

import os
import time
from urllib.parse import parse_qs

IMPORT_PID = os.getpid()
HOLD = []


def hang_forever_here():
    while True:
        time.sleep(1)


def _answer(start_response, text, ctype="text/plain"):
    body = text.encode("utf-8")
    start_response(
        "200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))]
    )
    return [body]


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if path == "/pid":
        return _answer(start_response, str(os.getpid()))
    if path == "/pids":
        return _answer(start_response, "%d %d" % (IMPORT_PID, os.getpid()))
    if path == "/sleep":
        secs = float(query.get("s", ["0"])[0])
        for mark in query.get("mark", []):
            with open(mark, "w") as f:
                f.write(str(os.getpid()))
        time.sleep(secs)
        return _answer(start_response, "slept %s" % secs)
    if path == "/hang":
        hang_forever_here()
    if path == "/half-hang":
        write = start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")]
        )
        write(b"partial\n")
        hang_forever_here()
    if path == "/grow":
        # Bytes repetition writes every page, so all of it counts in RSS.
        HOLD.append(b"\x01" * (80 * 1024 * 1024))
        return _answer(start_response, "grew %d" % os.getpid())
    if path == "/print":
        print(query.get("m", ["arb-print"])[0], flush=True)
        return _answer(start_response, "printed")
    return _answer(start_response, "ok %d" % os.getpid(), "text/x-arb")
