"""ASGI 3: await asyncio.sleep(0.01) (a stand-in for a DB or API call), then hello."""

import asyncio

from apps.asgi_hello import BODY, HEADERS
from apps.asgi_hello import app as _hello


async def app(scope, receive, send):
    if scope["type"] == "http":
        await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})
        return
    await _hello(scope, receive, send)
