"""Tornado (served by ferrocorn -k tornado, as gunicorn's Tornado worker
served it): a JSON route with a header, a body echo, and a stream that
flushes each event as it is written."""

import asyncio
import hashlib

import tornado.web

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


app = tornado.web.Application(
    [(r"/healthz", Healthz), (r"/hello", Hello), (r"/echo", Echo), (r"/sse", Sse)]
)
