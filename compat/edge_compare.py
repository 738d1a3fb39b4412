#!/usr/bin/env python3
"""PROXY protocol, uwsgi, TLS and HTTP/1.1-to-h2c upgrade requests through
gunicorn and ferrocorn side by side: the same hand-encoded bytes to both, the status and the environ
(tests/apps/edge.py) compared key by key. Differences the README documents
as deliberate are printed as such; anything else fails.

    compat/run.sh --edge [-v]          # gunicorn from compat's venv
    compat/edge_compare.py --gunicorn "/path/to/venv/bin/python -m gunicorn" \
        [--ferrocorn-bin target/debug/ferrocorn] [-v]

Standard library only; gunicorn comes from a venv (compat/run.sh --edge
makes compat/.venv with requirements-gunicorn.txt).
"""

import argparse
import json
import os
import shlex
import socket
import struct
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(HERE, "..", "tests", "apps")

# Keys where the two servers differ on purpose (README, "Behind nginx" and
# "Behind HAProxy"): key -> why.
DELIBERATE = {
    "uwsgi": {
        "REMOTE_ADDR": "ferrocorn takes the proxy's REMOTE_ADDR var (the client); gunicorn the socket peer",
        "REMOTE_PORT": "the proxy's REMOTE_PORT var, as REMOTE_ADDR",
        "SERVER_NAME": "the proxy's SERVER_NAME var; gunicorn the listening address",
        "SERVER_PORT": "the proxy's SERVER_PORT var; gunicorn the listening port",
        "SERVER_PROTOCOL": "the proxy's SERVER_PROTOCOL var; gunicorn says HTTP/1.1",
        "PATH_INFO": "nginx decoded it already; gunicorn decodes it a second time",
        "RAW_URI": "REQUEST_URI, as the client sent it; gunicorn rebuilds it from PATH_INFO",
        "*other vars": "ferrocorn passes every var (DOCUMENT_ROOT, REQUEST_URI, HTTPS...) as uWSGI does; gunicorn drops them",
    },
    "proxy": {
        "REMOTE_ADDR": "LOCAL/UNSPEC: ferrocorn keeps the real peer; gunicorn sets None",
        "REMOTE_PORT": "LOCAL/UNSPEC: the real peer's; gunicorn 'None'",
        "PROXY_ADDR": "LOCAL/UNSPEC: absent; gunicorn None",
        "PROXY_PORT": "LOCAL/UNSPEC: absent; gunicorn 'None'",
        "PROXY_PROTOCOL": "v1 UNKNOWN is accepted (as the specification says)",
    },
}
# Whole cases that differ on purpose: case -> why.
DELIBERATE_CASES = {
    "v1 then TLS": "the PROXY header comes before the TLS handshake, as HAProxy (send-proxy with ssl) and load balancers send it; gunicorn looks for it inside TLS and fails the handshake",
    "v2 then TLS": "as v1 then TLS",
    "v2 UNSPEC": "accepted with the real endpoints, as the specification allows; gunicorn answers 500",
    "v1 UNKNOWN": "accepted with the real endpoints, as the specification says; gunicorn answers 400",
    "v2 bad version": "400, as for a malformed v1 line; gunicorn answers 500 (its handler does not know the error)",
    "modifier1 5": "501, the status gunicorn's own error carries; gunicorn's handler answers 500",
    "truncated vars": "400, the status gunicorn's own error carries; gunicorn's handler answers 500",
    "decoded %": "PATH_INFO as nginx decoded it; gunicorn decodes it a second time",
    "absolute-form": "upgraded, RAW_URI the path and query: HTTP/2's :path is origin form, the authority goes to :authority; gunicorn keeps the absolute URI in RAW_URI",
    "chunked body": "served HTTP/1.1: ferrocorn upgrades only a body of known length (at most 64 KiB); gunicorn reads a chunked one whole into memory first",
}
IGNORED = {"SERVER_SOFTWARE"}
# Ports a case itself names; any other port (the servers' own, the test's
# ephemeral ones) differs between the two runs by nature.
NAMED_PORTS = {"56324", "443", "4000", "8443", "61000", "80", "5555", "40001"}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start(cmd, port):
    log = tempfile.TemporaryFile()
    p = subprocess.Popen(cmd, cwd=APPS, stdout=log, stderr=log, start_new_session=True)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            time.sleep(0.3)
            return p
        except OSError:
            time.sleep(0.1)
    os.killpg(p.pid, 9)
    p.wait(10)
    log.seek(0)
    sys.exit("server did not start: %s\n%s" % (cmd, log.read().decode(errors="replace")))


