"""The Python half of the greenlet executor (-k gevent, -k eventlet): one
backend per library, each the same small surface over its hub.

- check():      the library is importable and new enough, else BootError
                with a one-line reason naming the package and the venv;
- patch():      monkey-patch the standard library (before the app and the
                config file run in the worker; in the master too with
                --preload), and reinit the hub after a fork;
- serve(fd, pump, tick): run the hub on this thread: pump(False) whenever
                the engine's epoll descriptor `fd` is readable, pump(True)
                every `tick` seconds, until stop();
- stop():       make serve() return (called by the pump, on the hub);
- soon(fn, tick): call fn(tick) from the hub soon (a finished request);
- spawn(fn):    run fn() in a new greenlet;
- wait(fd, write, timeout) -> bool: park this greenlet until fd is
                readable (or writable), False on timeout (None: no limit);
- sleep(seconds).

greenlets() lists the suspended greenlets for `ferrocorn ctl stacks`.

Nothing here polls: the hub sleeps in its own epoll until the engine's
descriptor or a request's socket is ready.
"""

import sys


class BootError(Exception):
    pass


def _where():
    """The app's Python environment, as the user named it."""
    if sys.prefix != sys.base_prefix:
        return f"the virtualenv {sys.prefix}"
    return f"the Python environment {sys.prefix} (no virtualenv)"


def _missing(package, minimum):
    want = ".".join(map(str, minimum))
    return (
        f"the {package} worker needs {package} {want} or newer, which is not installed in "
        f"{_where()}: pip install '{package}>={want}'"
    )


def _too_old(package, minimum, found):
    want = ".".join(map(str, minimum))
    return (
        f"the {package} worker needs {package} {want} or newer; {_where()} has {found}: "
        f"pip install '{package}>={want}'"
    )


def _version_tuple(text):
    parts = []
    for piece in text.split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


class _Timeout(Exception):
    pass


class Gevent:
    name = "gevent"
    minimum = (24, 10, 1)

    def check(self):
        try:
            import gevent
        except ImportError:
            raise BootError(_missing("gevent", self.minimum)) from None
        if _version_tuple(gevent.__version__) < self.minimum:
            raise BootError(_too_old("gevent", self.minimum, gevent.__version__))
        self.gevent = gevent

    def patch(self):
        from gevent import monkey

        monkey.noisy = False
        if not monkey.is_module_patched("socket"):
            monkey.patch_all(subprocess=True)
        # After a fork made outside Python (the master's), the hub and its
        # loop must start afresh in this process.
        self.gevent.reinit()

    def serve(self, fd, pump, tick):
        import gevent.event
        from gevent import get_hub

        hub = get_hub()
        self._loop = hub.loop
        self._stopped = gevent.event.Event()
        io = hub.loop.io(fd, 1)
        timer = hub.loop.timer(tick, tick)
        io.start(pump, False)
        timer.start(pump, True)
        try:
            self._stopped.wait()
        finally:
            io.stop()
            timer.stop()
            io.close()
            timer.close()

    def stop(self):
        self._stopped.set()

    def soon(self, fn, tick):
        self._loop.run_callback(fn, tick)

    def spawn(self, fn):
        self.gevent.spawn_raw(fn)

    def wait(self, fd, write, timeout):
        from gevent.socket import wait_read, wait_write

        try:
            (wait_write if write else wait_read)(fd, timeout=timeout, timeout_exc=_Timeout)
        except _Timeout:
            return False
        return True

    def sleep(self, seconds):
        self.gevent.sleep(seconds)

    def greenlets(self):
        return greenlets()


class Eventlet:
    name = "eventlet"
    minimum = (0, 24, 1)

    def check(self):
        try:
            import eventlet
        except ImportError:
            raise BootError(_missing("eventlet", self.minimum)) from None
        if _version_tuple(eventlet.__version__) < self.minimum:
            raise BootError(_too_old("eventlet", self.minimum, eventlet.__version__))
        self.eventlet = eventlet

    def patch(self):
        if not self.eventlet.patcher.is_monkey_patched("socket"):
            self.eventlet.monkey_patch()
        from eventlet import hubs

        # A fresh hub for this process (its parent forked outside Python).
        hubs.use_hub()

    def serve(self, fd, pump, tick):
        import eventlet.event
        from eventlet import hubs

        hub = hubs.get_hub()
        self._hub = hub
        self._stopped = eventlet.event.Event()
        self._ticking = True

        def readable(_fileno):
            pump(False)

        def ticked():
            if self._ticking:
                pump(True)
                self._timer = hub.schedule_call_global(tick, ticked)

        listener = hub.add(hub.READ, fd, readable, self._failed, None)
        self._timer = hub.schedule_call_global(tick, ticked)
        try:
            self._stopped.wait()
        finally:
            self._ticking = False
            hub.remove(listener)
            self._timer.cancel()

    @staticmethod
    def _failed(exc):
        raise exc

    def stop(self):
        if not self._stopped.ready():
            self._stopped.send(None)

    def soon(self, fn, tick):
        self._hub.schedule_call_global(0, fn, tick)

    def spawn(self, fn):
        self.eventlet.spawn_n(fn)

    def wait(self, fd, write, timeout):
        from eventlet.hubs import trampoline

        try:
            if write:
                trampoline(fd, write=True, timeout=timeout, timeout_exc=_Timeout)
            else:
                trampoline(fd, read=True, timeout=timeout, timeout_exc=_Timeout)
        except _Timeout:
            return False
        return True

    def sleep(self, seconds):
        self.eventlet.sleep(seconds)

    def greenlets(self):
        return greenlets()


def greenlets():
    """For `ferrocorn ctl stacks` (run on the stacks thread, GIL held): every
    suspended greenlet of this worker and where it waits. The one running
    now is the main thread's stack."""
    import gc
    import traceback

    import greenlet

    out = []
    for g in gc.get_objects():
        if not isinstance(g, greenlet.greenlet) or g.dead or g.gr_frame is None:
            continue
        name = getattr(g, "name", None) or f"{type(g).__name__}-{id(g):x}"
        frames = [
            {"file": fs.filename, "line": fs.lineno, "function": fs.name, "code": (fs.line or "").strip()}
            for fs in traceback.extract_stack(g.gr_frame)
        ]
        out.append({"name": name, "frames": frames})
    out.sort(key=lambda e: e["name"])
    return out


def backend(name):
    """The backend for `name` ("gevent" or "eventlet"), checked."""
    b = {"gevent": Gevent, "eventlet": Eventlet}[name]()
    b.check()
    return b
