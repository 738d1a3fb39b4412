# The Python half of ferrocorn's asyncio executor, run in each ASGI
# worker: making the event loop (--asgi-loop), running it around the
# engine's epoll descriptor, the per-request coroutine that calls the app,
# the lifespan protocol, and waiting for what is left at the end.
# The Rust side (src/worker/executor/asyncio.rs, src/asgi/) does all
# socket I/O; nothing here touches a client socket.
import asyncio
import inspect
import sys
import traceback

_log = None  # set by the worker: _log(level, message)


class ClientDisconnected(OSError):
    """What `send` raises once the client has gone away (ASGI 2.4)."""


def new_loop(kind):
    """The event loop --asgi-loop asks for: (loop, name)."""
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise RuntimeError(
                    "--asgi-loop uvloop: uvloop is not installed in this environment"
                )
        else:
            loop = uvloop.new_event_loop()
            asyncio.set_event_loop(loop)
            return loop, "uvloop"
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    return loop, "asyncio"


def serve(loop, fd, pump, period):
    """Run `loop` until pump stops it: pump(False) whenever the engine's
    epoll descriptor is readable, pump(True) every `period` seconds."""
    handle = [None]

    def tick():
        handle[0] = loop.call_later(period, tick)
        pump(True)

    loop.add_reader(fd, pump, False)
    handle[0] = loop.call_later(period, tick)
    try:
        loop.run_forever()
    finally:
        loop.remove_reader(fd)
        handle[0].cancel()


def asgi_version(app):
    """3 for an ASGI 3 app (one coroutine callable), 2 for a double
    callable (a class, or a function taking only the scope)."""
    if inspect.isclass(app):
        # A class is an ASGI 2 app (instantiated with the scope) unless
        # its instances are awaitable (an ASGI 3 class).
        return 3 if hasattr(app, "__await__") else 2
    call = getattr(app, "__call__", None)
    if inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(call):
        return 3
    target = app if inspect.isfunction(app) else call
    try:
        params = [
            p
            for p in inspect.signature(target).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return 3
    return 2 if len(params) == 1 else 3


async def run_app(app, scope, receive, send, cycle, version):
    """One request (or websocket): call the app, then tell the cycle how
    it ended."""
    try:
        if version == 2:
            await app(scope)(receive, send)
        else:
            await app(scope, receive, send)
    except BaseException as e:  # noqa: B902 - the cycle logs and answers
        # Ending on a disconnect (our error, or the cancel after the grace
        # period) is the expected way out for a streaming app.
        quiet = isinstance(e, (ClientDisconnected, asyncio.CancelledError))
        cycle.app_failed(e, "".join(traceback.format_exception(e)), quiet)
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
    else:
        cycle.app_returned()


class Lifespan:
    """The ASGI lifespan protocol for one worker (mode: auto or on)."""

    def __init__(self, app, version, mode, state):
        self.app = app
        self.version = version
        self.mode = mode
        self.state = state
        self.events = asyncio.Queue()
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()
        self.failed = None  # (phase, message) of a *.failed message
        self.error = None  # the app raised
        self.unsupported = False
        self.task = None

    async def receive(self):
        return await self.events.get()

    async def send(self, message):
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "lifespan.startup.complete":
            self.started.set()
        elif kind == "lifespan.startup.failed":
            self.failed = ("startup", message.get("message", ""))
            self.started.set()
        elif kind == "lifespan.shutdown.complete":
            self.stopped.set()
        elif kind == "lifespan.shutdown.failed":
            self.failed = ("shutdown", message.get("message", ""))
            self.stopped.set()
        else:
            raise RuntimeError(f"Unexpected ASGI lifespan message type {kind!r}")

    async def main(self):
        scope = {
            "type": "lifespan",
            "asgi": {"version": f"{self.version}.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            if self.version == 2:
                await self.app(scope)(self.receive, self.send)
            else:
                await self.app(scope, self.receive, self.send)
        except BaseException as e:  # noqa: B902
            self.error = e
            if self.failed is None:
                if self.mode == "auto" and not self.started.is_set():
                    self.unsupported = True
                    _log("info", "ASGI 'lifespan' protocol appears unsupported.")
                else:
                    _log(
                        "error",
                        "Exception in 'lifespan' protocol\n"
                        + "".join(traceback.format_exception(e)).rstrip(),
                    )
        finally:
            self.started.set()
            self.stopped.set()

    async def startup(self):
        """True when the app may serve."""
        _log("info", "Waiting for application startup.")
        self.task = asyncio.get_running_loop().create_task(self.main())
        await self.events.put({"type": "lifespan.startup"})
        await self.started.wait()
        if self.failed is not None:
            if self.failed[1]:
                _log("error", self.failed[1])
            _log("error", "Application startup failed. Exiting.")
            return False
        if self.error is not None and not self.unsupported:
            _log("error", "Application startup failed. Exiting.")
            return False
        if not self.unsupported:
            _log("info", "Application startup complete.")
        return True

    async def shutdown(self, timeout):
        if self.unsupported or self.error is not None or self.task is None:
            return
        _log("info", "Waiting for application shutdown.")
        await self.events.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(self.stopped.wait(), timeout)
        except asyncio.TimeoutError:
            _log("warning", "Application shutdown timed out.")
            return
        if self.failed is not None and self.failed[0] == "shutdown":
            if self.failed[1]:
                _log("error", self.failed[1])
            _log("error", "Application shutdown failed.")
        elif self.error is None:
            _log("info", "Application shutdown complete.")


def finish(loop, timeout, tasks):
    """Give the requests' tasks still running (background work after a
    response) up to `timeout` seconds, then cancel the rest. Tasks the app
    started itself are left to its lifespan shutdown."""
    tasks = [t for t in tasks if not t.done()]
    if not tasks:
        return
    _log("info", "Waiting for background tasks to complete.")
    done, pending = loop.run_until_complete(asyncio.wait(tasks, timeout=timeout))
    for t in pending:
        t.cancel()
    if pending:
        loop.run_until_complete(asyncio.wait(pending, timeout=1))


def close_loop(loop):
    try:
        loop.run_until_complete(loop.shutdown_asyncgens())
    except Exception:
        pass
    loop.close()
