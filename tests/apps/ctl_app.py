"""For tests/control.rs: /sleep?s=S sleeps in time.sleep inside
sleeping_in_the_app; /spin?s=S computes in Python inside spinning_in_the_app;
anything else answers at once."""

import time
from urllib.parse import parse_qs


def sleeping_in_the_app(seconds):
    time.sleep(seconds)


def spinning_in_the_app(seconds):
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


def app(environ, start_response):
    q = parse_qs(environ.get("QUERY_STRING", ""))
    secs = float(q.get("s", ["0"])[0])
    path = environ.get("PATH_INFO", "/")
    if path == "/sleep":
        sleeping_in_the_app(secs)
    elif path == "/spin":
        spinning_in_the_app(secs)
    body = ("done %s\n" % path).encode("ascii")
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    return [body]
