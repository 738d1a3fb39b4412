"""Echoes the ASGI scope as JSON, for compat/asgi_differential.py, which
sends the same requests to ferrocorn -k asgi and gunicorn 27 -k asgi and
compares what each app saw. HTTP: the scope (and the body it received) as
the response; websocket: accept, the scope as a text message, close.
`failing` is an app whose lifespan startup fails."""

import json


def describe(scope, body=None):
    def plain(v):
        if isinstance(v, bytes):
            return v.decode("latin-1")
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    out = {k: plain(v) for k, v in scope.items() if k not in ("state", "extensions", "app")}
    out["extensions"] = sorted((scope.get("extensions") or {}).keys())
    out["has_state"] = "state" in scope
    if body is not None:
        out["body"] = body.decode("latin-1")
    return out


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                scope["state"]["started"] = True
                await send({"type": "lifespan.startup.complete"})
            elif m["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()
        offered = scope.get("subprotocols") or []
        await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None})
        await send({"type": "websocket.send", "text": json.dumps(describe(scope))})
        await send({"type": "websocket.close", "code": 1000})
        return
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    data = json.dumps(describe(scope, body)).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


async def failing(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "the database is down"})
        return
    await send({"type": "http.response.start", "status": 500, "headers": []})
    await send({"type": "http.response.body", "body": b""})
