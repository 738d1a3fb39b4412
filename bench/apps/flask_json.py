"""Flask app: GET /json returns a small JSON document (framework overhead)."""

from flask import Flask, jsonify

app = Flask(__name__)

PAYLOAD = {
    "message": "Hello, World!",
    "id": 4242,
    "ok": True,
    "ratio": 0.125,
    "tags": ["wsgi", "bench", "json"],
    "owner": {"name": "bench", "uid": 1000},
    "count": 10,
    "nothing": None,
    "version": "1.0.0",
    "region": "loopback",
}


@app.get("/json")
def json_view():
    return jsonify(PAYLOAD)
