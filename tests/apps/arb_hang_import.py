"""A module that hangs at import time (for the boot timeout test)."""

import time

time.sleep(60)


def app(environ, start_response):
    start_response("200 OK", [("Content-Length", "0")])
    return [b""]