CERTS = os.path.join(APPS, "tls")


def send(port, data, tls=False):
    s = socket.create_connection(("127.0.0.1", port), 5)
    if tls:
        # A PROXY header (bytes before the first b"\x00TLS\x00") goes in
        # the clear, the rest over TLS.
        before, sep, data = data.rpartition(b"\x00TLS\x00")
        s.sendall(before)
        ctx = ssl.create_default_context(cafile=os.path.join(CERTS, "ca.pem"))
        try:
            s = ctx.wrap_socket(s, server_hostname="localhost")
        except (ssl.SSLError, OSError):
            return -1, {}
    s.sendall(data)
    out = read_head(s)
    if b"\r\n\r\n" in out:
        out = read_body(s, out)
    s.close()
    head, _, body = out.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/") else 0
    try:
        env = json.loads(body) if status == 200 else {}
    except ValueError:
        env = {}
    return status, env


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# RFC 7541's static table, the :status entries (what both servers send).
H2_STATUS = {8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500}


def h2c_send(port, data):
    """An HTTP/1.1 request that may ask for Upgrade: h2c. Answered HTTP/1.1,
    as send(); answered 101, the client's preface and SETTINGS follow and
    stream 1's answer is read from the frames: status "101 h2 200" (the
    :status from its first header byte; both servers index it), and the
    environ from its DATA."""
    s = socket.create_connection(("127.0.0.1", port), 5)
    s.sendall(data)
    buf = read_head(s)
    if not buf.startswith(b"HTTP/1.1 101"):
        buf = read_body(s, buf)
        s.close()
        return send_rest(port, data, buf)
    buf = buf.partition(b"\r\n\r\n")[2]
    s.sendall(H2_PREFACE + bytes(9)[:3] + b"\x04" + bytes(5))
    status, body, done = "101 h2 ?", b"", False
    try:
        while not done:
            while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
                b = s.recv(65536)
                if not b:
                    raise socket.timeout
                buf += b
            n = int.from_bytes(buf[:3], "big")
            kind, flags, stream = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            payload, buf = buf[9:9 + n], buf[9 + n:]
            if kind == 4 and not flags & 1:
                s.sendall(b"\x00\x00\x00\x04\x01\x00\x00\x00\x00")
            if stream != 1 or kind not in (0, 1):
                continue
            if kind == 1 and payload:
                first = payload[5:] if flags & 0x20 else payload
                status = "101 h2 %s" % H2_STATUS.get(first[0] & 0x7F if first[0] & 0x80 else -1, "?")
            if kind == 0:
                body += payload
            done = bool(flags & 1)
    except socket.timeout:
        pass
    s.close()
    try:
        env = json.loads(body) if status == "101 h2 200" else {}
    except ValueError:
        env = {}
    return status, env


def read_head(s):
    """What the peer sends until the end of a response head (or EOF, or
    the socket's timeout)."""
    out = b""
    try:
        while b"\r\n\r\n" not in out:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except socket.timeout:
        pass
    return out


def read_body(s, buf):
    """Read on until the body after the head in buf is whole: its
    Content-Length, else to EOF (the head and the body may come in
    separate segments)."""
    head, _, body = buf.partition(b"\r\n\r\n")
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    try:
        while length is None or len(body) < length:
            b = s.recv(65536)
            if not b:
                break
            body += b
    except socket.timeout:
        pass
    return head + b"\r\n\r\n" + body


def send_rest(port, data, buf):
    """The HTTP/1.1 answer whose first bytes are buf, as send() reads it."""
    head, _, body = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/") else 0
    try:
        env = json.loads(body) if status == 200 else {}
    except ValueError:
        env = {}
    return status, env


def curl_h2(port, path):
    """curl --http2 on an http:// URL: it asks for the upgrade itself."""
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--http2", "-w", "\n%{http_version} %{response_code}",
         "http://127.0.0.1:%d%s" % (port, path)],
        capture_output=True, text=True,
    ).stdout
    body, _, tail = out.rpartition("\n")
    try:
        env = json.loads(body)
    except ValueError:
        env = {}
    return "curl HTTP/" + tail, env


def uwsgi(pairs, body=b""):
    data = b""
    for k, v in pairs:
        for s in (k.encode("latin-1"), v.encode("latin-1")):
            data += struct.pack("<H", len(s)) + s
    return b"\0" + struct.pack("<H", len(data)) + b"\0" + data + body


SIG = b"\r\n\r\n\0\r\nQUIT\n"


def v2(cmd, fam, body):
    return SIG + bytes([cmd, fam]) + struct.pack(">H", len(body)) + body


