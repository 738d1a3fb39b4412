"""Write the seed corpus under fuzz/corpus/ (committed; rerun after changing
the cases). Head seeds: the 76 raw requests of compat/differential.py, each
prefixed with the two settings bytes the `head` target reads (limits,
leniency); the same requests as they are for `differential`; chunked bodies
written here for `chunked` (prefixed with the split seed byte); PROXY
headers for `proxy_header` (prefixed with the mode byte) and uwsgi packets
for `uwsgi_packet`, written here too.
Standard library only: python3 fuzz/make_corpus.py
"""

import hashlib
import os
import shutil
import socket
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "compat"))
from differential import CASES  # noqa: E402

CHUNKED = [
    b"0\r\n\r\n",
    b"5\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    b"A\r\n0123456789\r\n0\r\n\r\n",
    b"a;name=value\r\n0123456789\r\n0\r\n\r\n",
    b"3;a;b=\"q\\\"x\"\r\nabc\r\n0\r\n\r\n",
    b"3 ;a\r\nabc\r\n0\r\n\r\n",
    b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n",
    b"3\r\nabc\r\n0\r\nContent-Length: 1\r\n\r\n",
    b"3\r\nabc\r\n0\r\nContent-Type: a\r\ncontent-type: b\r\n\r\n",
    b"3\r\nabc\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"0000000000000003\r\nabc\r\n0\r\n\r\n",
    b"fffffffffffffffff\r\n",
    b"20000000000001\r\n",
    b"zz\r\na\r\n0\r\n\r\n",
    b"3\nabc\n0\n\n",
    b"3\r\nabcd\r\n0\r\n\r\n",
    b"-1\r\na\r\n0\r\n\r\n",
    b"0x3\r\nabc\r\n0\r\n\r\n",
    b"\r\n3\r\nabc\r\n0\r\n\r\n",
    b"3\r\nabc\r\n0\r\n\r",
    b"3\r\nabc",
    b"1\r\n\xff\r\n0\r\n X: folded\r\n\r\n",
]


def write(target, blobs):
    d = os.path.join(HERE, "corpus", target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for b in blobs:
        name = hashlib.sha1(b).hexdigest()[:16]
        with open(os.path.join(d, name), "wb") as f:
            f.write(b)


raw = [req for _, req in CASES]
# Settings bytes: defaults strict, defaults with every leniency, tiny limits,
# the 0 values; cycled over the requests.
prefixes = [b"\x00\x00", b"\x00\x1f", b"\x01\x00", b"\x02\x00", b"\x03\x05"]
write("head", [prefixes[i % len(prefixes)] + r for i, r in enumerate(raw)])
write("differential", raw)
write("chunked", [bytes([i * 37 % 256]) + c for i, c in enumerate(CHUNKED)])

SIG = b"\r\n\r\n\0\r\nQUIT\n"


def v2(cmd, fam, body):
    return SIG + bytes([cmd, fam]) + struct.pack(">H", len(body)) + body


A4 = bytes([192, 0, 2, 7, 10, 0, 0, 1]) + struct.pack(">HH", 56324, 80)
A6 = socket.inet_pton(socket.AF_INET6, "2001:db8::7") + socket.inet_pton(socket.AF_INET6, "::1") + struct.pack(">HH", 1, 2)
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
PROXY = [
    b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n" + GET,
    b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\n",
    b"PROXY UNKNOWN\r\n",
    b"PROXY UNKNOWN ffff::1 whatever\r\n",
    b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n",
    b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n",
    b"PROXY " + b"x" * 120,
    v2(0x21, 0x11, A4) + GET,
    v2(0x21, 0x11, A4 + b"\x01\x00\x02h2\x04\x00\x01\x00"),
    v2(0x21, 0x21, A6),
    v2(0x20, 0x00, b""),
    v2(0x20, 0x11, A4),
    v2(0x21, 0x00, b""),
    v2(0x21, 0x31, bytes(216)),
    v2(0x11, 0x11, A4),
    v2(0x21, 0x12, A4),
    v2(0x21, 0x11, A4[:5]),
    SIG[:7],
    GET,
]


def uwsgi(pairs, body=b"", mod1=0):
    data = b""
    for k, v in pairs:
        for x in (k.encode("latin-1"), v.encode("latin-1")):
            data += struct.pack("<H", len(x)) + x
    return bytes([mod1]) + struct.pack("<H", len(data)) + b"\0" + data + body


NGINX = [
    ("QUERY_STRING", "a=1"), ("REQUEST_METHOD", "POST"), ("CONTENT_TYPE", "text/plain"),
    ("CONTENT_LENGTH", "5"), ("REQUEST_URI", "/p%41th?a=1"), ("PATH_INFO", "/pAth"),
    ("SERVER_PROTOCOL", "HTTP/1.1"), ("REMOTE_ADDR", "192.0.2.9"), ("REMOTE_PORT", "40001"),
    ("SERVER_PORT", "80"), ("SERVER_NAME", "example.org"), ("HTTP_HOST", "example.org"),
    ("HTTP_CONTENT_LENGTH", "5"), ("HTTPS", "on"),
]
UWSGI = [
    uwsgi(NGINX, b"hello"),
    uwsgi([]),
    uwsgi([("PATH_INFO", "/a\nb%\xe9")]),
    uwsgi([("CONTENT_LENGTH", "x")]),
    uwsgi([("CONTENT_LENGTH", "1"), ("CONTENT_LENGTH", "")]),
    uwsgi([("HTTP_X", "a\r\nb")]),
    uwsgi([("REQUEST_METHOD", "")]),
    uwsgi([("PATH_INFO", "/")], mod1=5),
    b"\x00\x03\x00\x00\x09\x00a",
    GET,
]
write("proxy_header", [bytes([i % 4]) + p for i, p in enumerate(PROXY)] + [b"\x03" + p for p in PROXY[:4]])
write("uwsgi_packet", UWSGI)
print({t: len(os.listdir(os.path.join(HERE, "corpus", t))) for t in ("head", "differential", "chunked", "proxy_header", "uwsgi_packet")})
