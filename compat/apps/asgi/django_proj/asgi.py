"""The project's ASGI application: Django views for HTTP, Channels consumers
for websockets, behind a lifespan wrapper."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_proj.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_http = get_asgi_application()  # sets Django up before the imports below

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from . import consumers  # noqa: E402
from .lifespan import Lifespan  # noqa: E402

application = Lifespan(
    ProtocolTypeRouter(
        {
            "http": django_http,
            "websocket": URLRouter(
                [
                    path("ws/echo", consumers.EchoConsumer.as_asgi()),
                    path("ws/subprotocol", consumers.SubprotocolConsumer.as_asgi()),
                    path("ws/close", consumers.CloseConsumer.as_asgi()),
                ]
            ),
        }
    )
)
