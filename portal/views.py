"""Member-facing pages that compose several apps."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from subscriptions.models import Plan


def landing(request: HttpRequest) -> HttpResponse:
    plans = list(Plan.objects.active().only("code", "name", "tier", "price_cents", "currency", "interval"))
    return render(request, "portal/landing.html", {"plans": plans})
