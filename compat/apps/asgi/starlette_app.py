"""Starlette: routes, StreamingResponse for SSE, WebSocket endpoints and a
lifespan context that sets app.state."""

import asyncio
import contextlib
import hashlib

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect

import common

NAME = "starlette"


async def healthz(request):
    return PlainTextResponse("ok")


async def hello(request):
    return JSONResponse({"hello": "world", "framework": NAME}, headers={"X-Compat": NAME})


async def echo(request):
    body = await request.body()
    return JSONResponse({"length": len(body), "sha256": hashlib.sha256(body).hexdigest()})


async def lifespan_state(request):
    return JSONResponse({"started": request.app.state.started})


async def sse(request):
    async def events():
        for i in range(common.EVENTS):
            if i:
                await asyncio.sleep(common.EVENT_GAP)
            yield common.event(i)

    return StreamingResponse(events(), media_type="text/event-stream")


async def sse_endless(request):
    tag = request.query_params["id"]

    async def events():
        try:
            for i in range(common.ENDLESS_LIMIT):
                yield common.event(i)
                await asyncio.sleep(common.ENDLESS_GAP)
        finally:
            common.mark(f"disconnected-{tag}")

    return StreamingResponse(events(), media_type="text/event-stream")


async def disconnected(request):
    return JSONResponse({"disconnected": common.marked(f"disconnected-{request.query_params['id']}")})


async def ws_echo(websocket):
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            else:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        pass


async def ws_subprotocol(websocket):
    chosen = common.pick_subprotocol(websocket.scope.get("subprotocols", []))
    await websocket.accept(subprotocol=chosen)
    await websocket.send_text(chosen or "none")
    await websocket.close()


async def ws_close(websocket):
    await websocket.accept()
    await websocket.send_text("bye")
    await websocket.close(code=common.CLOSE_CODE, reason=common.CLOSE_REASON)


@contextlib.asynccontextmanager
async def lifespan(app):
    app.state.started = common.startup_token(NAME)
    yield
    common.mark(f"shutdown-{NAME}")


app = Starlette(
    routes=[
        Route("/healthz", healthz),
        Route("/hello", hello),
        Route("/echo", echo, methods=["POST"]),
        Route("/lifespan", lifespan_state),
        Route("/sse", sse),
        Route("/sse-endless", sse_endless),
        Route("/disconnected", disconnected),
        WebSocketRoute("/ws/echo", ws_echo),
        WebSocketRoute("/ws/subprotocol", ws_subprotocol),
        WebSocketRoute("/ws/close", ws_close),
    ],
    lifespan=lifespan,
)
