"""A long-poll: the request waits 1 s (standing in for an event that
arrives later), then answers. Plain blocking time.sleep, as in green_sleep."""

import time

BODY = b"event after 1 s\n"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY))),
           ("Cache-Control", "no-cache")]


def app(environ, start_response):
    time.sleep(1.0)
    start_response("200 OK", HEADERS)
    return [BODY]
