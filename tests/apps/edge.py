"""The environ as JSON, for tests/edge.rs (PROXY protocol and uwsgi): every
key whose value is a str, plus the body's length. `/big` answers 100 KiB
of "x" without a Content-Length (streamed). `asgi` is the same for ASGI:
the scope's type, client, server, scheme, path, raw_path, query_string,
http_version and headers, and the body's length."""

import json


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/big":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"x" * 1024 for _ in range(100)]
    body = environ["wsgi.input"].read()
    out = {k: v for k, v in environ.items() if isinstance(v, str)}
    out["body"] = body.decode("latin-1")
    data = json.dumps(out, sort_keys=True).encode()
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [data]


def _plain(v):
    if isinstance(v, bytes):
        return v.decode("latin-1")
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(_plain(scope["client"]))})
        await send({"type": "websocket.close"})
        return
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    out = {
        k: _plain(scope.get(k))
        for k in (
            "type",
            "client",
            "server",
            "scheme",
            "path",
            "raw_path",
            "query_string",
            "http_version",
            "method",
            "headers",
        )
    }
    out["body"] = body.decode("latin-1")
    data = json.dumps(out, sort_keys=True).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": data})
