"""The response iterable has close(), which appends "close ID after N" (N =
items produced) to the file named by the CLOSE_LOG environment variable.

/short?id=ID  3 small items
/long?id=ID   400 items of 64 KiB, 10 ms apart (for disconnect tests)
"""

import os
import time
from urllib.parse import parse_qs


class Body:
    def __init__(self, tag, count, size, delay):
        self.tag = tag
        self.count = count
        self.size = size
        self.delay = delay
        self.produced = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.produced >= self.count:
            raise StopIteration
        if self.produced and self.delay:
            time.sleep(self.delay)
        self.produced += 1
        return b"x" * self.size

    def close(self):
        path = os.environ.get("CLOSE_LOG")
        if path:
            with open(path, "a") as f:
                f.write("close %s after %d\n" % (self.tag, self.produced))


def app(environ, start_response):
    tag = parse_qs(environ.get("QUERY_STRING", "")).get("id", ["none"])[0]
    if environ["PATH_INFO"] == "/long":
        body = Body(tag, 400, 65536, 0.01)
    else:
        body = Body(tag, 3, 10, 0)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return body
