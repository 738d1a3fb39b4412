"""A 10 ms blocking call, written as gevent users write it: plain
time.sleep, no gevent import. Under -k gevent / -k eventlet the worker has
monkey-patched time, so the sleep yields to the hub; under gthread it
holds a thread."""

import time

BODY = b"slept 10 ms\n"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def app(environ, start_response):
    time.sleep(0.01)
    start_response("200 OK", HEADERS)
    return [BODY]
