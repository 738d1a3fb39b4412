"""ASGI 3 websocket echo: accept, send every text/binary message back until
the client disconnects. Plain HTTP requests get the hello response (used by
the harness's readiness probe)."""

from apps.asgi_hello import app as _hello


async def app(scope, receive, send):
    if scope["type"] != "websocket":
        await _hello(scope, receive, send)
        return
    while True:
        msg = await receive()
        kind = msg["type"]
        if kind == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif kind == "websocket.receive":
            if msg.get("text") is not None:
                await send({"type": "websocket.send", "text": msg["text"]})
            else:
                await send({"type": "websocket.send", "bytes": msg.get("bytes") or b""})
        elif kind == "websocket.disconnect":
            return
