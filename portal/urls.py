"""URLs of the whole portal; each app's pages are wired here."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from members import views as member_views
from monitoring import views as monitoring_views
from portal import api, views
from subscriptions import views as subscription_views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("profile/", member_views.profile, name="profile"),
    path("tokens/", member_views.tokens, name="tokens"),
    path("tokens/<int:pk>/revoke/", member_views.revoke_token, name="token-revoke"),
    path("activity/", member_views.activity, name="activity"),
    path("subscription/", subscription_views.subscription, name="subscription"),
    path("api/v1/", api.urls()),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("health/live", monitoring_views.live, name="health-live"),
]
