"""A WSGI app for the greenlet workers' compat suite (compat/green_suite.py),
written as gevent and eventlet users write theirs: plain blocking calls
(time.sleep, sockets) that the monkey-patching makes cooperative.

/healthz, /hello, /pid; /patched (what the app sees of the patching, and
wsgi.multithread/multiprocess); /sleep?S (a long-poll: S seconds, then an
answer); /sse (5 events, 0.3 s apart, each flushed as it is yielded);
/compute?s=S (a CPU loop that does not yield for S seconds, in
computing_for); /spin (a CPU loop that never yields: blocks the hub until
the worker is timed out).
"""

import json
import os
import socket
import threading
import time
from urllib.parse import parse_qs

LIBRARY = os.environ.get("GREEN_LIBRARY", "gevent")


def is_patched(module):
    if LIBRARY == "gevent":
        from gevent import monkey

        return monkey.is_module_patched(module)
    from eventlet import patcher

    return patcher.is_monkey_patched(module)


def spin_forever():
    started = time.monotonic()
    while time.monotonic() - started < 120:
        pass


def computing_for(seconds):
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < seconds:
        n += 1
    return n


def events():
    for i in range(5):
        if i:
            time.sleep(0.3)
        yield f"id: {i}\ndata: tick {i}\n\n".encode()


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if path == "/sse":
        start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])
        return events()
    if path == "/healthz":
        body = b"ok"
    elif path == "/hello":
        body = b"hello"
    elif path == "/pid":
        body = str(os.getpid()).encode()
    elif path == "/patched":
        body = json.dumps(
            {
                "socket": is_patched("socket"),
                "time": is_patched("time"),
                "threading": is_patched("thread") if LIBRARY == "eventlet" else is_patched("threading"),
                "socket_class": f"{socket.socket.__module__}.{socket.socket.__name__}",
                "lock_class": type(threading.Lock()).__module__,
                "multithread": environ["wsgi.multithread"],
                "multiprocess": environ["wsgi.multiprocess"],
            }
        ).encode()
    elif path == "/sleep":
        seconds = float(query.get("s", ["1"])[0])
        time.sleep(seconds)
        body = f"slept {seconds}".encode()
    elif path == "/compute":
        seconds = float(query.get("s", ["1"])[0])
        computing_for(seconds)
        body = f"computed {seconds}".encode()
    elif path == "/spin":
        spin_forever()
        body = b"never"
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
