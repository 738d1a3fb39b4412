"""For tests/pid1.rs: /orphan starts a `sleep` whose parent shell exits at
once, so it is orphaned (reparented to PID 1) and answers its pid;
/slow?sleep=S answers after S seconds."""

import subprocess
import time
from urllib.parse import parse_qs


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/orphan":
        secs = parse_qs(environ.get("QUERY_STRING", "")).get("sleep", ["1"])[0]
        out = subprocess.run(
            ["/bin/sh", "-c", 'sleep "$1" >/dev/null 2>&1 & echo $!', "sh", secs],
            capture_output=True,
            check=True,
        )
        body = out.stdout
    else:
        secs = float(parse_qs(environ.get("QUERY_STRING", "")).get("sleep", ["0"])[0])
        time.sleep(secs)
        body = ("slept %s\n" % secs).encode("ascii")
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    return [body]
