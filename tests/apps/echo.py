"""Echo the request as JSON: selected environ keys, every HTTP_* key, and the
SHA-256 and length of the body read from wsgi.input.

The body is read with read(65536) in a loop (streaming), or with readline()
when PATH_INFO ends with /readline. Every call is announced on wsgi.errors as
"echo-app called: METHOD RAW_URI", so tests can prove the app did not run.
"""

import hashlib
import json
import os

KEYS = (
    "REQUEST_METHOD",
    "PATH_INFO",
    "QUERY_STRING",
    "RAW_URI",
    "SCRIPT_NAME",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "wsgi.url_scheme",
    "wsgi.multithread",
    "wsgi.multiprocess",
    "wsgi.run_once",
    "wsgi.input_terminated",
)


def app(environ, start_response):
    environ["wsgi.errors"].write(
        "echo-app called: %s %s\n" % (environ.get("REQUEST_METHOD"), environ.get("RAW_URI"))
    )
    inp = environ["wsgi.input"]
    digest = hashlib.sha256()
    length = 0
    reads = 0
    max_read = 0
    lines = 0
    if environ.get("PATH_INFO", "").endswith("/readline"):
        while True:
            line = inp.readline()
            if not line:
                break
            lines += 1
            digest.update(line)
            length += len(line)
    else:
        while True:
            chunk = inp.read(65536)
            if not chunk:
                break
            reads += 1
            max_read = max(max_read, len(chunk))
            digest.update(chunk)
            length += len(chunk)
    out = {k: environ.get(k) for k in KEYS}
    out["present"] = sorted(k for k in KEYS if k in environ)
    out["headers"] = {k: v for k, v in environ.items() if k.startswith("HTTP_")}
    out["body_sha256"] = digest.hexdigest()
    out["body_length"] = length
    out["reads"] = reads
    out["max_read"] = max_read
    out["lines"] = lines
    out["pid"] = os.getpid()
    # What an earlier request left in its environ must not be in this one.
    out["mark"] = environ.get("echo.mark")
    environ["echo.mark"] = "left by an earlier request"
    environ["wsgi.run_once"] = True
    del environ["SERVER_NAME"]
    body = json.dumps(out, sort_keys=True).encode("ascii")
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]
