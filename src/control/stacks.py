# ferrocorn's `ctl stacks`, the Python half: run in a worker by a thread
# of its own (holding the GIL), it describes what every other thread is
# executing and, through the providers the worker registered, every
# asyncio task and every greenlet. Nothing here stops or
# changes what it looks at. Standard library only; what only a dump needs
# is imported by the first dump, so an idle worker carries no more than
# `threading`.
import sys
import threading


def _frame_list(summary):
    return [
        {
            "file": fs.filename,
            "line": fs.lineno,
            "function": fs.name,
            "code": (fs.line or "").strip(),
        }
        for fs in summary
    ]


def _one(frame):
    import linecache

    code = frame.f_code
    lineno = frame.f_lineno or 0
    return {
        "file": code.co_filename,
        "line": lineno,
        "function": code.co_name,
        "code": linecache.getline(code.co_filename, lineno).strip(),
    }


def _this_thread():
    """This thread's ident as sys._current_frames() keys it. Found by frame,
    not threading.get_ident(), which gevent and eventlet patch to name the
    current greenlet instead."""
    me = sys._getframe()
    for ident, frame in sys._current_frames().items():
        if frame is me:
            return ident
    return threading.get_ident()


# The youngest frame of the command's entry point beneath the worker: in a
# worker of the wheel's master the main thread still runs inside the
# console script's call into ferrocorn (`set_entry`'s caller); None under
# the binary. Those frames are not the app's and are left out.
_entry = None


def set_entry():
    """Called on the main thread when the worker arms `ctl stacks`."""
    global _entry
    _entry = sys._getframe().f_back


def _stack(frame):
    """`frame`'s stack, outermost first, down to (without) the entry point."""
    import traceback

    walk = []
    while frame is not None and frame is not _entry:
        walk.append((frame, frame.f_lineno))
        frame = frame.f_back
    walk.reverse()
    return traceback.StackSummary.extract(walk)


def threads(own, main):
    """Every thread but `own` that is running Python, main thread first
    (`main`: the worker's main thread, or 0 when unknown)."""
    names = {ident: t.name for ident, t in dict(threading._active).items()}
    main = main or threading.main_thread().ident
    names.setdefault(main, "MainThread")
    out = []
    for ident, frame in sys._current_frames().items():
        if ident == own:
            continue
        frames = _stack(frame)
        if not frames:
            # Only the entry point: as idle as a main thread with no frame.
            continue
        out.append(
            {
                "id": ident,
                "name": names.get(ident, "Thread-%d" % ident),
                "main": ident == main,
                "frames": _frame_list(frames),
            }
        )
    out.sort(key=lambda t: (not t["main"], t["name"]))
    return out


def awaiting(coro):
    """The frames of a coroutine and of what it awaits, outermost first."""
    frames = []
    for _ in range(256):
        if coro is None:
            break
        frame = None
        for attr in ("cr_frame", "gi_frame", "ag_frame"):
            frame = getattr(coro, attr, None)
            if frame is not None:
                break
        if frame is not None:
            frames.append(_one(frame))
        nxt = None
        for attr in ("cr_await", "gi_yieldfrom", "ag_await"):
            nxt = getattr(coro, attr, None)
            if nxt is not None:
                break
        coro = nxt
    return frames


def asyncio_tasks(loop):
    """Every task of `loop` (asyncio.all_tasks is safe from another thread
    while the GIL is held: it copies the task set, retrying if it changed)."""
    import asyncio

    out = []
    for task in asyncio.all_tasks(loop):
        coro = task.get_coro()
        out.append(
            {
                "name": task.get_name(),
                "coro": getattr(coro, "__qualname__", repr(coro)),
                "frames": awaiting(coro),
            }
        )
    out.sort(key=lambda t: t["name"])
    return out


def dump(pid, providers, main):
    """The worker's stacks as JSON text. `providers` is a list of
    (kind, callable): each callable returns a list of entries for `kind`
    ("tasks" for asyncio, "greenlets" for gevent and eventlet)."""
    import json

    result = {"pid": pid, "threads": threads(_this_thread(), main)}
    for kind, provider in providers:
        try:
            result.setdefault(kind, []).extend(provider())
        except Exception as e:  # one provider failing spoils nothing else
            result.setdefault("errors", []).append("%s: %r" % (kind, e))
    return json.dumps(result)
