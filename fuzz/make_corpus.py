"""Write the seed corpus under fuzz/corpus/ (committed; rerun after changing
the cases). Head seeds: the 76 raw requests of compat/differential.py, each
prefixed with the two settings bytes the `head` target reads (limits,
leniency); the same requests as they are for `differential`; chunked bodies
written here for `chunked` (prefixed with the split seed byte).
Standard library only: python3 fuzz/make_corpus.py
"""

import hashlib
import os
import shutil
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
print({t: len(os.listdir(os.path.join(HERE, "corpus", t))) for t in ("head", "differential", "chunked")})
