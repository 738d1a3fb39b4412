"""App for bench/soak.py: reads the whole body (Content-Length or chunked,
wsgi.input until EOF), answers with its length and CRC-32, and first records
the request's X-Soak-Id in SOAK_STARTED_DIR/<pid> so the soak can tell a
request the app had started from one lost before it reached the app."""

import os
import threading
import zlib

_fd = None
_pid = None
_lock = threading.Lock()


def _mark(rid):
    global _fd, _pid
    d = os.environ.get("SOAK_STARTED_DIR")
    if not d or not rid:
        return
    with _lock:
        if _pid != os.getpid():
            _fd = os.open(os.path.join(d, str(os.getpid())), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            _pid = os.getpid()
        fd = _fd
    os.write(fd, rid.encode("ascii", "replace") + b"\n")


def app(environ, start_response):
    _mark(environ.get("HTTP_X_SOAK_ID", ""))
    stream = environ["wsgi.input"]
    total = 0
    crc = 0
    while True:
        chunk = stream.read(65536)
        if not chunk:
            break
        total += len(chunk)
        crc = zlib.crc32(chunk, crc)
    body = ("%d %08x\n" % (total, crc)).encode("ascii")
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
    )
    return [body]
