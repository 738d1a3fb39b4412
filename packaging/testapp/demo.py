"""The app the systemd-box tests deploy to /srv/demo (stdlib only).

GET /         -> the server's SERVER_SOFTWARE ("ferrocorn/X.Y.Z"), so a load
                 generator counting bodies sees which version answered
GET /slow?s=N -> the same after sleeping N seconds (an in-flight request)
Every response carries X-Worker-Pid. DEMO_IMPORT_DELAY (seconds) slows the
import, to show that systemd waits for the workers before "active".
"""

import os
import time
from urllib.parse import parse_qs

time.sleep(float(os.environ.get("DEMO_IMPORT_DELAY", "0")))


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/slow":
        qs = parse_qs(environ.get("QUERY_STRING", ""))
        time.sleep(float(qs.get("s", ["2"])[0]))
    body = environ.get("SERVER_SOFTWARE", "unknown").encode()
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(body))),
            ("X-Worker-Pid", str(os.getpid())),
        ],
    )
    return [body]
