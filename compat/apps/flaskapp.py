"""A Flask app (`ferrocorn flaskapp:app`), with a plain Werkzeug app mounted at /wz.

Files it serves come from $COMPAT_STATE_DIR/files, written by compat/suite.py.
"""

import os
import time
from pathlib import Path

from flask import Flask, Response, request, send_file, stream_with_context, url_for
from flask_sock import Sock
from werkzeug.middleware.dispatcher import DispatcherMiddleware

import wzapp

FILES_DIR = Path(os.environ["COMPAT_STATE_DIR"]) / "files"
TICK_PAUSE = 0.3  # seconds between two ticks

app = Flask(__name__)
app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/wz": wzapp.application})
sock = Sock(app)


@app.get("/healthz")
def healthz():
    return "ok"


@app.get("/ticks")
def ticks():
    """Stream b"tick\\n" every TICK_PAUSE seconds; ?n= sets how many.

    The generator reads request.args while streaming, long after the view
    returned, which is what stream_with_context is for.
    """

    @stream_with_context
    def generate():
        count = request.args.get("n", default=5, type=int)
        for i in range(count):
            if i:
                time.sleep(TICK_PAUSE)
            yield b"tick\n"

    return Response(generate(), mimetype="text/plain")


@app.get("/whoami")
def whoami():
    """What the app learns behind a proxy: the scheme, its own external
    URL, and whether a header spelled with underscores reached it."""
    return {
        "scheme": request.scheme,
        "url": url_for("healthz", _external=True),
        "x_custom": request.headers.get("X-Custom"),
    }


@app.get("/report.csv")
def report():
    return send_file(FILES_DIR / "report.csv")


@sock.route("/echo")
def echo(ws):
    """A WebSocket (flask-sock over gunicorn.socket): echo each message
    upper-cased, until "bye"."""
    while True:
        message = ws.receive()
        if message == "bye":
            ws.send("BYE")
            return
        ws.send(message.upper())
