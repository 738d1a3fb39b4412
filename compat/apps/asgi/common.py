"""What every ASGI compat app shares: the state directory the suite gives it
(COMPAT_STATE_DIR), its marker files and the shape of its events."""

import os
from pathlib import Path

STATE_DIR = Path(os.environ.get("COMPAT_STATE_DIR", "/tmp"))

EVENTS = 5  # events of /sse, the first at once, then one every EVENT_GAP s
EVENT_GAP = 0.3
ENDLESS_GAP = 0.2  # /sse-endless: an event every ENDLESS_GAP s, for 60 s at most
ENDLESS_LIMIT = 300
SUBPROTOCOL = "compat.v2"  # the one /ws/subprotocol picks when offered
CLOSE_CODE = 4321
CLOSE_REASON = "compat-close"


def event(i):
    return f"id: {i}\ndata: event {i}\n\n"


def mark(name, text="1"):
    (STATE_DIR / name).write_text(text)


def marked(name):
    return (STATE_DIR / name).exists()


def startup_token(framework):
    return f"{framework}-started-{os.getpid()}"


def pick_subprotocol(offered):
    return SUBPROTOCOL if SUBPROTOCOL in offered else None
