"""ASGI apps for tests/asgi.rs, standard library only.

`app` (ASGI 3, lifespan supported; its startup puts values in the state
and its shutdown appends to $ASGI_TEST_MARKS when that is set):

GET  /hello                  "hello asgi" with Content-Length.
ANY  /scope                  the scope as JSON (bytes as latin-1 strings),
                             plus the request body's length.
GET  /stream?n=N&gap=S       N chunks "chunk-I;" S seconds apart, no
                             Content-Length (so chunked).
POST /sink?read=1            reads the whole body, answers its length.
POST /sink?read=0&s=S        never calls receive(); answers after S seconds.
GET  /hold?id=X              answers the head and one chunk, then waits in
                             receive() for http.disconnect (records when).
GET  /longpoll?id=X          sends nothing, waits in receive() for
                             http.disconnect (records when).
GET  /pour?id=X              sends a chunk every 50 ms, never receives,
                             until send() raises or the task is cancelled
                             (records which and when).
GET  /report?id=X            what /hold or /pour recorded for X.
POST /continue?read=R&delay=S  sleeps S, then reads the body if R=1.
GET  /slow?s=S&mark=PATH     creates PATH, sleeps S seconds, answers.
GET  /block?s=S              blocks the event loop with time.sleep(S).
GET  /pathsend?file=F        the file F through http.response.pathsend.
GET  /zerocopy?file=F&offset=O&count=C  F through zerocopysend.
GET  /raise                  raises before sending anything.
GET  /noresponse             returns without sending anything.
GET  /pid                    the worker's pid.
GET  /ws-*                   (websocket scope) see `websocket` below.

`app2`: an ASGI 2 double callable (a class).
`no_lifespan`: raises on the lifespan scope, as apps that do not
support lifespan do; serves /hello.
`startup_fails`: answers lifespan.startup with lifespan.startup.failed.
`wsgi_hello`: a WSGI app answering as /hello does (access-log comparison).
"""

import asyncio
import json
import os
import time
from urllib.parse import parse_qs

_records = {}


def _query(scope):
    q = parse_qs(scope["query_string"].decode("latin-1"))
    return {k: v[0] for k, v in q.items()}


def _plain(obj):
    """Scope values as JSON: bytes as latin-1 strings, tuples as lists."""
    if isinstance(obj, bytes):
        return obj.decode("latin-1")
    if isinstance(obj, (list, tuple)):
        return [_plain(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return repr(obj)


async def _reply(send, status, body, ctype=b"text/plain", extra=()):
    if isinstance(body, str):
        body = body.encode()
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
    headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _json(send, obj):
    await _reply(send, 200, json.dumps(obj), b"application/json")


async def _read_body(receive):
    body = bytearray()
    while True:
        m = await receive()
        if m["type"] == "http.disconnect":
            return None
        body.extend(m.get("body", b""))
        if not m.get("more_body", False):
            return bytes(body)


async def lifespan(scope, receive, send):
    while True:
        m = await receive()
        if m["type"] == "lifespan.startup":
            scope["state"]["token"] = "from-lifespan"
            scope["state"]["pid_at_startup"] = os.getpid()
            await send({"type": "lifespan.startup.complete"})
        elif m["type"] == "lifespan.shutdown":
            marks = os.environ.get("ASGI_TEST_MARKS")
            if marks:
                with open(marks, "a") as f:
                    f.write("shutdown %d\n" % os.getpid())
            await send({"type": "lifespan.shutdown.complete"})
            return


def block_the_loop_here(seconds):
    time.sleep(seconds)


async def http(scope, receive, send):
    path = scope["path"]
    q = _query(scope)
    if path == "/hello" or path.endswith("/hello"):
        await _reply(send, 200, "hello asgi")
    elif path.endswith("/scope"):
        body = await _read_body(receive)
        out = _plain(scope)
        out["body_len"] = None if body is None else len(body)
        await _json(send, out)
    elif path == "/stream":
        n, gap = int(q.get("n", "3")), float(q.get("gap", "0.5"))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        for i in range(n):
            if i:
                await asyncio.sleep(gap)
            await send({"type": "http.response.body",
                        "body": ("chunk-%d;" % i).encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/sink":
        if q.get("read") == "1":
            total = 0
            while True:
                m = await receive()
                if m["type"] != "http.request":
                    break
                total += len(m.get("body", b""))
                if not m.get("more_body", False):
                    break
            await _json(send, {"received": total})
        else:
            await asyncio.sleep(float(q.get("s", "3")))
            await _json(send, {"received": None})
    elif path == "/hold":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"first;", "more_body": True})
        t0 = time.monotonic()
        _records[q["id"]] = {"state": "waiting"}
        while True:
            m = await receive()
            if m["type"] == "http.disconnect":
                break
        _records[q["id"]] = {"state": "disconnect", "after": time.monotonic() - t0}
    elif path == "/longpoll":
        # Nothing sent yet: wait in receive() for the client to go away.
        t0 = time.monotonic()
        _records[q["id"]] = {"state": "waiting"}
        while True:
            m = await receive()
            if m["type"] == "http.disconnect":
                break
        _records[q["id"]] = {"state": "disconnect", "after": time.monotonic() - t0}
    elif path == "/pour":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        t0 = time.monotonic()
        _records[q["id"]] = {"state": "pouring"}
        try:
            for _ in range(2000):
                await send({"type": "http.response.body", "body": b"x" * 1024,
                            "more_body": True})
                await asyncio.sleep(0.05)
            _records[q["id"]] = {"state": "never raised"}
        except OSError as e:
            _records[q["id"]] = {"state": "raised", "error": type(e).__name__,
                                 "oserror": True, "after": time.monotonic() - t0}
        except asyncio.CancelledError:
            _records[q["id"]] = {"state": "cancelled", "after": time.monotonic() - t0}
            raise
        except Exception as e:
            _records[q["id"]] = {"state": "raised", "error": type(e).__name__,
                                 "oserror": False, "after": time.monotonic() - t0}
    elif path == "/report":
        await _json(send, _records.get(q["id"]))
    elif path == "/continue":
        await asyncio.sleep(float(q.get("delay", "0")))
        if q.get("read") == "1":
            body = await _read_body(receive)
            await _reply(send, 200, b"got:" + (body or b""))
        else:
            await _reply(send, 200, "did not read")
    elif path == "/slow":
        mark = q.get("mark")
        if mark:
            open(mark, "w").close()
        await asyncio.sleep(float(q.get("s", "1")))
        await _reply(send, 200, "slept %s" % q.get("s", "1"))
    elif path == "/block":
        block_the_loop_here(float(q.get("s", "1")))
        await _reply(send, 200, "unblocked")
    elif path == "/pathsend":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream"),
                                (b"content-length",
                                 str(os.path.getsize(q["file"])).encode())]})
        await send({"type": "http.response.pathsend", "path": q["file"]})
    elif path == "/zerocopy":
        size = os.path.getsize(q["file"])
        offset = int(q.get("offset", "0"))
        count = int(q.get("count", str(size - offset)))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream"),
                                (b"content-length", str(count).encode())]})
        with open(q["file"], "rb") as f:
            msg = {"type": "http.response.zerocopysend", "file": f}
            if "offset" in q:
                msg["offset"] = offset
            if "count" in q:
                msg["count"] = count
            await send(msg)
    elif path == "/raise":
        raise RuntimeError("asgi-test-boom")
    elif path == "/noresponse":
        return
    elif path == "/pid":
        await _json(send, {"pid": os.getpid()})
    else:
        await _reply(send, 404, "no route %s" % path)


