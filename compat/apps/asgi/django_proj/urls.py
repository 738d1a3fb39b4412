from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from . import views

urlpatterns = [
    path("healthz", views.healthz),
    path("hello", views.hello),
    path("echo", csrf_exempt(views.echo)),
    path("lifespan", views.lifespan_state),
    path("sse", views.sse),
    path("sse-endless", views.sse_endless),
    path("disconnected", views.disconnected),
]
