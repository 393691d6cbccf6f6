"""URLs of the whole portal; each app's pages are wired here."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from monitoring import views as monitoring_views
from portal import views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("admin/", admin.site.urls),
    path("health/live", monitoring_views.live, name="health-live"),
]
