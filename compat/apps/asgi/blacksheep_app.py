"""BlackSheep: router decorators with bound query parameters, StreamedContent
for SSE (checking request.is_disconnected() between events), WebSocket
routes and on_start/on_stop events."""

import asyncio
import hashlib

from blacksheep import Application, Request, Response, StreamedContent, WebSocket, json, text
from blacksheep.server.websocket import WebSocketDisconnectError

import common

NAME = "blacksheep"
app = Application()
app.state = {}


async def on_start(application):
    application.state["started"] = common.startup_token(NAME)


async def on_stop(application):
    common.mark(f"shutdown-{NAME}")


app.on_start += on_start
app.on_stop += on_stop


@app.router.get("/healthz")
async def healthz():
    return text("ok")


@app.router.get("/hello")
async def hello():
    response = json({"hello": "world", "framework": NAME})
    response.add_header(b"X-Compat", NAME.encode())
    return response


@app.router.post("/echo")
async def echo(request: Request):
    body = await request.read() or b""
    return json({"length": len(body), "sha256": hashlib.sha256(body).hexdigest()})


@app.router.get("/lifespan")
async def lifespan_state():
    return json({"started": app.state["started"]})


@app.router.get("/sse")
async def sse():
    async def events():
        for i in range(common.EVENTS):
            if i:
                await asyncio.sleep(common.EVENT_GAP)
            yield common.event(i).encode()

    return Response(200, content=StreamedContent(b"text/event-stream", events))


@app.router.get("/sse-endless")
async def sse_endless(request: Request, id: str):
    async def events():
        try:
            for i in range(common.ENDLESS_LIMIT):
                if await request.is_disconnected():
                    return
                yield common.event(i).encode()
                await asyncio.sleep(common.ENDLESS_GAP)
        finally:
            common.mark(f"disconnected-{id}")

    return Response(200, content=StreamedContent(b"text/event-stream", events))


@app.router.get("/disconnected")
async def disconnected(id: str):
    return json({"disconnected": common.marked(f"disconnected-{id}")})


@app.router.ws("/ws/echo")
async def ws_echo(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message.get("type") == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            else:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnectError:
        pass


@app.router.ws("/ws/subprotocol")
async def ws_subprotocol(websocket: WebSocket):
    chosen = common.pick_subprotocol(websocket.scope.get("subprotocols", []))
    await websocket.accept(subprotocol=chosen)
    await websocket.send_text(chosen or "none")
    await websocket.close()


@app.router.ws("/ws/close")
async def ws_close(websocket: WebSocket):
    await websocket.accept()
    await websocket.send_text("bye")
    await websocket.close(common.CLOSE_CODE, common.CLOSE_REASON)
