"""Health pages, the Prometheus scrape and the Web Vitals beacon."""

from __future__ import annotations

from django.urls import path

from monitoring import views

urlpatterns = [
    path("health/live", views.live, name="health-live"),
    path("health/ready", views.ready, name="health-ready"),
    path("health/", views.status, name="health-status"),
    path("api/health", views.api_health, name="api-health"),
    path("api/health/advanced", views.api_health_advanced, name="api-health-advanced"),
    path("metrics", views.metrics, name="metrics"),
    path("vitals/", views.web_vitals, name="web-vitals"),
]
