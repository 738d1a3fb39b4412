"""The app behind tests/http2.rs: what a request looks like over HTTP/2
(/info), a slow request (/sleep), a stream of blocks (/stream), an upload
(/echo), and a large download that records how much of it the server has
taken so far (/big)."""

import hashlib
import json
import time


def app(environ, start_response):
    path = environ["PATH_INFO"]
    qs = environ.get("QUERY_STRING", "")
    if path == "/info":
        keys = ("SERVER_PROTOCOL", "REMOTE_ADDR", "wsgi.url_scheme", "HTTP_HOST",
                "HTTP_COOKIE", "REQUEST_METHOD", "QUERY_STRING", "HTTP_X_TEST", "HTTP_VERSION")
        body = json.dumps({k: environ.get(k) for k in keys}).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body))),
                                  ("X-Reply", "yes")])
        return [body]
    if path == "/sleep":
        time.sleep(float(qs or "0.5"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slept"]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/event-stream")])

        def gen():
            for i in range(3):
                yield ("data: %d\n\n" % i).encode()
                time.sleep(0.6)
        return gen()
    if path == "/echo":
        body = environ["wsgi.input"].read()
        out = json.dumps({"len": len(body), "sha": hashlib.sha256(body).hexdigest(),
                          "cl": environ.get("CONTENT_LENGTH")}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [out]
    if path == "/big":
        n, _, progress = qs.partition("&")
        n = int(n)
        start_response("200 OK", [("Content-Length", str(n))])

        def gen():
            sent = 0
            block = b"y" * 65536
            while sent < n:
                b = block[: n - sent]
                yield b
                sent += len(b)
                if progress:
                    with open(progress, "w") as f:
                        f.write(str(sent))
        return gen()
    start_response("404 Not Found", [("Content-Length", "0")])
    return []
