"""Views whose responses the suite checks byte for byte and by timing."""

import hashlib
import time

from django.conf import settings
from django.http import FileResponse, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

STREAM_PIECES = 5
STREAM_PAUSE = 0.3  # seconds between two pieces
EVENT_COUNT = 10
EVENT_PAUSE = 0.5  # seconds between two events


@require_GET
def healthz(request):
    return HttpResponse("ok", content_type="text/plain")


@require_GET
def stream(request):
    """A body produced slowly: each piece should reach the client when yielded."""

    def pieces():
        for i in range(STREAM_PIECES):
            if i:
                time.sleep(STREAM_PAUSE)
            yield f"piece {i}\n"

    return StreamingHttpResponse(pieces(), content_type="text/plain; charset=utf-8")


@require_GET
def events(request):
    """Server-sent events: the first one at once, then one every EVENT_PAUSE."""

    def event_stream():
        for i in range(EVENT_COUNT):
            if i:
                time.sleep(EVENT_PAUSE)
            yield f"id: {i}\nevent: tick\ndata: tick {i}\n\n"

    response = StreamingHttpResponse(event_stream(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


@require_GET
def download(request):
    path = settings.FILES_DIR / "download.bin"
    return FileResponse(open(path, "rb"), as_attachment=True, filename=path.name)


@csrf_exempt
@require_POST
def upload(request):
    """Report the sha256 and size of each uploaded file and the form fields."""
    files = {}
    for field, upload in request.FILES.items():
        digest = hashlib.sha256()
        for chunk in upload.chunks():
            digest.update(chunk)
        files[field] = {"name": upload.name, "size": upload.size, "sha256": digest.hexdigest()}
    return JsonResponse({"files": files, "fields": request.POST.dict()})
