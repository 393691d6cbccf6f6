"""Member-facing pages that compose several apps."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from members.http import MemberRequest
from members.models import ActivityLog, ApiToken
from members.views import render_member_page
from subscriptions.models import Plan, Subscription

DASHBOARD_ACTIVITY = 10


def landing(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("dashboard")
    plans = list(Plan.objects.active().only("code", "name", "tier", "price_cents", "currency", "interval"))
    return render(request, "portal/landing.html", {"plans": plans})


@never_cache
@login_required
@require_GET
def dashboard(request: MemberRequest) -> HttpResponse:
    """Everything at a glance, in a fixed number of queries whatever the member's data: the
    profile, the live subscription with its plan, a count and the first row of live tokens, and
    ten activity rows, each served by an index on the member."""
    member = request.user
    profile = member.profile
    live_tokens = ApiToken.objects.for_member(member).live()
    context = {
        "display_name": profile.display_name or member.email,
        "subscription": Subscription.objects.for_member(member).live().first(),
        "live_token_count": live_tokens.count(),
        "next_to_expire": live_tokens.expiring().only("name", "prefix", "last_chars", "expires_at").first(),
        "activity": list(ActivityLog.objects.for_member(member).recent()[:DASHBOARD_ACTIVITY]),
    }
    return render_member_page(request, "portal/dashboard.html", context)
