"""The portal's root URLconf: the pages that span apps (landing, dashboard, the member's data),
the API root, accounts and the admin, and each app's own `urls.py`."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from portal import api, views

# While the database cannot be reached, 503 with Retry-After instead of a bare 500 (core/unavailable.py).
handler500 = "core.unavailable.server_error"

urlpatterns = [
    path("", views.landing, name="landing"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("profile/export/", views.export_data, name="profile-export"),
    path("profile/delete/", views.delete_account, name="profile-delete"),
    path("profile/keep/", views.keep_account, name="profile-keep"),
    path("", include("members.urls")),
    path("", include("subscriptions.urls")),
    path("api/v1/", api.urls()),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("", include("monitoring.urls")),
]
