"""Large response: 1 MiB body built once at import time."""

SIZE = 1024 * 1024
DATA = bytes(range(256)) * (SIZE // 256)
assert len(DATA) == SIZE


def app(environ, start_response):
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(SIZE)),
        ],
    )
    return [DATA]
