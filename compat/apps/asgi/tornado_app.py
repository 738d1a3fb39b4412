"""Tornado (served by ferrocorn -k tornado, as gunicorn's Tornado worker
served it): a JSON route with a header, a body echo, a stream that flushes
each event as it is written, and WebSocketHandlers: the suite's echo,
subprotocol and close routes, plus server pings (on_pong), client pings
(on_ping), the close code on_close sees, and an origin check."""

import asyncio
import hashlib

import tornado.web
import tornado.websocket

import common

NAME = "tornado"


class Healthz(tornado.web.RequestHandler):
    def get(self):
        self.write("ok")


class Hello(tornado.web.RequestHandler):
    def get(self):
        self.set_header("X-Compat", NAME)
        self.write({"hello": "world", "framework": NAME})


class Echo(tornado.web.RequestHandler):
    def post(self):
        body = self.request.body
        self.write({"length": len(body), "sha256": hashlib.sha256(body).hexdigest()})


class Sse(tornado.web.RequestHandler):
    async def get(self):
        self.set_header("Content-Type", "text/event-stream")
        for i in range(common.EVENTS):
            if i:
                await asyncio.sleep(common.EVENT_GAP)
            self.write(common.event(i))
            await self.flush()


class WsEcho(tornado.websocket.WebSocketHandler):
    async def on_message(self, message):
        # A coroutine: the next message waits until this one is answered.
        await self.write_message(message, binary=isinstance(message, bytes))


class WsSubprotocol(tornado.websocket.WebSocketHandler):
    def select_subprotocol(self, subprotocols):
        return common.pick_subprotocol(subprotocols)

    def open(self):
        self.write_message(self.selected_subprotocol or "none")
        self.close()


class WsClose(tornado.websocket.WebSocketHandler):
    def open(self):
        self.write_message("bye")
        self.close(common.CLOSE_CODE, common.CLOSE_REASON)


class WsPing(tornado.websocket.WebSocketHandler):
    """Pings the client every 0.2 s; says so once a pong came back, and
    answers the client's own pings with what they carried."""

    @property
    def ping_interval(self):
        return 0.2

    @property
    def ping_timeout(self):
        return 2.0

    def on_pong(self, data):
        if not getattr(self, "_told", False):
            self._told = True
            self.write_message("pong seen")

    def on_ping(self, data):
        self.write_message("ping seen: " + data.decode())

    def on_message(self, message):
        pass


class WsOnClose(tornado.websocket.WebSocketHandler):
    """Records the close code and reason on_close sees (for /ws/closed)."""

    def open(self):
        self.id = self.get_argument("id")
        self.write_message("open")

    def on_message(self, message):
        pass

    def on_close(self):
        common.mark(f"ws-closed-{self.id}", f"{self.close_code} {self.close_reason}")


class WsClosed(tornado.web.RequestHandler):
    def get(self):
        name = f"ws-closed-{self.get_argument('id')}"
        self.write({"closed": (common.STATE_DIR / name).read_text() if common.marked(name) else None})


app = tornado.web.Application(
    [
        (r"/healthz", Healthz),
        (r"/hello", Hello),
        (r"/echo", Echo),
        (r"/sse", Sse),
        (r"/ws/echo", WsEcho),
        (r"/ws/subprotocol", WsSubprotocol),
        (r"/ws/close", WsClose),
        (r"/ws/ping", WsPing),
        (r"/ws/onclose", WsOnClose),
        (r"/ws/closed", WsClosed),
    ]
)
