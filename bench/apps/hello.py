"""Plain WSGI hello world: the smallest possible response path."""

BODY = b"Hello, World!\n"
HEADERS = [
    ("Content-Type", "text/plain"),
    ("Content-Length", str(len(BODY))),
]


def app(environ, start_response):
    start_response("200 OK", list(HEADERS))
    return [BODY]
