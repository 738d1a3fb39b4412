import asyncio
import hashlib

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse

import common

from . import lifespan

NAME = "django"


async def healthz(request):
    return HttpResponse("ok", content_type="text/plain")


async def hello(request):
    return JsonResponse({"hello": "world", "framework": NAME}, headers={"X-Compat": NAME})


async def echo(request):
    body = request.body
    return JsonResponse({"length": len(body), "sha256": hashlib.sha256(body).hexdigest()})


async def lifespan_state(request):
    return JsonResponse({"started": lifespan.STATE.get("started")})


async def sse(request):
    async def events():
        for i in range(common.EVENTS):
            if i:
                await asyncio.sleep(common.EVENT_GAP)
            yield common.event(i)

    return StreamingHttpResponse(events(), content_type="text/event-stream")


async def sse_endless(request):
    tag = request.GET["id"]

    async def events():
        try:
            for i in range(common.ENDLESS_LIMIT):
                yield common.event(i)
                await asyncio.sleep(common.ENDLESS_GAP)
        finally:
            common.mark(f"disconnected-{tag}")

    return StreamingHttpResponse(events(), content_type="text/event-stream")


async def disconnected(request):
    return JsonResponse({"disconnected": common.marked(f"disconnected-{request.GET['id']}")})
