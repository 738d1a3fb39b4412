"""A plain Werkzeug app: digests the request body, however it was framed."""

import hashlib
import json

from werkzeug.wrappers import Request, Response


@Request.application
def application(request):
    if request.path != "/digest":
        return Response("not found\n", status=404)
    if request.method != "POST":
        return Response("POST a body to /wz/digest\n", status=405, headers={"Allow": "POST"})
    # A chunked body has no Content-Length: Werkzeug reads it only when the
    # server sets wsgi.input_terminated, and sees an empty body otherwise.
    body = request.get_data(cache=False)
    result = {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    return Response(json.dumps(result), mimetype="application/json")