async def websocket(scope, receive, send):
    """/ws-echo: accepts (with the first offered subprotocol), echoes text
    and bytes; the text "close-4001" makes it close with 4001 "bye now";
    it records the disconnect it sees under ?id=.
    /ws-deny: closes before accepting. /ws-http: denies with a 418 and a
    body through websocket.http.response. /ws-hold: accepts, waits for the
    disconnect, records it."""
    path = scope["path"]
    q = _query(scope)
    m = await receive()
    assert m["type"] == "websocket.connect", m
    if path == "/ws-deny":
        await send({"type": "websocket.close"})
        return
    if path == "/ws-http":
        await send({"type": "websocket.http.response.start", "status": 418,
                    "headers": [(b"content-type", b"text/plain"), (b"x-denied", b"yes")]})
        await send({"type": "websocket.http.response.body", "body": b"no websockets for you"})
        return
    if path == "/ws-scope":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(_plain(scope))})
        await send({"type": "websocket.close", "code": 1000})
        return
    if path == "/ws-flood":
        # 64 KiB messages as fast as send() lets them go, 100 MiB at most;
        # /report?id= says how many went.
        await send({"type": "websocket.accept"})
        rid = q["id"]
        _records[rid] = {"sent": 0}
        chunk = b"f" * 65536
        try:
            for i in range(1600):
                await send({"type": "websocket.send", "bytes": chunk})
                _records[rid] = {"sent": i + 1}
        except OSError:
            _records[rid]["stopped"] = True
        return
    subs = scope.get("subprotocols") or []
    await send({"type": "websocket.accept", "subprotocol": subs[0] if subs else None})
    rid = q.get("id")
    if rid:
        _records[rid] = {"state": "open"}
    while True:
        m = await receive()
        if m["type"] == "websocket.disconnect":
            if rid:
                _records[rid] = {"state": "disconnect", "code": m.get("code"),
                                 "reason": m.get("reason", "")}
            return
        if path == "/ws-hold":
            continue
        if m.get("text") == "close-4001":
            await send({"type": "websocket.close", "code": 4001, "reason": "bye now"})
            continue
        if m.get("text") is not None:
            await send({"type": "websocket.send", "text": m["text"]})
        else:
            await send({"type": "websocket.send", "bytes": m["bytes"]})


async def app(scope, receive, send):
    kind = scope["type"]
    if kind == "lifespan":
        await lifespan(scope, receive, send)
    elif kind == "http":
        await http(scope, receive, send)
    elif kind == "websocket":
        await websocket(scope, receive, send)


class app2:
    """ASGI 2: the scope first, then an instance awaited with the channels."""

    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        if self.scope["type"] == "lifespan":
            await lifespan(self.scope, receive, send)
            return
        body = await _read_body(receive)
        await _json(send, {"asgi2": True, "asgi": self.scope["asgi"],
                           "path": self.scope["path"], "body": (body or b"").decode()})


async def no_lifespan(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("only http here")
    await _reply(send, 200, "hello asgi")


async def startup_fails(scope, receive, send):
    if scope["type"] == "lifespan":
        m = await receive()
        if m["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.failed",
                        "message": "asgi-test: the database is unreachable"})
        return
    await _reply(send, 200, "should not serve")


def wsgi_hello(environ, start_response):
    """The WSGI twin of /hello, for comparing access-log lines."""
    body = b"hello asgi"
    start_response("200 OK", [("content-type", "text/plain"),
                              ("content-length", str(len(body)))])
    return [body]
