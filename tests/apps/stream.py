"""A generator app without Content-Length: chunked on HTTP/1.1,
close-delimited on HTTP/1.0. The empty item must not end the body."""

CHUNKS = [b"first chunk\n", b"", b"second chunk\n", b"x" * 70000, b"\n", b"last chunk\n"]


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        for c in CHUNKS:
            yield c

    return body()
