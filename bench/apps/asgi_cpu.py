"""ASGI app whose requests compute (about 0.3 ms of Python each) and name
the worker's pid: where connections land decides the throughput."""

import os


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    n = sum(i * i for i in range(3000))
    body = ("%d %d" % (n, os.getpid())).encode()
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/plain"),
                    (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})
