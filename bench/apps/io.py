"""Simulated I/O-bound handler: blocks 10 ms (GIL released) then answers."""

import time

BODY = b"slept 10 ms\n"


def app(environ, start_response):
    time.sleep(0.01)
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))],
    )
    return [BODY]
