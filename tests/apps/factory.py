"""An application factory: `factory:create_app('hi', n=2)`."""


def create_app(greeting, n=1):
    body = (("%s!" % greeting) * n).encode("utf-8")

    def app(environ, start_response):
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]

    return app
