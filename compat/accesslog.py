"""Access-log lines side by side: gunicorn and ferrocorn serve the same app
(tests/apps/accesslog.py) with the same --access-logformat, get the same
raw requests, and each access-log line must match, apart from the atoms
that differ by nature (the time, the pid, the durations), which are
compared by shape. Standard library only; run by `compat/run.sh --accesslog`.

    python accesslog.py --gunicorn 'PYTHON -m gunicorn' --ferrocorn-bin BIN

Output: `ok NAME` or `FAIL NAME` with both lines; then `N passed, N failed`.
Exit status 1 if any case failed.
"""

import argparse
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(os.path.dirname(HERE), "tests", "apps")

# Everything gunicorn 27 knows, conversions and widths, %%, environ and
# header atoms in odd cases, an unknown atom.
FORMAT = "|".join(
    [
        "%(h)s", "%(l)s", "%(u)s", "%(r)s", "%(r)r", "%(s)s", "%(m)s", "%(U)s",
        "%(q)s", "%(H)s", "%(b)s", "%(B)d", "%(f)s", "%(a)s", "%(a)r", "%(a)a",
        "%({x-dup}i)s", "%({User-Agent}I)r", "%({X-RESP}o)s",
        "%({custom.key}e)s", "%({MIXED_CASE}e)s", "%({an_int}e)03d",
        "%({wsgi.version}e)s", "%({remote_addr}E)s", "%({nope}e)s", "%(zz)s",
        "%%", "%(s)5s", "%(s)-5s", "%(B)05d", "%(B)#x", "%(T).2f",
        # differ by nature: compared by shape below
        "%(t)s", "%(p)s", "%(T)s", "%(M)s", "%(D)s", "%(L)s",
    ]
)
NATURAL = 6  # the trailing atoms above
SHAPES = [
    r"\[\d\d/[A-Z][a-z][a-z]/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]",
    r"<\d+>",
    r"\d+",
    r"\d+",
    r"\d+",
    r"\d+\.\d{6}",
]

