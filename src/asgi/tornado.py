"""-k tornado: a tornado.web.Application (Tornado 6, which runs on asyncio)
served through this worker's ASGI machinery.

HTTP requests are fed to the application's own delegate (start_request,
headers_received, data_received, finish), and what its handlers write goes
out through ASGI `send`, in order.

WebSocketHandler sessions arrive as ASGI `websocket` scopes. The handler
runs as under Tornado's own server (get(), check_origin, select_subprotocol,
open, on_message, on_ping, on_pong, on_close, write_message, ping, close,
the ping interval and timeout settings), but the frames are read, written,
masked and compressed by the Rust codec: the handler's protocol object is
one made here over ASGI `receive`/`send`, not Tornado's own, which would
need the raw socket. A handler that answers anything but 101 (400, 403,
426, a redirect, an error page) is sent as an HTTP response through the
`websocket.http.response` extension.
"""

import asyncio
import sys

from tornado import httputil
from tornado import websocket as _tws
from tornado.escape import json_encode


class _Context:
    def __init__(self, scope):
        client = scope.get("client") or ("", 0)
        self.remote_ip = client[0]
        self.protocol = "https" if scope.get("scheme") in ("https", "wss") else "http"
        self.address = tuple(client)


class _Sender:
    """Keeps `send` calls in order while handlers treat writes as
    fire-and-forget (Tornado's writes return optional futures)."""

    def __init__(self, send):
        self._send = send
        self._last = None

    def queue(self, message):
        prev = self._last

        async def run():
            if prev is not None:
                try:
                    await prev
                except Exception:
                    pass
            await self._send(message)

        self._last = asyncio.ensure_future(run())
        # Writes are fire-and-forget for most handlers: a failed one (the
        # client left) is seen by whoever awaits it, and logged by no one.
        self._last.add_done_callback(_retrieve)
        return self._last

    async def drained(self):
        if self._last is not None:
            try:
                await self._last
            except Exception:
                pass


def _retrieve(fut):
    if not fut.cancelled():
        fut.exception()


def _raw_headers(headers, skip=()):
    return [
        (k.lower().encode("latin-1"), str(v).encode("latin-1"))
        for k, v in headers.get_all()
        if k.lower() not in skip
    ]


class Connection(httputil.HTTPConnection):
    """One HTTP request's connection, as a Tornado handler sees it."""

    # The ASGI messages a response goes out as.
    _response = "http.response"

    def __init__(self, scope, send):
        self.context = _Context(scope)
        self._out = _Sender(send)
        self._close_callback = None
        self.finished = asyncio.Event()

    def set_close_callback(self, callback):
        self._close_callback = callback

    def write_headers(self, start_line, headers, chunk=None):
        fut = self._out.queue(
            {
                "type": self._response + ".start",
                "status": start_line.code,
                "headers": _raw_headers(headers),
            }
        )
        if chunk:
            fut = self.write(chunk)
        return fut

    def write(self, chunk, callback=None):
        return self._out.queue(
            {"type": self._response + ".body", "body": bytes(chunk), "more_body": True}
        )

    def finish(self):
        self._out.queue({"type": self._response + ".body", "body": b"", "more_body": False})
        self.finished.set()

    async def drained(self):
        await self._out.drained()

    def disconnected(self):
        cb, self._close_callback = self._close_callback, None
        if cb is not None:
            cb()


# Headers of a handler's 101 that the Rust side writes itself.
_HANDSHAKE_HEADERS = frozenset(
    (
        "upgrade",
        "connection",
        "sec-websocket-accept",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
        "content-length",
        "content-type",
        "transfer-encoding",
    )
)


class _Stream:
    """What a handler's `detach()` returns. Only this module's protocol
    uses it; Tornado's own WebSocketProtocol13 (from a handler that
    overrides get_websocket_protocol) would read raw frames from it, which
    this server does not hand out."""

    def __init__(self, conn):
        self._conn = conn

    def closed(self):
        return self._conn.over or self._conn.close_sent

    def close(self, exc_info=False):
        self._conn.abort()

    def set_nodelay(self, value):
        # Every connection already has TCP_NODELAY set by the server.
        pass

    def __getattr__(self, name):
        raise RuntimeError(
            "ferrocorn -k tornado: WebSocket frames are handled by the server; "
            f"a handler's own protocol cannot use the stream ({name})"
        )


