"""Member-facing pages that compose several apps."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from members.http import MemberRequest
from members.views import render_member_page
from portal.dashboard import dashboard_summary
from subscriptions.reads import plans_on_offer


def landing(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("dashboard")
    response = render(request, "portal/landing.html", {"plans": plans_on_offer()})
    # The same page for every anonymous visitor, so shared caches (a CDN) may keep it briefly;
    # `Vary: Cookie` keeps a logged-in member's or a flash message's version out of them.
    patch_cache_control(response, public=True, max_age=settings.CACHE_TTL_SHORT)
    patch_vary_headers(response, ["Cookie"])
    return response


@never_cache
@login_required
@require_GET
def dashboard(request: MemberRequest) -> HttpResponse:
    """Everything at a glance. Served from the member's cached summary: warm, the page costs the
    one query that loads the logged-in member; cold, five more (see `dashboard_summary`)."""
    member = request.user
    summary = dashboard_summary(member.pk)
    context = {
        "display_name": summary.display_name or member.email,
        "subscription": summary.subscription,
        "live_token_count": summary.live_token_count,
        "next_to_expire": summary.next_to_expire,
        "activity": summary.activity,
    }
    return render_member_page(request, "portal/dashboard.html", context, time_zone=summary.time_zone)
