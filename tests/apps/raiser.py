"""Raises: before start_response (any path but /ok and /after), or after the
first chunk of a streamed body (/after)."""


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/ok":
        body = b"still serving\n"
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]
    if path == "/after":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            yield b"first-chunk-before-error\n"
            raise RuntimeError("boom-after-first-chunk")

        return body()
    raise RuntimeError("boom-before-start-response at %s" % path)
