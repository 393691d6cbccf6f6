"""The member's subscription page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from members.http import MemberRequest
from members.views import render_member_page
from subscriptions.models import Subscription
from subscriptions.reads import plans_on_offer

# Shown beside every subscription action until the Stripe integration wires them.
BILLING_UNAVAILABLE = "Billing is not configured yet, so subscriptions cannot be changed here for now."


@never_cache
@login_required
@require_GET
def subscription(request: MemberRequest) -> HttpResponse:
    current = Subscription.objects.for_member(request.user).live().first()
    context = {
        "subscription": current,
        "plans": plans_on_offer(),
        "current_plan_id": current.plan_id if current else None,
        "billing_unavailable": BILLING_UNAVAILABLE,
    }
    return render_member_page(request, "subscriptions/subscription.html", context)
