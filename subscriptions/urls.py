"""The subscription page, its actions, and Stripe's webhook."""

from __future__ import annotations

from django.urls import path

from subscriptions import views

urlpatterns = [
    path("subscription/", views.subscription, name="subscription"),
    path("subscription/checkout/", views.checkout, name="subscription-checkout"),
    path("subscription/change/", views.change_plan, name="subscription-change"),
    path("subscription/billing/", views.billing_portal, name="subscription-billing"),
    path("subscription/cancel/", views.cancel, name="subscription-cancel"),
    path("subscription/resume/", views.resume, name="subscription-resume"),
    path("webhooks/stripe/", views.stripe_webhook, name="stripe-webhook"),
]