class WsConnection(Connection):
    """A `websocket` scope's connection: a 101 from the handler becomes
    `websocket.accept`, anything else an HTTP response through the
    `websocket.http.response` extension."""

    _response = "websocket.http.response"

    def __init__(self, scope, receive, send):
        super().__init__(scope, send)
        self.receive = receive
        self.accepted = False
        self.over = False
        self.close_sent = False
        self.session_done = asyncio.Event()

    def write_headers(self, start_line, headers, chunk=None):
        if start_line.code == 101:
            self.accepted = True
            sub = headers.get("Sec-WebSocket-Protocol")
            return self._out.queue(
                {
                    "type": "websocket.accept",
                    "subprotocol": sub or None,
                    "headers": _raw_headers(headers, _HANDSHAKE_HEADERS),
                    "ferrocorn.control_frames": True,
                }
            )
        return super().write_headers(start_line, headers, chunk)

    def finish(self):
        if self.accepted:
            self.finished.set()
        else:
            super().finish()
            self.end()

    def detach(self):
        return _Stream(self)

    def send(self, message):
        return self._out.queue(message)

    def close(self, code, reason):
        if self.close_sent or self.over:
            return
        self.close_sent = True
        message = {"type": "websocket.close", "code": code or 1000}
        if reason:
            message["reason"] = reason
        self._out.queue(message)

    def abort(self):
        """Tornado's stream.close(): close with 1011 now; the session ends
        when the server reports `websocket.disconnect` to the receive loop
        (at once if the client is gone, after the close handshake or its
        timeout otherwise)."""
        self.close(1011, None)

    def end(self):
        self.over = True
        self.session_done.set()


class Protocol(_tws.WebSocketProtocol):
    """A WebSocketHandler's protocol object over ASGI messages."""

    def __init__(self, handler, conn, params):
        super().__init__(handler)
        self.conn = conn
        self.params = params
        self._selected = None
        self._received_pong = False
        self._ping_task = None
        self.close_code = None
        self.close_reason = None

    @property
    def selected_subprotocol(self):
        return self._selected

    async def accept_connection(self, handler):
        headers = handler.request.headers
        fields = ("Host", "Sec-Websocket-Key", "Sec-Websocket-Version")
        if not all(headers.get(f) for f in fields):
            handler.set_status(400)
            handler.finish("Missing/Invalid WebSocket headers")
            return
        offered = headers.get("Sec-WebSocket-Protocol")
        subprotocols = [s.strip() for s in offered.split(",")] if offered else []
        self._selected = handler.select_subprotocol(subprotocols)
        if self._selected:
            if self._selected not in subprotocols:
                raise ValueError(
                    f"select_subprotocol returned {self._selected!r}, not offered"
                )
            handler.set_header("Sec-WebSocket-Protocol", self._selected)
        handler.clear_header("Content-Type")
        handler.set_status(101)
        handler.set_header("Upgrade", "websocket")
        handler.set_header("Connection", "Upgrade")
        handler.finish()
        self.stream = handler._detach_stream()
        self.start_pinging()
        try:
            opened = handler.open(*handler.open_args, **handler.open_kwargs)
            if opened is not None:
                await opened
        except Exception:
            handler.log_exception(*sys.exc_info())
            self._abort()
        # Until `websocket.disconnect`, which ends the session and calls
        # on_close (after a failed open too, as Tornado does).
        await self._receive_frame_loop()

    async def _receive_frame_loop(self):
        try:
            while True:
                m = await self.conn.receive()
                kind = m["type"]
                if kind == "websocket.receive":
                    if self.client_terminated:
                        continue
                    data = m.get("text")
                    if data is None:
                        data = m.get("bytes") or b""
                    if len(data) > self.params.max_message_size:
                        self.close(1009, "message too big")
                        self._abort()
                        continue
                    r = self._run_callback(self.handler.on_message, data)
                    if r is not None:
                        await r
                elif kind == "ferrocorn.websocket.ping":
                    self._run_callback(self.handler.on_ping, m.get("bytes", b""))
                elif kind == "ferrocorn.websocket.pong":
                    self._received_pong = True
                    r = self._run_callback(self.handler.on_pong, m.get("bytes", b""))
                    if r is not None:
                        await r
                elif kind == "websocket.disconnect":
                    self.client_terminated = True
                    self.server_terminated = True
                    if self.close_code is None:
                        code = m.get("code")
                        # 1005/1006 are "no code" and "no close frame": Tornado
                        # reports those as None.
                        self.close_code = None if code in (1005, 1006) else code
                        self.close_reason = m.get("reason") or None
                    break
        finally:
            self._stop_pinging()
            self.conn.end()
            self.handler.on_ws_connection_close(self.close_code, self.close_reason)

    def write_message(self, message, binary=False):
        if self.is_closing():
            raise _tws.WebSocketClosedError()
        if isinstance(message, dict):
            message = json_encode(message)
        if binary:
            if isinstance(message, str):
                message = message.encode("utf-8")
            out = {"type": "websocket.send", "bytes": bytes(message)}
        else:
            if isinstance(message, (bytes, bytearray, memoryview)):
                message = bytes(message).decode("utf-8")
            out = {"type": "websocket.send", "text": message}
        fut = self.conn.send(out)

        async def wrapper():
            try:
                await fut
            except (OSError, RuntimeError):
                raise _tws.WebSocketClosedError() from None

        return asyncio.ensure_future(wrapper())

    def write_ping(self, data):
        if self.is_closing():
            raise _tws.WebSocketClosedError()
        self.conn.send({"type": "ferrocorn.websocket.ping", "bytes": bytes(data)})

    def close(self, code=None, reason=None):
        if not self.server_terminated:
            if code is None and reason is not None:
                code = 1000
            self.server_terminated = True
            self.conn.close(code, reason)
        self._stop_pinging()

    def _abort(self):
        self.client_terminated = True
        self.server_terminated = True
        self.conn.abort()
        self._stop_pinging()

    def is_closing(self):
        return self.conn.over or self.client_terminated or self.server_terminated

    def set_nodelay(self, x):
        # Every connection already has TCP_NODELAY set by the server.
        pass

    def _process_server_headers(self, key, headers):
        raise RuntimeError("server-side protocol: no client handshake")

    @property
    def ping_interval(self):
        return self.params.ping_interval or 0

    @property
    def ping_timeout(self):
        timeout = self.params.ping_timeout
        if timeout is None:
            return self.ping_interval
        if self.ping_interval and timeout > self.ping_interval:
            return self.ping_interval
        return timeout

    def start_pinging(self):
        if self._ping_task is None and self.ping_interval > 0:
            self._ping_task = asyncio.ensure_future(self._pinging())

    def _stop_pinging(self):
        task, self._ping_task = self._ping_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _pinging(self):
        interval, timeout = self.ping_interval, self.ping_timeout
        loop = asyncio.get_running_loop()
        await asyncio.sleep(interval)
        while not self.is_closing():
            self._received_pong = False
            sent = loop.time()
            self.write_ping(b"")
            await asyncio.sleep(timeout)
            if timeout > 0 and not self._received_pong:
                self.close(reason="ping timed out")
                return
            await asyncio.sleep(max(0, sent + interval - loop.time()))


