"""The members' own pages. URL names are global (no namespace): templates and tests reverse
them by name alone."""

from __future__ import annotations

from django.urls import path

from members import views

urlpatterns = [
    path("profile/", views.profile, name="profile"),
    path("tokens/", views.tokens, name="tokens"),
    path("tokens/<int:pk>/revoke/", views.revoke_token, name="token-revoke"),
    path("activity/", views.activity, name="activity"),
]
