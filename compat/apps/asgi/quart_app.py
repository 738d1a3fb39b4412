"""Quart: async views, an async generator response for SSE, websocket
routes on the `websocket` context global, before/after_serving as the
lifespan."""

import asyncio
import hashlib

from quart import Quart, jsonify, make_response, request, websocket

import common

NAME = "quart"
app = Quart(__name__)


@app.before_serving
async def startup():
    app.config["COMPAT_STARTED"] = common.startup_token(NAME)


@app.after_serving
async def shutdown():
    common.mark(f"shutdown-{NAME}")


@app.get("/healthz")
async def healthz():
    return "ok", 200, {"Content-Type": "text/plain"}


@app.get("/hello")
async def hello():
    response = jsonify({"hello": "world", "framework": NAME})
    response.headers["X-Compat"] = NAME
    return response


@app.post("/echo")
async def echo():
    body = await request.get_data()
    return {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}


@app.get("/lifespan")
async def lifespan_state():
    return {"started": app.config["COMPAT_STARTED"]}


async def _sse_response(events):
    response = await make_response(events(), {"Content-Type": "text/event-stream"})
    response.timeout = None
    return response


@app.get("/sse")
async def sse():
    async def events():
        for i in range(common.EVENTS):
            if i:
                await asyncio.sleep(common.EVENT_GAP)
            yield common.event(i).encode()

    return await _sse_response(events)


@app.get("/sse-endless")
async def sse_endless():
    tag = request.args["id"]

    async def events():
        try:
            for i in range(common.ENDLESS_LIMIT):
                yield common.event(i).encode()
                await asyncio.sleep(common.ENDLESS_GAP)
        finally:
            common.mark(f"disconnected-{tag}")

    return await _sse_response(events)


@app.get("/disconnected")
async def disconnected():
    return {"disconnected": common.marked(f"disconnected-{request.args['id']}")}


@app.websocket("/ws/echo")
async def ws_echo():
    await websocket.accept()
    while True:
        data = await websocket.receive()
        await websocket.send(data)


@app.websocket("/ws/subprotocol")
async def ws_subprotocol():
    chosen = common.pick_subprotocol(websocket.requested_subprotocols)
    await websocket.accept(subprotocol=chosen)
    await websocket.send(chosen or "none")
    await websocket.close(1000)


@app.websocket("/ws/close")
async def ws_close():
    await websocket.accept()
    await websocket.send("bye")
    await websocket.close(common.CLOSE_CODE, common.CLOSE_REASON)