def _patch_handler():
    """Make WebSocketHandler build this module's protocol for connections
    served here (and Tornado's own everywhere else, e.g. a client or a
    second server in the same process)."""
    handler_cls = _tws.WebSocketHandler
    if getattr(handler_cls, "_ferrocorn_patched", False):
        return
    original = handler_cls.get_websocket_protocol

    def get_websocket_protocol(self):
        conn = self.request.connection
        if not isinstance(conn, WsConnection):
            return original(self)
        if self.request.headers.get("Sec-WebSocket-Version") != "13":
            return None
        params = _tws._WebSocketParams(
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            max_message_size=self.max_message_size,
            compression_options=self.get_compression_options(),
        )
        return Protocol(self, conn, params)

    handler_cls.get_websocket_protocol = get_websocket_protocol
    handler_cls._ferrocorn_patched = True


def _start_line(scope, method):
    uri = scope["raw_path"].decode("latin-1")
    if scope["query_string"]:
        uri += "?" + scope["query_string"].decode("latin-1")
    return httputil.RequestStartLine(method, uri, "HTTP/" + scope.get("http_version", "1.1"))


def _headers(scope):
    headers = httputil.HTTPHeaders()
    for k, v in scope["headers"]:
        headers.add(k.decode("latin-1"), v.decode("latin-1"))
    return headers


def tornado_app(app):
    """The ASGI callable that serves `app` (a tornado.web.Application)."""
    _patch_handler()

    async def websocket(scope, receive, send):
        m = await receive()
        if m["type"] != "websocket.connect":
            return
        conn = WsConnection(scope, receive, send)
        delegate = app.start_request(None, conn)
        r = delegate.headers_received(_start_line(scope, "GET"), _headers(scope))
        if r is not None:
            await r
        delegate.finish()
        await conn.session_done.wait()
        await conn.drained()

    async def http(scope, receive, send):
        conn = Connection(scope, send)
        delegate = app.start_request(None, conn)
        r = delegate.headers_received(_start_line(scope, scope["method"]), _headers(scope))
        if r is not None:
            await r
        while True:
            m = await receive()
            if m["type"] == "http.disconnect":
                conn.disconnected()
                return
            if m.get("body"):
                r = delegate.data_received(m["body"])
                if r is not None:
                    await r
            if not m.get("more_body"):
                break
        delegate.finish()
        waiter = asyncio.ensure_future(receive())
        done = asyncio.ensure_future(conn.finished.wait())
        await asyncio.wait([waiter, done], return_when=asyncio.FIRST_COMPLETED)
        if not done.done():
            # The client went away before the handler finished.
            done.cancel()
            conn.disconnected()
            return
        waiter.cancel()
        await conn.drained()

    async def asgi(scope, receive, send):
        kind = scope["type"]
        if kind == "http":
            await http(scope, receive, send)
        elif kind == "websocket":
            await websocket(scope, receive, send)
        else:
            # A Tornado app has no lifespan: say so, as an ASGI app would.
            raise RuntimeError("a Tornado application has no lifespan")

    return asgi
