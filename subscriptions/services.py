"""Writes on subscriptions. Views, admin, webhooks and commands all call these."""

from __future__ import annotations

import datetime as dt

from django.db import transaction

from members.models import Member
from subscriptions.models import Plan, Subscription, SubscriptionStatus


@transaction.atomic
def start_subscription(
    *,
    member: Member,
    plan: Plan,
    status: SubscriptionStatus,
    period_start: dt.datetime | None,
    period_end: dt.datetime | None,
    stripe_subscription_id: str = "",
    stripe_customer_id: str = "",
) -> Subscription:
    """Put `member` on `plan` and, for a live status, move their tier to the plan's, in one
    transaction: `Member.tier` must never disagree with the live subscription.

    A member has at most one live subscription; a second one is refused by the database
    (IntegrityError on `subscription_one_live_per_member`), so end the old one first."""
    subscription = Subscription.objects.create(
        member=member,
        plan=plan,
        status=status,
        current_period_start=period_start,
        current_period_end=period_end,
        stripe_subscription_id=stripe_subscription_id,
        stripe_customer_id=stripe_customer_id,
    )
    if subscription.is_live() and member.tier != plan.tier:
        member.tier = plan.tier
        member.save(update_fields=["tier"])
    return subscription
