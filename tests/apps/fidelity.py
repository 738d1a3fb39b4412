"""Routes for the WSGI-fidelity tests (tests/fidelity.rs): streaming with
pauses, an endless event stream that records its close(), HEAD of empty and
one-item bodies, latin-1 and unencodable header values, a status without a
reason phrase, the SERVER_*/SCRIPT_NAME keys, a connection taken over
through gunicorn.socket, a 101 without take-over, early hints, and a
route that sleeps and names the worker's pid.

The close() of /sse appends "closed <tag>" to the file named by the
FIDELITY_MARKS environment variable.
"""

import os
import time
from urllib.parse import parse_qs


def _marks(line):
    path = os.environ.get("FIDELITY_MARKS")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


class Events:
    """An endless server-sent event stream; close() is recorded."""

    def __init__(self, tag, gap):
        self.tag = tag
        self.gap = gap
        self.n = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.n:
            time.sleep(self.gap)
        self.n += 1
        _marks("event %s %d" % (self.tag, self.n))
        return b"data: %d\n\n" % self.n

    def close(self):
        _marks("closed %s" % self.tag)


def ticks(n, gap):
    for i in range(n):
        if i:
            time.sleep(gap)
        yield b"tick\n"


def app(environ, start_response):
    path = environ["PATH_INFO"]
    q = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    text = [("Content-Type", "text/plain")]

    if path == "/stream":
        n, gap = int(q.get("n", "5")), float(q.get("gap", "0.3"))
        headers = list(text)
        if q.get("cl"):
            headers.append(("Content-Length", str(5 * n)))
        start_response("200 OK", headers)
        return ticks(n, gap)

    if path == "/sse":
        start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])
        return Events(q.get("tag", "sse"), float(q.get("gap", "0.2")))

    if path == "/empty":
        # What Werkzeug returns for HEAD: no body, no length.
        start_response("200 OK", list(text))
        return ()

    if path == "/single":
        start_response("200 OK", list(text))
        return [b"" if environ["REQUEST_METHOD"] == "HEAD" else b"one item"]

    if path == "/latin1":
        start_response("200 OK", text + [("X-Uni", "caf\u00e9")])
        return [b"ok"]

    if path == "/unencodable":
        start_response("200 OK", text + [("X-Uni", "snow \u2603")])
        return [b"never sent"]

    if path == "/noreason":
        start_response("200", list(text))
        return [b"no reason phrase"]

    if path == "/environ" or path.endswith("/environ"):
        keys = ("SERVER_NAME", "SERVER_PORT", "SCRIPT_NAME", "PATH_INFO")
        body = "\n".join("%s=%s" % (k, environ.get(k)) for k in keys)
        sock = environ.get("gunicorn.socket")
        body += "\nsocket=%s" % (type(sock).__name__ if sock is not None else None)
        body += "\nearly_hints=%s" % callable(environ.get("wsgi.early_hints"))
        start_response("200 OK", list(text))
        return [body.encode()]

    if path == "/takeover":
        # A minimal upgraded protocol: 101, then echo each line upper-cased
        # until "bye".
        sock = environ["gunicorn.socket"]
        sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: shout\r\nConnection: Upgrade\r\n\r\n")
        buf = b""
        while True:
            data = sock.recv(4096)
            if not data:
                break
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line == b"bye":
                    sock.sendall(b"BYE\n")
                    sock.close()
                    raise StopIteration()
                sock.sendall(line.upper() + b"\n")
        return []

    if path == "/switch":
        start_response("101 Switching Protocols", [("Upgrade", "websocket"), ("Connection", "Upgrade")])
        return []

    if path == "/hints":
        environ["wsgi.early_hints"]([("Link", "</style.css>; rel=preload; as=style")])
        start_response("200 OK", list(text))
        return [b"after hints"]

    if path == "/sleep":
        time.sleep(float(q.get("s", "0.05")))
        start_response("200 OK", list(text))
        return [str(os.getpid()).encode()]

    start_response("200 OK", list(text))
    return [b"fidelity"]