H = b"Host: h\r\n"
CASES = [
    ("plain", b"GET /plain?x=1 HTTP/1.1\r\n" + H + b"\r\n"),
    ("quotes in the request line", b'GET /q"uote?a="b" HTTP/1.1\r\n' + H + b"\r\n"),
    ("quotes in the user agent and referer",
     b'GET / HTTP/1.1\r\n' + H + b'User-Agent: say "hi"\r\nReferer: http://x/"y"\r\n\r\n'),
    ("tab and latin-1 bytes in a header",
     b"GET / HTTP/1.1\r\n" + H + b"User-Agent: caf\xe9\t\xff\x80\r\n\r\n"),
    ("backslash and single quotes", b"GET / HTTP/1.1\r\n" + H + b"User-Agent: back\\slash 'sq'\r\n\r\n"),
    ("decoded PATH_INFO", b"GET /p%20c%22%ff?q=%ff HTTP/1.0\r\n\r\n"),
    ("absolute target", b"GET http://abs/x?y HTTP/1.1\r\n" + H + b"\r\n"),
    ("repeated header", b"GET / HTTP/1.1\r\n" + H + b"X-Dup: 1\r\nx-dup: 2\r\n\r\n"),
    ("basic auth", b"GET / HTTP/1.1\r\n" + H + b"Authorization: Basic dXNlcjpwYXNz\r\n\r\n"),
    ("basic auth without padding", b"GET / HTTP/1.1\r\n" + H + b"Authorization: basic dXNlcg\r\n\r\n"),
    ("basic auth not utf-8", b"GET / HTTP/1.1\r\n" + H + b"Authorization: Basic 6Q==\r\n\r\n"),
    ("status from the app", b"GET /s?status=404 HTTP/1.1\r\n" + H + b"\r\n"),
    ("environ rewritten by the app", b"GET /proxied HTTP/1.1\r\n" + H + b"\r\n"),
    ("empty header values", b"GET / HTTP/1.1\r\n" + H + b"User-Agent:\r\nReferer: \r\n\r\n"),
    ("HEAD", b"HEAD / HTTP/1.1\r\n" + H + b"\r\n"),
    ("control byte in a header (400, no line)",
     b"GET /ctl HTTP/1.1\r\n" + H + b"Referer: http://r/\x01\r\n\r\n"),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def send(port, raw):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk


class Served:
    def __init__(self, name, argv, tmp, fmt=FORMAT, log=None, extra=()):
        self.name = name
        self.port = free_port()
        if log is None:
            self.log = os.path.join(tmp, name + ".access.log")
            extra = ["--access-logfile", self.log] + list(extra)
        else:
            self.log = log
        self.err = open(os.path.join(tmp, name + ".error.log"), "wb")
        argv = argv + [
            "-w", "1", "-b", "127.0.0.1:%d" % self.port, "--chdir", APPS,
            "--access-logformat", fmt,
        ] + list(extra) + ["accesslog:app"]
        self.proc = subprocess.Popen(argv, stdout=self.err, stderr=self.err,
                                     start_new_session=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit("%s did not start: %s" % (name, self.tail()))

    def lines(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("utf-8", "replace").splitlines()
        except FileNotFoundError:
            return []

    def line_for(self, raw):
        before = len(self.lines())
        status = send(self.port, raw).split(b"\r\n", 1)[0].decode("latin-1")
        deadline = time.time() + 2
        while time.time() < deadline and len(self.lines()) == before:
            time.sleep(0.05)
        new = self.lines()[before:]
        return status, (new[0] if new else None)

    def tail(self):
        self.err.flush()
        with open(self.err.name, "rb") as f:
            return f.read().decode("utf-8", "replace")[-2000:]

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)


def compare(g, f):
    """None if the lines match, else why not."""
    if g is None or f is None:
        return None if g == f else "only one server wrote a line"
    gp, fp = g.split("|"), f.split("|")
    if len(gp) != len(fp):
        return "different number of fields"
    if gp[:-NATURAL] != fp[:-NATURAL]:
        return "different atoms: " + ", ".join(
            "#%d gunicorn %r ferrocorn %r" % (i, a, b)
            for i, (a, b) in enumerate(zip(gp, fp)) if a != b)
    for shape, a, b in zip(SHAPES, gp[-NATURAL:], fp[-NATURAL:]):
        if not (re.fullmatch(shape, a) and re.fullmatch(shape, b)):
            return "shape %s: gunicorn %r ferrocorn %r" % (shape, a, b)
    return None


LOGCONFIG = """{"root": {"level": "WARNING", "handlers": []},
 "formatters": {"j": {"format": "{\\"logger\\": \\"%%(name)s\\", \\"level\\": \\"%%(levelname)s\\", \\"line\\": \\"%%(message)s\\"}"}},
 "handlers": {"f": {"class": "logging.FileHandler", "filename": "%s", "formatter": "j"}},
 "loggers": {"gunicorn.access": {"handlers": ["f"], "level": "INFO", "propagate": false}}}"""


def logconfig_case(args, tmp):
    """Both servers with --log-config-json: the access line as the
    config's JSON formatter writes it."""
    servers = []
    try:
        for name, argv in (("gunicorn", shlex.split(args.gunicorn)), ("ferrocorn", [args.ferrocorn_bin])):
            out = os.path.join(tmp, name + ".json.log")
            conf = os.path.join(tmp, name + ".logconfig.json")
            with open(conf, "w") as f:
                f.write(LOGCONFIG % out)
            servers.append(Served(name + "-logconfig", argv, tmp, fmt='%(m)s %(U)s %(s)s "%(a)s"',
                                  log=out, extra=["--log-config-json", conf]))
        raw = b'GET /json HTTP/1.1\r\nHost: h\r\nUser-Agent: say "hi"\r\n\r\n'
        return [s.line_for(raw)[1] for s in servers]
    finally:
        for s in servers:
            s.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gunicorn", required=True, help="command that runs gunicorn")
    ap.add_argument("--ferrocorn-bin", required=True)
    ap.add_argument("-v", "--verbose", action="store_true", help="print both lines")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="compat-accesslog-")
    servers = [Served("gunicorn", shlex.split(args.gunicorn), tmp),
               Served("ferrocorn", [args.ferrocorn_bin], tmp)]
    passed = failed = 0
    try:
        for name, raw in CASES:
            (gs, gl), (fs, fl) = (s.line_for(raw) for s in servers)
            why = compare(gl, fl) or (None if gs.split()[1:2] == fs.split()[1:2]
                                      else "status %r vs %r" % (gs, fs))
            if why:
                failed += 1
                print("FAIL accesslog %s: %s" % (name, why))
            else:
                passed += 1
                print("ok accesslog %s" % name)
            if why or args.verbose:
                print("#  gunicorn:  %s" % gl)
                print("#  ferrocorn: %s" % fl)
        g, f = logconfig_case(args, tmp)
        if g == f and g:
            passed += 1
            print("ok accesslog through --log-config-json")
        else:
            failed += 1
            print("FAIL accesslog through --log-config-json")
        if g != f or not g or args.verbose:
            print("#  gunicorn:  %s" % g)
            print("#  ferrocorn: %s" % f)
        unknown = [l for l in servers[1].tail().splitlines() if "unknown atom" in l]
        if len(unknown) == 1:
            passed += 1
            print("ok accesslog one warning at start for %(zz)")
        else:
            failed += 1
            print("FAIL accesslog one warning at start: %r" % unknown)
    finally:
        for s in servers:
            s.stop()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
