"""Litestar: handler decorators, Stream for SSE, websocket handlers and
on_startup/on_shutdown hooks that use app.state."""

import asyncio
import hashlib

from litestar import Litestar, MediaType, Request, Response, WebSocket, get, post, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.response import Stream

import common

NAME = "litestar"


def startup(app: Litestar):
    app.state.started = common.startup_token(NAME)


def shutdown(app: Litestar):
    common.mark(f"shutdown-{NAME}")


@get("/healthz", media_type=MediaType.TEXT)
async def healthz() -> str:
    return "ok"


@get("/hello")
async def hello() -> Response:
    return Response({"hello": "world", "framework": NAME}, headers={"X-Compat": NAME})


@post("/echo", status_code=200)
async def echo(request: Request) -> dict:
    body = await request.body()
    return {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}


@get("/lifespan")
async def lifespan_state(request: Request) -> dict:
    return {"started": request.app.state.started}


@get("/sse")
async def sse() -> Stream:
    async def events():
        for i in range(common.EVENTS):
            if i:
                await asyncio.sleep(common.EVENT_GAP)
            yield common.event(i)

    return Stream(events(), media_type="text/event-stream")


@get("/sse-endless")
async def sse_endless(id: str) -> Stream:
    async def events():
        try:
            for i in range(common.ENDLESS_LIMIT):
                yield common.event(i)
                await asyncio.sleep(common.ENDLESS_GAP)
        finally:
            common.mark(f"disconnected-{id}")

    return Stream(events(), media_type="text/event-stream")


@get("/disconnected")
async def disconnected(id: str) -> dict:
    return {"disconnected": common.marked(f"disconnected-{id}")}


@websocket("/ws/echo")
async def ws_echo(socket: WebSocket) -> None:
    await socket.accept()
    try:
        while True:
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await socket.send_text(message["text"])
            else:
                await socket.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        pass


@websocket("/ws/subprotocol")
async def ws_subprotocol(socket: WebSocket) -> None:
    chosen = common.pick_subprotocol(socket.scope.get("subprotocols", []))
    await socket.accept(subprotocols=chosen)
    await socket.send_text(chosen or "none")
    await socket.close()


@websocket("/ws/close")
async def ws_close(socket: WebSocket) -> None:
    await socket.accept()
    await socket.send_text("bye")
    await socket.close(code=common.CLOSE_CODE, reason=common.CLOSE_REASON)


app = Litestar(
    route_handlers=[
        healthz, hello, echo, lifespan_state, sse, sse_endless, disconnected,
        ws_echo, ws_subprotocol, ws_close,
    ],
    on_startup=[startup],
    on_shutdown=[shutdown],
)  # fmt: skip
