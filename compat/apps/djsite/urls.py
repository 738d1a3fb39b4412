from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", views.healthz),
    path("stream/", views.stream),
    path("events/", views.events),
    path("download/", views.download),
    path("upload/", views.upload),
]
