"""A TLS client for tests/tls.rs, on Python's ssl module (a real client).

    python3 tls_client.py PORT [options] REQUEST...

Each REQUEST is METHOD:PATH[:BODYLEN] (a body of BODYLEN pattern bytes); all
go on one connection, written at once (pipelined) with --pipeline, else one
after another (keep-alive). --ws PATH does a WebSocket handshake and echoes
one text message instead. Prints one JSON object: the negotiated version,
cipher, ALPN, the SHA-256 of the server's certificate, and for each response
its status, headers and body (or its SHA-256 with --digest), or "error".
"""

import argparse
import base64
import hashlib
import json
import os
import socket
import ssl
import sys
import time


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("requests", nargs="*")
    p.add_argument("--ca", help="verify the server against this CA file")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--min", choices=["1.2", "1.3"])
    p.add_argument("--max", choices=["1.2", "1.3"])
    p.add_argument("--ciphers")
    p.add_argument("--alpn")
    p.add_argument("--proxy", help="a PROXY v1 line sent before the handshake")
    p.add_argument("--pipeline", action="store_true")
    p.add_argument("--digest", action="store_true")
    p.add_argument("--ws")
    p.add_argument("--hold", type=float, default=0.0,
                   help="seconds to stay connected before the requests")
    return p.parse_intermixed_args()


VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def context(a):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if a.ca:
        ctx.load_verify_locations(a.ca)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if a.cert:
        ctx.load_cert_chain(a.cert, a.key)
    if a.min:
        ctx.minimum_version = VERSIONS[a.min]
    if a.max:
        ctx.maximum_version = VERSIONS[a.max]
    if a.ciphers:
        ctx.set_ciphers(a.ciphers)
    if a.alpn:
        ctx.set_alpn_protocols(a.alpn.split(","))
    return ctx


def body_bytes(n):
    return bytes((i * 31 + 7) % 251 for i in range(n))


def read_response(f, head_only=False):
    status_line = f.readline()
    if not status_line:
        raise EOFError("connection closed before a response")
    status = int(status_line.split()[1])
    headers = {}
    while True:
        line = f.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        k, _, v = line.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    if head_only or status in (101, 204, 304):
        return status, headers, b""
    if "content-length" in headers:
        body = f.read(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int(f.readline().split(b";")[0], 16)
            if size == 0:
                f.readline()
                break
            body += f.read(size)
            f.readline()
    else:
        body = f.read()
    return status, headers, body


def websocket(s, f, path):
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n" % (path, key)).encode())
    status, headers, _ = read_response(f, head_only=True)
    out = {"status": status}
    if status != 101:
        return out
    msg = b"hello over wss"
    mask = os.urandom(4)
    s.sendall(bytes([0x81, 0x80 | len(msg)]) + mask
              + bytes(b ^ mask[i % 4] for i, b in enumerate(msg)))
    b0, b1 = f.read(2)
    n = b1 & 0x7F
    out["echo"] = f.read(n).decode()
    # Close: 1000.
    s.sendall(bytes([0x88, 0x82]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(b"\x03\xe8")))
    return out


def main():
    a = parse_args()
    out = {}
    try:
        raw = socket.create_connection(("127.0.0.1", a.port), timeout=10)
        if a.proxy:
            raw.sendall(a.proxy.encode() + b"\r\n")
        if a.hold:
            time.sleep(a.hold)
        s = context(a).wrap_socket(raw, server_hostname="localhost")
        out["version"] = s.version()
        out["cipher"] = s.cipher()[0]
        out["alpn"] = s.selected_alpn_protocol()
        out["cert_sha256"] = hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()
        f = s.makefile("rb")
        if a.ws:
            out["ws"] = websocket(s, f, a.ws)
            print(json.dumps(out))
            return
        reqs = []
        for r in a.requests:
            parts = r.split(":")
            method, path = parts[0], parts[1]
            body = body_bytes(int(parts[2])) if len(parts) > 2 else b""
            head = "%s %s HTTP/1.1\r\nHost: localhost\r\n" % (method, path)
            if body or method in ("POST", "PUT"):
                head += "Content-Length: %d\r\n" % len(body)
            reqs.append((method, head.encode() + b"\r\n" + body))
        if a.pipeline:
            s.sendall(b"".join(r for _, r in reqs))
        responses = []
        for method, r in reqs:
            if not a.pipeline:
                s.sendall(r)
            status, headers, body = read_response(f, head_only=method == "HEAD")
            item = {"status": status, "headers": headers}
            if a.digest:
                item["sha256"] = hashlib.sha256(body).hexdigest()
                item["len"] = len(body)
            else:
                item["body"] = body.decode("utf-8", "replace")
            responses.append(item)
        out["responses"] = responses
    except (OSError, EOFError, ValueError) as e:
        out["error"] = "%s: %s" % (type(e).__name__, e)
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
