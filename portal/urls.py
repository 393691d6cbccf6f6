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
    path("profile/export/", views.export_data, name="profile-export"),
    path("profile/delete/", views.delete_account, name="profile-delete"),
    path("profile/keep/", views.keep_account, name="profile-keep"),
    path("tokens/", member_views.tokens, name="tokens"),
    path("tokens/<int:pk>/revoke/", member_views.revoke_token, name="token-revoke"),
    path("activity/", member_views.activity, name="activity"),
    path("subscription/", subscription_views.subscription, name="subscription"),
    path("subscription/checkout/", subscription_views.checkout, name="subscription-checkout"),
    path("subscription/change/", subscription_views.change_plan, name="subscription-change"),
    path("subscription/billing/", subscription_views.billing_portal, name="subscription-billing"),
    path("subscription/cancel/", subscription_views.cancel, name="subscription-cancel"),
    path("subscription/resume/", subscription_views.resume, name="subscription-resume"),
    path("webhooks/stripe/", subscription_views.stripe_webhook, name="stripe-webhook"),
    path("api/v1/", api.urls()),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("health/live", monitoring_views.live, name="health-live"),
    path("health/ready", monitoring_views.ready, name="health-ready"),
    path("health/", monitoring_views.status, name="health-status"),
    path("api/health", monitoring_views.api_health, name="api-health"),
    path("api/health/advanced", monitoring_views.api_health_advanced, name="api-health-advanced"),
    path("metrics", monitoring_views.metrics, name="metrics"),
    path("vitals/", monitoring_views.web_vitals, name="web-vitals"),
]
