"""For tests/control.rs: /sleep?s=S sleeps in time.sleep inside
sleeping_in_the_app; /spin?s=S computes in Python inside spinning_in_the_app;
/read reads the whole body inside reading_in_the_app; anything else
answers at once. `asgi` is the same app for -k asgi, plus
/asleep?s=S, which awaits asyncio.sleep inside awaiting_in_the_app."""

import asyncio

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


def reading_in_the_app(stream):
    return len(stream.read())


def app(environ, start_response):
    q = parse_qs(environ.get("QUERY_STRING", ""))
    secs = float(q.get("s", ["0"])[0])
    path = environ.get("PATH_INFO", "/")
    if path == "/sleep":
        sleeping_in_the_app(secs)
    elif path == "/spin":
        spinning_in_the_app(secs)
    elif path == "/read":
        path += " %d" % reading_in_the_app(environ["wsgi.input"])
    body = ("done %s\n" % path).encode("ascii")
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    return [body]


async def awaiting_in_the_app(seconds):
    await asyncio.sleep(seconds)


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    q = parse_qs(scope.get("query_string", b"").decode("ascii"))
    secs = float(q.get("s", ["0"])[0])
    path = scope["path"]
    if path == "/sleep":
        sleeping_in_the_app(secs)
    elif path == "/spin":
        spinning_in_the_app(secs)
    elif path == "/asleep":
        await awaiting_in_the_app(secs)
    body = ("done %s\n" % path).encode("ascii")
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": body})
