"""Answer with the names of the process environment variables the app sees."""

import os


def app(environ, start_response):
    body = "\n".join(sorted(os.environ)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
