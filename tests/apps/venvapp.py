"""Imports a module that exists only in the test's virtualenv."""

import onlyinvenv


def app(environ, start_response):
    body = onlyinvenv.MESSAGE.encode("utf-8")
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    return [body]
