# The config host's Python side: runs a gunicorn-style Python config file,
# reports its settings, and runs the master-side server hooks it defines,
# each time the master asks (see src/hooks/mod.rs). Also used in workers
# to find the worker-side hooks. `_ferrocorn_log(level, text)` is provided
# by Rust and writes to ferrocorn's error log.

import importlib
import json
import os
import sys
import tomllib
import traceback
import types

_ns = {}
_cfg = None


class Log:
    """What hooks get as `server.log` / `worker.log`: gunicorn's logger
    methods, writing to ferrocorn's error log."""

    def _emit(self, level, msg, args, exc=False):
        text = str(msg)
        if args:
            try:
                text = text % args
            except Exception:
                text = "%s %r" % (text, args)
        if exc:
            text = text + "\n" + traceback.format_exc().rstrip()
        _ferrocorn_log(level, text)

    def debug(self, msg, *args, **kw):
        self._emit("debug", msg, args)

    def info(self, msg, *args, **kw):
        self._emit("info", msg, args)

    def warning(self, msg, *args, **kw):
        self._emit("warning", msg, args)

    warn = warning

    def error(self, msg, *args, **kw):
        self._emit("error", msg, args)

    def exception(self, msg, *args, **kw):
        self._emit("error", msg, args, exc=True)

    def critical(self, msg, *args, **kw):
        self._emit("critical", msg, args)

    def log(self, lvl, msg, *args, **kw):
        names = {10: "debug", 20: "info", 30: "warning", 40: "error", 50: "critical"}
        self._emit(names.get(lvl, "info"), msg, args)

    def reopen_files(self):
        pass


class Config:
    """`server.cfg` / `worker.cfg`: every setting by its gunicorn name."""

    def __init__(self, values):
        self.__dict__.update(values)

    def __getattr__(self, name):
        # Hooks the file does not define read as None, like unset settings.
        return None


class Server:
    """What master-side hooks get as `server` (gunicorn's Arbiter)."""

    def __init__(self, state):
        self.cfg = _cfg
        self.log = LOG
        self.pid = state.get("pid")
        self.num_workers = state.get("num_workers")
        self.proc_name = state.get("proc_name")
        self.app = None
        self.WORKERS = {}


class Worker:
    """What hooks get as `worker`."""

    def __init__(self, state):
        self.cfg = _cfg
        self.log = LOG
        self.pid = state.get("pid")
        self.ppid = state.get("ppid")
        self.age = state.get("age")
        self.alive = state.get("alive", True)
        self.booted = state.get("booted", False)
        self.aborted = state.get("aborted", False)
        self.nr = state.get("nr", 0)

    def __repr__(self):
        return "<Worker %s>" % self.pid


LOG = Log()


class Request:
    """What pre_request and post_request get as `req`."""

    def __init__(self, method, uri, path, query, minor, headers, remote_addr):
        self.method = method
        self.uri = uri
        self.path = path
        self.query = query
        self.version = (1, minor)
        self.headers = [(n.upper(), v) for n, v in headers]
        self.remote_addr = remote_addr
        self.scheme = "http"

    def __repr__(self):
        return "<Request %s %s>" % (self.method, self.uri)


class Response:
    """What post_request gets as `resp`."""

    def __init__(self, status, headers, sent):
        self.status = status
        try:
            self.status_code = int(status.split(None, 1)[0])
        except (ValueError, IndexError, AttributeError):
            self.status_code = None
        self.headers = list(headers)
        self.sent = sent
        self.response_length = sent


def request_hooks(worker_state):
    """pre_request, post_request (or None) and the `worker` object."""
    pre = _ns.get("pre_request")
    post = _ns.get("post_request")
    return (pre if callable(pre) else None, post if callable(post) else None, Worker(worker_state))


def _where(spec, exc):
    """file:line of the error: the innermost frame in the config file, or
    (for python:module) the innermost frame outside importlib."""
    if isinstance(exc, SyntaxError):
        return "%s:%s" % (exc.filename or spec, exc.lineno)
    where = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if spec.startswith("python:"):
            if not frame.filename.startswith("<frozen"):
                where = "%s:%s" % (frame.filename, frame.lineno)
        elif os.path.abspath(frame.filename) == os.path.abspath(spec):
            where = "%s:%s" % (spec, frame.lineno)
    return where or spec


