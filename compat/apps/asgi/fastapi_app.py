"""FastAPI: path operations, a Pydantic-free JSON echo of the raw body,
StreamingResponse for SSE, WebSocket routes and a lifespan that sets
app.state."""

import asyncio
import contextlib
import hashlib

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

import common

NAME = "fastapi"


@contextlib.asynccontextmanager
async def lifespan(app):
    app.state.started = common.startup_token(NAME)
    yield
    common.mark(f"shutdown-{NAME}")


app = FastAPI(lifespan=lifespan)


@app.get("/healthz", response_class=PlainTextResponse)
async def healthz():
    return "ok"


@app.get("/hello")
async def hello():
    return JSONResponse({"hello": "world", "framework": NAME}, headers={"X-Compat": NAME})


@app.post("/echo")
async def echo(request: Request):
    body = await request.body()
    return {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}


@app.get("/lifespan")
async def lifespan_state(request: Request):
    return {"started": request.app.state.started}


@app.get("/sse")
async def sse():
    async def events():
        for i in range(common.EVENTS):
            if i:
                await asyncio.sleep(common.EVENT_GAP)
            yield common.event(i)

    return StreamingResponse(events(), media_type="text/event-stream")


@app.get("/sse-endless")
async def sse_endless(id: str):
    async def events():
        try:
            for i in range(common.ENDLESS_LIMIT):
                yield common.event(i)
                await asyncio.sleep(common.ENDLESS_GAP)
        finally:
            common.mark(f"disconnected-{id}")

    return StreamingResponse(events(), media_type="text/event-stream")


@app.get("/disconnected")
async def disconnected(id: str):
    return {"disconnected": common.marked(f"disconnected-{id}")}


@app.websocket("/ws/echo")
async def ws_echo(websocket: WebSocket):
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


@app.websocket("/ws/subprotocol")
async def ws_subprotocol(websocket: WebSocket):
    chosen = common.pick_subprotocol(websocket.scope.get("subprotocols", []))
    await websocket.accept(subprotocol=chosen)
    await websocket.send_text(chosen or "none")
    await websocket.close()


@app.websocket("/ws/close")
async def ws_close(websocket: WebSocket):
    await websocket.accept()
    await websocket.send_text("bye")
    await websocket.close(code=common.CLOSE_CODE, reason=common.CLOSE_REASON)
