"""An app wrapped in wsgiref.validate.validator: any PEP 3333 violation by
the server raises AssertionError (logged) or a WSGIWarning."""

from wsgiref.validate import validator


def _inner(environ, start_response):
    method = environ["REQUEST_METHOD"]
    if method == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = b"posted:" + environ["wsgi.input"].read(length)
    else:
        body = ("validated %s %s" % (method, environ["PATH_INFO"])).encode("latin-1")
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    return [body]


app = validator(_inner)
