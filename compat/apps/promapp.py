"""Counts requests with prometheus_client in multiprocess mode."""

from prometheus_client import Counter, Gauge

REQUESTS = Counter("compat_requests", "Requests served")
UP = Gauge("compat_worker_up", "Workers up", multiprocess_mode="livesum")
UP.set(1)


def app(environ, start_response):
    if environ["PATH_INFO"] != "/healthz":
        REQUESTS.inc()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "close")])
    return [b"ok"]
