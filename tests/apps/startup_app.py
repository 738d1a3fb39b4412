"""The startup tests' app: reports how the interpreter was set up.

Routes (by PATH_INFO):
  /info?sleep=S  JSON: "pid", "hash" (of "abc", as a string), "seed"
                 (os.environ.get("PYTHONHASHSEED")) and "path" (sys.path),
                 after sleeping S seconds (default 0)
  /child         JSON list: for two fresh subprocesses of this Python,
                 "hash" and "seed" as they see them
  /beside        "beside: VALUE" from the module `beside`, imported now
"""

import json
import os
import subprocess
import sys
import time
from urllib.parse import parse_qs

PYTHON = os.path.join(sys.base_exec_prefix, "bin", "python%d.%d" % sys.version_info[:2])
CHILD = 'import json, os; print(json.dumps({"hash": str(hash("abc")), "seed": os.environ.get("PYTHONHASHSEED")}))'


def _json(start_response, obj):
    body = json.dumps(obj).encode()
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if path == "/child":
        out = []
        for _ in range(2):
            text = subprocess.run(
                [PYTHON, "-c", CHILD], capture_output=True, text=True, timeout=20, check=True
            ).stdout
            out.append(json.loads(text))
        return _json(start_response, out)
    if path == "/beside":
        import beside

        return _json(start_response, "beside: %s" % beside.VALUE)
    time.sleep(float(query.get("sleep", ["0"])[0]))
    return _json(
        start_response,
        {
            "pid": os.getpid(),
            "hash": str(hash("abc")),
            "seed": os.environ.get("PYTHONHASHSEED"),
            "path": sys.path,
        },
    )
