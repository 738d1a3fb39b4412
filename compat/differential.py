"""Raw requests side by side: gunicorn 27 and ferrocorn serve the same app
(tests/apps/echo.py, which answers with the environ as JSON), get the same
raw bytes, and must answer with the same status and, for requests both
serve, the same environ (apart from keys that differ by nature, such as the
client port). The differences ferrocorn makes on purpose, which the README
documents, are listed in DELIBERATE and reported but not counted.
Standard library only; run by `compat/run.sh --differential`.

    python differential.py --gunicorn 'PYTHON -m gunicorn' --ferrocorn-bin BIN [-v]

Output: one line per differing case (all cases with -v), then
`N same, N deliberate, N differ`. Exit status 1 if any case differs.
"""

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time

import accesslog
from accesslog import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(os.path.dirname(HERE), "tests", "apps")

H = b"Host: x\r\n"
CASES = [
 ("relative path", b"GET foo/bar HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("authority non-CONNECT", b"GET example.com:80 HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("authority CONNECT", b"CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("CONNECT origin", b"CONNECT /x HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("star GET", b"GET * HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("star OPTIONS", b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("star CONNECT", b"CONNECT * HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("absolute", b"GET http://h/p?q HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("absolute urn", b"GET urn:x HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("bad scheme ://", b"GET 1http://h/p HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("path://", b"GET foo/bar://x HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("ipv6 unclosed", b"GET http://[::1/p HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("ipv6 closed only", b"GET http://::1]/p HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("ipv6 ok", b"GET http://[::1]:80/p HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("ipv6 bogus", b"GET http://[zz]/p HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("ipv4 in brackets", b"GET http://[1.2.3.4]/p HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("ipvfuture", b"GET http://[v1.x]/p HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("ipvfuture bad", b"GET http://[vz.x]/p HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("after bracket", b"GET http://[::1]x/p HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("bracket in path", b"GET /a[b HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("bracket //", b"GET //[a/b HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("bad port", b"GET http://h:abc/p HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("CONNECT ipv6 bad", b"CONNECT [::1:443 HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("CONNECT abs bad", b"CONNECT http://[::1/ HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("nonascii", b"GET /caf\xe9 HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("nonascii utf8", b"GET /\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("one crlf", b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("two crlf", b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("trailer host", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nHost: y\r\n\r\n"),
 ("trailer te", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nte: trailers\r\n\r\n"),
 ("trailer authz", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nAuthorization: x\r\n\r\n"),
 ("trailer cl", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nContent-Length: 1\r\n\r\n"),
 ("trailer trailer", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nTrailer: x\r\n\r\n"),
 ("trailer tenc", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"),
 ("trailer ok", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX-Sum: 1\r\n\r\n"),
 ("trailer dup ctype", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nContent-Type: a\r\nContent-Type: b\r\n\r\n"),
 ("two host", b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"),
 ("two host same", b"GET / HTTP/1.1\r\nHost: x\r\nhost: x\r\n\r\n"),
 ("two ctype", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: a\r\nContent-Type: b\r\nContent-Length: 0\r\n\r\n"),
 ("gzip chunked", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"),
 ("deflate chunked", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: deflate,chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"),
 ("compress chunked 2 hdrs", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: compress\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"),
 ("identity chunked", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity, chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"),
 ("chunked identity", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n1\r\na\r\n0\r\n\r\n"),
 ("chunked gzip", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n1\r\na\r\n0\r\n\r\n"),
 ("gzip only", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"),
 ("identity only", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n"),
 ("chunked foo", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, foo\r\n\r\n"),
 ("foo chunked", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: foo, chunked\r\n\r\n"),
 ("chunked,", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked,\r\n\r\n1\r\na\r\n0\r\n\r\n"),
 (",chunked", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ,chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"),
 ("chunked chunked", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
 ("gzip chunked + CL", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
 ("gzip chunked 1.0", b"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
 ("empty TE", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n\r\n"),
 ("CL then TE foo", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: foo\r\n\r\n"),
]

# More of the README's rejections and edge cases.
CASES += [
    ("plain", b"GET /p?q=1 HTTP/1.1\r\n" + H + b"\r\n"),
    ("HTTP/1.0", b"GET /p HTTP/1.0\r\n\r\n"),
    ("CL and TE", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"),
    ("two CL differ", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\naa"),
    ("CL not a number", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\na"),
    ("bad chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\na\r\n0\r\n\r\n"),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"),
    ("space before colon", b"GET / HTTP/1.1\r\nHost: x\r\nX-A : a\r\n\r\n"),
    ("bad header name", b"GET / HTTP/1.1\r\nHost: x\r\nX(A): a\r\n\r\n"),
    ("lowercase method", b"get / HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: x\r\n\r\n"),
    ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n"),
    ("long request line", b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("long header line", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 9000 + b"\r\n\r\n"),
    ("underscore header", b"GET / HTTP/1.1\r\nHost: x\r\nX_A: 1\r\n\r\n"),
    ("percent path", b"GET /a%20b%2Fc?x=%41 HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("expect 100", b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\na"),
    ("unknown expect", b"POST / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\nContent-Length: 1\r\n\r\na"),
    ("X-Forwarded-Proto", b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\n\r\n"),
    ("contradictory scheme", b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Ssl: off\r\n\r\n"),
]

# Differences the README documents, by case: what is allowed to differ.
DELIBERATE = {
    "bad scheme ://": "ferrocorn refuses a '://' target whose scheme is not valid; gunicorn serves it as a path",
    "path://": "the same: gunicorn only looks for '://'",
    "authority CONNECT": "gunicorn splits CONNECT host:port like scheme:path (PATH_INFO '443'); ferrocorn's PATH_INFO is the authority",
    "HTTP/1.2": "gunicorn accepts HTTP/1.2-1.9 by default; ferrocorn only with --permit-unconventional-http-version",
}

# Environ keys that differ by nature (the client's port, the software).
NATURAL_KEYS = {"REMOTE_PORT", "SERVER_SOFTWARE", "SERVER_PORT", "pid"}


def send(port, raw, wait=3.0):
    """The server's whole answer (until it closes or goes quiet)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(raw)
        data = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                if answer_complete(data):
                    break
        except socket.timeout:
            pass
    return data


def answer_complete(data):
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    if head.startswith(b"HTTP/1.1 100"):
        return answer_complete(body)
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                return len(body) >= int(value.strip())
            except ValueError:
                return False
    return False


def parse(data):
    """(status, environ or None) of an answer."""
    if data.startswith(b"HTTP/1.1 100"):
        data = data.partition(b"\r\n\r\n")[2]
    if not data:
        return "(no answer)", None
    line, _, rest = data.partition(b"\r\n")
    parts = line.decode("latin-1").split(" ")
    status = parts[1] if len(parts) > 1 else line.decode("latin-1")
    body = rest.partition(b"\r\n\r\n")[2]
    environ = None
    if status == "200":
        try:
            environ = json.loads(body)
        except ValueError:
            environ = None
    return status, environ


class Served:
    def __init__(self, name, argv, tmp):
        self.name = name
        self.port = free_port()
        self.err = open(os.path.join(tmp, name + ".log"), "wb")
        argv = argv + ["-w", "1", "-b", "127.0.0.1:%d" % self.port, "--chdir", APPS, "echo:app"]
        self.proc = subprocess.Popen(argv, stdout=self.err, stderr=self.err, start_new_session=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("%s did not start" % name)

    # Stopping the process group is the access-log suite's.
    stop = accesslog.Served.stop


def environ_diff(g, f):
    keys = (set(g) | set(f)) - NATURAL_KEYS
    return ["%s: gunicorn %r, ferrocorn %r" % (k, g.get(k), f.get(k))
            for k in sorted(keys) if g.get(k) != f.get(k)]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gunicorn", required=True, help="command that runs gunicorn")
    p.add_argument("--ferrocorn-bin", required=True)
    p.add_argument("-v", action="store_true", help="print every case")
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="ferrocorn-differential-")
    servers = [Served("gunicorn", shlex.split(args.gunicorn), tmp),
               Served("ferrocorn", [args.ferrocorn_bin], tmp)]
    same = deliberate = differ = 0
    try:
        for name, raw in CASES:
            (gs, ge), (fs, fe) = (parse(send(s.port, raw)) for s in servers)
            why = []
            if gs != fs:
                why.append("status gunicorn %s, ferrocorn %s" % (gs, fs))
            elif ge is not None and fe is not None:
                why += environ_diff(ge, fe)
            if not why:
                same += 1
                if args.v:
                    print("same %s: %s" % (name, gs))
            elif name in DELIBERATE:
                deliberate += 1
                print("deliberate %s: %s (%s)" % (name, "; ".join(why), DELIBERATE[name]))
            else:
                differ += 1
                print("DIFFER %s: %s" % (name, "; ".join(why)))
    finally:
        for s in servers:
            s.stop()
    print("%d same, %d deliberate, %d differ" % (same, deliberate, differ))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
