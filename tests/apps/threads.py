"""For the gthread tests: concurrency evidence, environ flags, sleeps.

GET /barrier?n=N&wait=S&then=T  waits (up to S seconds, default 10) until N
                                calls are inside the app at once, then sleeps
                                T seconds; answers the most seen together.
GET /sleep?s=S&id=X             sleeps S seconds, answers X.
GET /env                        wsgi.multithread / wsgi.multiprocess.
GET /big?n=N                    N bytes of "x".
"""

import json
import threading
import time
from urllib.parse import parse_qs

_cond = threading.Condition()
_inside = 0
_peak = 0  # most calls seen inside /barrier at once, since the worker started


def _reply(start_response, obj):
    body = json.dumps(obj).encode()
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


def app(environ, start_response):
    global _inside, _peak
    q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    path = environ["PATH_INFO"]
    if path == "/barrier":
        n = int(q.get("n", "1"))
        deadline = time.monotonic() + float(q.get("wait", "10"))
        with _cond:
            _inside += 1
            _peak = max(_peak, _inside)
            _cond.notify_all()
            while _peak < n and time.monotonic() < deadline:
                _cond.wait(max(0.0, deadline - time.monotonic()))
            seen = _peak
        time.sleep(float(q.get("then", "0")))
        with _cond:
            _inside -= 1
        return _reply(start_response, {"seen": seen, "thread": threading.get_ident()})
    if path == "/sleep":
        time.sleep(float(q.get("s", "0")))
        return _reply(start_response, {"id": q.get("id", "")})
    if path == "/big":
        body = b"x" * int(q.get("n", "0"))
        start_response(
            "200 OK",
            [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
        )
        return [body]
    if path == "/env":
        return _reply(
            start_response,
            {
                "multithread": environ["wsgi.multithread"],
                "multiprocess": environ["wsgi.multiprocess"],
            },
        )
    return _reply(start_response, {"path": path})