def _plain(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    if isinstance(v, (list, tuple)):
        return all(_plain(i) for i in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _plain(i) for k, i in v.items())
    return False


def _env_diff(before):
    after = dict(os.environ)
    return {
        "env_set": {k: v for k, v in after.items() if before.get(k) != v},
        "env_unset": [k for k in before if k not in after],
    }


def load(spec, known, hooks):
    """Run the config file (a path, or python:module). Returns what the
    master needs, or raises ValueError with a one-line message."""
    global _ns
    before = dict(os.environ)
    try:
        if spec.startswith("python:"):
            name = spec[len("python:"):]
            if name in sys.modules:
                mod = importlib.reload(sys.modules[name])
            else:
                mod = importlib.import_module(name)
            ns = dict(vars(mod))
        else:
            with open(spec, "rb") as f:
                source = f.read()
            ns = {"__file__": spec, "__name__": "__config__", "__builtins__": __builtins__}
            exec(compile(source, spec, "exec"), ns)
    except SystemExit as e:
        raise ValueError("%s: the config file called exit(%s)" % (spec, e.code))
    except BaseException as e:
        where = _where(spec, e)
        detail = "".join(traceback.format_exception_only(type(e), e)).strip().splitlines()
        raise ValueError("%s: %s" % (where, detail[-1] if detail else type(e).__name__))
    settings, objects, defined = {}, [], []
    for key, value in ns.items():
        if key.startswith("__") or isinstance(value, types.ModuleType):
            continue
        if key in hooks:
            if callable(value):
                defined.append(key)
            continue
        if key not in known:
            continue
        if _plain(value):
            if value is not None:
                settings[key] = value
        else:
            objects.append(key)
    _ns = ns
    out = {"settings": settings, "objects": objects, "hooks": defined}
    out.update(_env_diff(before))
    return out


def setup(cfg_toml, errorlog=None, loglevel=None, raw_env=()):
    global _cfg
    if errorlog:
        _ferrocorn_log_init(errorlog, loglevel or "info")
    for kv in raw_env:
        key, sep, value = kv.partition("=")
        if sep:
            os.environ[key] = value
    values = tomllib.loads(cfg_toml)
    for name, fn in _ns.items():
        if callable(fn) and not name.startswith("__"):
            values.setdefault(name, fn)
    _cfg = Config(values)


def call(hook, server, worker, args):
    """Run one hook; a failure is logged with its traceback."""
    fn = _ns.get(hook)
    if not callable(fn):
        return {}
    srv = Server(server) if server is not None else None
    wrk = Worker(worker) if worker is not None else None
    if hook == "nworkers_changed":
        call_args = (srv, args[0], args[1])
    elif hook in ("pre_fork", "child_exit", "worker_exit", "post_fork"):
        call_args = (srv, wrk)
    elif hook in ("post_worker_init", "worker_int", "worker_abort"):
        call_args = (wrk,)
    else:
        call_args = (srv,)
    before = dict(os.environ)
    try:
        fn(*call_args)
    except BaseException:
        LOG.exception("Exception in %s hook", hook)
        out = _env_diff(before)
        out["failed"] = True
        return out
    return _env_diff(before)


def serve(rfile, wfile):
    """The host's loop: one JSON request per line, one reply per line."""
    for line in rfile:
        try:
            req = json.loads(line)
        except ValueError:
            continue
        op = req.get("op")
        reply = {"id": req.get("id"), "ok": True, "pid": os.getpid()}
        try:
            if op == "load":
                reply.update(load(req["spec"], set(req["known"]), set(req["hooks"])))
            elif op == "setup":
                setup(req["cfg"], req.get("errorlog"), req.get("loglevel"), req.get("raw_env") or ())
            elif op == "call":
                reply.update(call(req["hook"], req.get("server"), req.get("worker"), req.get("args") or []))
        except ValueError as e:
            reply = {"id": req.get("id"), "ok": False, "error": str(e)}
        except BaseException as e:
            reply = {"id": req.get("id"), "ok": False, "error": "%s: %s" % (type(e).__name__, e)}
        wfile.write(json.dumps(reply, default=str) + "\n")
        wfile.flush()
