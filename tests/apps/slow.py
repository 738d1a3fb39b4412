"""Sleeps for ?sleep=SECONDS (default 0) before answering."""

import time
from urllib.parse import parse_qs


def app(environ, start_response):
    secs = float(parse_qs(environ.get("QUERY_STRING", "")).get("sleep", ["0"])[0])
    time.sleep(secs)
    body = ("slept %s\n" % secs).encode("ascii")
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    return [body]
