"""Serves a file it creates in a temp dir through wsgi.file_wrapper.

/          the whole file, with Content-Length
/nolength  the whole file, no Content-Length
/offset    the file positioned at byte 1000, Content-Length of the rest
/bytesio   an io.BytesIO (not a real file), with Content-Length
/counted   the whole file, counting the read() calls made on it
/reads     how many read() calls the last /counted response made (text)
"""

import io
import os
import tempfile

SIZE = 300000


def pattern(n):
    return bytes((i * 7 + 3) % 256 for i in range(n))


DATA = pattern(SIZE)


def _temp_file():
    fd, path = tempfile.mkstemp(prefix="ferrocorn-filewrap-")
    f = os.fdopen(fd, "w+b")
    os.unlink(path)
    f.write(DATA)
    f.flush()
    f.seek(0)
    return f


class CountingFile:
    """A real file (it has a fileno) that counts the reads made on it."""

    reads = 0

    def __init__(self, f):
        self.f = f
        CountingFile.reads = 0

    def fileno(self):
        return self.f.fileno()

    def tell(self):
        return self.f.tell()

    def read(self, n=-1):
        CountingFile.reads += 1
        return self.f.read(n)

    def close(self):
        self.f.close()


def app(environ, start_response):
    path = environ["PATH_INFO"]
    length = SIZE
    if path == "/reads":
        body = str(CountingFile.reads).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    if path == "/bytesio":
        f = io.BytesIO(DATA)
    else:
        f = _temp_file()
        if path == "/offset":
            f.seek(1000)
            length = SIZE - 1000
        elif path == "/counted":
            f = CountingFile(f)
    headers = [("Content-Type", "application/octet-stream")]
    if path != "/nolength":
        headers.append(("Content-Length", str(length)))
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](f, 8192)
