"""The portal's URLs plus one page that fails, for the Sentry tests."""

from __future__ import annotations

import logging

import sentry_sdk
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.urls import path

from portal.urls import urlpatterns as portal_urlpatterns

logger = logging.getLogger("portal.billing")

# What an error can carry that must never reach Sentry.
API_TOKEN = "mpt_AbCdEfGhIjKlMnOpQrStUvWxYz0123abc123"
STRIPE_KEY = "sk_live_51HxQmPLkYbNotARealKey"
WEBHOOK_SECRET = "whsec_NotARealSigningSecret123"
EMAIL = "alice@example.com"


@login_required
def fail(request: HttpRequest) -> HttpResponse:
    token = API_TOKEN  # a local variable, which Sentry would send with the stack frame
    logger.warning("Retrying the charge for %s", EMAIL)  # becomes a breadcrumb
    raise RuntimeError(f"charge failed for {EMAIL} with {STRIPE_KEY} (webhook {WEBHOOK_SECRET}, token {token})")


def fail_for_anyone(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("the landing page broke")


def fail_at_a_confirmation_link(request: HttpRequest, key: str) -> HttpResponse:
    """Fails on a path that carries a confirmation key, naming it everywhere an event can."""
    url = request.build_absolute_uri()
    logger.warning("Could not confirm at %s", request.path)  # a breadcrumb
    with sentry_sdk.start_span(op="http.client", name=f"GET {url}"):  # a span (an outgoing call, say)
        pass
    raise RuntimeError(f"confirmation failed at {url}")


urlpatterns = [
    *portal_urlpatterns,
    path("fail/", fail),
    path("fail/for-anyone/", fail_for_anyone),
    # After allauth's own confirm-email/<key>/, which does not match this longer path.
    path("accounts/confirm-email/<str:key>/fail/", fail_at_a_confirmation_link),
]
