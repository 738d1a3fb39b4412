"""App for the access-log tests (tests/accesslog.rs, compat/accesslog.py):
it adds keys to the environ, as middleware does, and answers with a
response header holding quotes."""


def app(environ, start_response):
    environ["custom.key"] = 'set "by" app'
    environ["Mixed_Case"] = "mc"
    environ["an_int"] = 7
    if environ["PATH_INFO"] == "/proxied":
        # What werkzeug's ProxyFix does: the client address from the proxy.
        environ["REMOTE_ADDR"] = "203.0.113.9"
    status = environ["QUERY_STRING"].partition("status=")[2] or "200"
    body = b"hello"
    start_response(
        status + " Whatever",
        [
            ("Content-Type", "text/plain"),
            ("X-Resp", 'a "q" b'),
            ("Content-Length", str(len(body))),
        ],
    )
    return [body]
