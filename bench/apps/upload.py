"""Request body consumer: reads wsgi.input (up to CONTENT_LENGTH) and
answers with the number of bytes received."""

CHUNK = 64 * 1024


def app(environ, start_response):
    try:
        remaining = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        remaining = 0
    stream = environ["wsgi.input"]
    total = 0
    while remaining > 0:
        chunk = stream.read(min(CHUNK, remaining))
        if not chunk:
            break
        total += len(chunk)
        remaining -= len(chunk)
    body = ("%d\n" % total).encode("ascii")
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
    )
    return [body]
