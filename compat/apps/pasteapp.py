"""A PasteDeploy app factory, loaded through compat/apps/paste.ini with
--paste (and --paste-global who=...)."""

import logging


def make_app(global_config, greeting="hello", **local_conf):
    log = logging.getLogger("pasteapp")

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]
        log.info("pasteapp served %s", environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [("%s, %s" % (greeting, global_config.get("who", "nobody"))).encode()]

    return app
