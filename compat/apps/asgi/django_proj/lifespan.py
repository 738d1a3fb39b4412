"""Django has no lifespan of its own: this ASGI wrapper answers the lifespan
scope (startup fills STATE, which a view reports; shutdown writes a marker)
and hands every other scope to the Channels router."""

import common

STATE = {}


class Lifespan:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "lifespan":
            return await self.app(scope, receive, send)
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                STATE["started"] = common.startup_token("django")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                common.mark("shutdown-django")
                await send({"type": "lifespan.shutdown.complete"})
                return
