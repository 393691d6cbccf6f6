"""Writes on subscriptions. Views, admin, webhooks and commands all call these."""

from __future__ import annotations

import datetime as dt

from django.db import transaction

from members.models import Member
from portal.cache import CONFIG, MEMBER, STAFF, invalidate_on_commit
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
    invalidate_on_commit(MEMBER, member.pk)
    invalidate_on_commit(STAFF)
    return subscription


@transaction.atomic
def update_subscription(*, subscription: Subscription, fields: list[str]) -> None:
    """Save fields of a subscription that do not move the member's tier (dates, the
    cancel-at-period-end flag, Stripe ids), as staff edit them in the admin."""
    if fields:
        subscription.save(update_fields=[*fields, "updated_at"])
    invalidate_on_commit(MEMBER, subscription.member_id)
    invalidate_on_commit(STAFF)


@transaction.atomic
def save_plan(*, plan: Plan) -> Plan:
    """Create or change a plan (as staff do in the admin); cached plan lists follow at once."""
    plan.save()
    invalidate_on_commit(CONFIG)
    return plan