GET = b"GET /x?q=1 HTTP/1.1\r\nHost: t\r\n\r\n"
NGINX = [
    ("QUERY_STRING", "a=1"),
    ("REQUEST_METHOD", "POST"),
    ("CONTENT_TYPE", "text/plain"),
    ("CONTENT_LENGTH", "5"),
    ("REQUEST_URI", "/p%41th?a=1"),
    ("PATH_INFO", "/pAth"),
    ("DOCUMENT_ROOT", "/srv/www"),
    ("SERVER_PROTOCOL", "HTTP/1.1"),
    ("REQUEST_SCHEME", "http"),
    ("REMOTE_ADDR", "192.0.2.33"),
    ("REMOTE_PORT", "40001"),
    ("SERVER_PORT", "80"),
    ("SERVER_NAME", "example.org"),
    ("HTTP_HOST", "example.org"),
    ("HTTP_X_THING", "yes"),
]
UP = (b"Host: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
      b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n")


def upgrade(line, extra=b"", body=b"", head=UP):
    return line + b"\r\n" + head + extra + b"\r\n" + body


CASES = {
    "proxy": [
        ("v1 TCP4", b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n" + GET),
        ("v1 TCP6", b"PROXY TCP6 2001:db8::9 ::1 4000 8443\r\n" + GET),
        ("v2 TCP4 + TLV", v2(0x21, 0x11, bytes([203, 0, 113, 5, 10, 0, 0, 1]) + struct.pack(">HH", 61000, 80) + b"\x04\x00\x01\x00") + GET),
        ("v2 TCP6", v2(0x21, 0x21, socket.inet_pton(socket.AF_INET6, "2001:db8::77") + socket.inet_pton(socket.AF_INET6, "fd00::1") + struct.pack(">HH", 5555, 443)) + GET),
        ("v2 LOCAL", v2(0x20, 0x00, b"") + GET),
        ("v2 UNSPEC", v2(0x21, 0x00, b"") + GET),
        ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n" + GET),
        ("no header", GET),
        ("v1 malformed", b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n" + GET),
        ("v2 bad version", v2(0x11, 0x11, bytes(12)) + GET),
    ],
    "tls": [
        ("GET", GET),
        ("POST body", b"POST /f?x=%41 HTTP/1.1\r\nHost: h:8443\r\nContent-Length: 5\r\n\r\nhello"),
        ("X-Forwarded-Proto http", b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: http\r\n\r\n"),
        ("bad request", b"GET /\x01 HTTP/1.1\r\n\r\n"),
    ],
    "tls+proxy": [
        ("v1 then TLS", b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n\x00TLS\x00" + GET),
        ("v2 then TLS", v2(0x21, 0x11, bytes([203, 0, 113, 5, 10, 0, 0, 1]) + struct.pack(">HH", 61000, 80)) + b"\x00TLS\x00" + GET),
    ],
    "uwsgi": [
        ("nginx POST", uwsgi(NGINX, b"hello")),
        ("bare GET", uwsgi([("PATH_INFO", "/g"), ("REQUEST_METHOD", "GET")])),
        ("HTTPS on", uwsgi([("PATH_INFO", "/s"), ("HTTPS", "on")])),
        ("modifier1 5", b"\x05" + uwsgi([("PATH_INFO", "/")])[1:]),
        ("truncated vars", b"\x00\x03\x00\x00\x09\x00a"),
        # The client asked for /a%2541: nginx's PATH_INFO is /a%41.
        ("decoded %", uwsgi([("PATH_INFO", "/a%41"), ("REQUEST_URI", "/a%2541")])),
    ],
    "h2c": [
        ("curl --http2", ["/c?x=1"]),
        ("GET", upgrade(b"GET /x?q=1 HTTP/1.1", b"X-Thing: yes\r\nCookie: a=1\r\n")),
        ("POST body", upgrade(b"POST /p HTTP/1.1", b"Content-Type: text/plain\r\nContent-Length: 5\r\n", b"hello")),
        ("OPTIONS *", upgrade(b"OPTIONS * HTTP/1.1")),
        ("absolute-form", upgrade(b"GET http://t/x?y=1 HTTP/1.1")),
        ("chunked body", upgrade(b"POST /p HTTP/1.1", b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n")),
        ("body over 64 KiB", upgrade(b"POST /p HTTP/1.1", b"Content-Length: 65537\r\n", b"x" * 65537)),
        ("HTTP/1.0", upgrade(b"GET /x HTTP/1.0")),
        ("no HTTP2-Settings", upgrade(b"GET /x HTTP/1.1", head=UP.replace(b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n", b""))),
        ("two HTTP2-Settings", upgrade(b"GET /x HTTP/1.1", b"HTTP2-Settings: AAMAAABk\r\n")),
        ("Connection lacks it", upgrade(b"GET /x HTTP/1.1", head=UP.replace(b"Upgrade, HTTP2-Settings", b"Upgrade"))),
        ("settings not base64", upgrade(b"GET /x HTTP/1.1", head=UP.replace(b"AAMAAABkAAQAAP__", b"!!!!"))),
        ("settings length 5", upgrade(b"GET /x HTTP/1.1", head=UP.replace(b"AAMAAABkAAQAAP__", b"AAMAAAB"))),
        ("ENABLE_PUSH 2", upgrade(b"GET /x HTTP/1.1", head=UP.replace(b"AAMAAABkAAQAAP__", b"AAIAAAAC"))),
        ("Upgrade websocket", upgrade(b"GET /x HTTP/1.1", head=UP.replace(b"Upgrade: h2c", b"Upgrade: websocket"))),
    ],
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gunicorn", required=True)
    ap.add_argument("--ferrocorn-bin", dest="ferrocorn", default=os.path.join(HERE, "..", "target", "debug", "ferrocorn"))
    ap.add_argument("-v", action="store_true")
    a = ap.parse_args()
    failed = 0
    for kind, cases in CASES.items():
        tls = ["--certfile", os.path.join(CERTS, "server.pem"), "--keyfile", os.path.join(CERTS, "server-key.pem")]
        flags = {
            "proxy": ["--proxy-protocol", "auto"],
            "tls": tls,
            "tls+proxy": ["--proxy-protocol", "auto", *tls],
            "uwsgi": ["--protocol", "uwsgi"],
            # gunicorn upgrades in its gthread worker (its sync worker has
            # no HTTP/2); ferrocorn in every class.
            "h2c": ["-k", "gthread", "--http-protocols", "h1,h2", "--http2-cleartext", "upgrade"],
        }[kind]
        gp, fp = free_port(), free_port()
        started = []
        try:
            g = start([*shlex.split(a.gunicorn), "-b", "127.0.0.1:%d" % gp, *flags, "edge:app"], gp)
            started.append(g)
            f = start([a.ferrocorn, "-b", "127.0.0.1:%d" % fp, *flags, "edge:app"], fp)
            started.append(f)
            for name, data in cases:
                secure = kind.startswith("tls")
                if kind != "h2c":
                    (gs, ge), (fs, fe) = send(gp, data, secure), send(fp, data, secure)
                elif isinstance(data, list):
                    (gs, ge), (fs, fe) = curl_h2(gp, data[0]), curl_h2(fp, data[0])
                else:
                    (gs, ge), (fs, fe) = h2c_send(gp, data), h2c_send(fp, data)
                diffs = []
                if gs != fs:
                    diffs.append(("status", gs, fs))
                for k in sorted(set(ge) | set(fe)):
                    gv, fv = ge.get(k), fe.get(k)
                    if k in IGNORED or gv == fv:
                        continue
                    if k.endswith("_PORT") and gv and fv and gv not in NAMED_PORTS and fv not in NAMED_PORTS:
                        continue
                    if k == "HTTP_HOST" and gv and fv and gv.startswith("127.0.0.1:") and fv.startswith("127.0.0.1:"):
                        continue
                    diffs.append((k, gv, fv))
                print("%-6s %-16s %s" % (kind, name, "same" if not diffs else "differs:"))
                if not a.v and diffs and all(
                    DELIBERATE_CASES.get(name) or DELIBERATE.get(kind, {}).get(k) or (kind == "uwsgi" and gv is None)
                    for k, gv, _ in diffs
                ):
                    print("    (deliberate: %s)" % (DELIBERATE_CASES.get(name) or ", ".join(k for k, _, _ in diffs)))
                    continue
                for k, gv, fv in diffs:
                    why = DELIBERATE_CASES.get(name) or DELIBERATE.get(kind, {}).get(k)
                    if why is None and kind == "uwsgi" and gv is None:
                        why = DELIBERATE[kind]["*other vars"]
                    print("    %-16s gunicorn=%r ferrocorn=%r  %s" % (k, gv, fv, "(deliberate: %s)" % why if why else "UNEXPECTED"))
                    failed += why is None
        finally:
            # Both servers stop, whatever failed (the second one's start too).
            for p in started:
                os.killpg(p.pid, 15)
                p.wait(10)
    print("edge_compare: %s" % ("ok" if not failed else "%d unexpected differences" % failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
