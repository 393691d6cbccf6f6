"""The member dashboard's data: one cached read per member, invalidated by every service that
changes what it shows (profile, tokens, activity, subscription, member status)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from core.cache import MEDIUM, MEMBER, cached_read
from members.models import ActivityLog, ApiToken, Profile
from subscriptions.models import Subscription

RECENT_ACTIVITY = 10


@dataclass(frozen=True)
class SubscriptionSummary:
    plan_name: str
    status: str
    current_period_end: dt.datetime | None
    renews: bool


@dataclass(frozen=True)
class TokenSummary:
    name: str
    prefix: str
    last_chars: str
    expires_at: dt.datetime | None


@dataclass(frozen=True)
class ActivitySummary:
    action: str
    created_at: dt.datetime
    ip: str | None


@dataclass(frozen=True)
class DashboardSummary:
    """Plain values only: a cached entry must not depend on the shape of a model instance."""

    display_name: str
    time_zone: str
    subscription: SubscriptionSummary | None
    live_token_count: int
    next_to_expire: TokenSummary | None
    activity: tuple[ActivitySummary, ...]


@cached_read(tier=MEDIUM, namespace=MEMBER)
def dashboard_summary(member_id: int) -> DashboardSummary:
    """Five queries, each served by an index on the member, whatever the size of their data."""
    profile = Profile.objects.only("display_name", "time_zone").get(member_id=member_id)
    subscription = Subscription.objects.filter(member_id=member_id).live().first()
    live_tokens = ApiToken.objects.filter(member_id=member_id).live()
    next_token = live_tokens.expiring().only("name", "prefix", "last_chars", "expires_at").first()
    activity = ActivityLog.objects.filter(member_id=member_id).recent().only("action", "created_at", "ip")
    return DashboardSummary(
        display_name=profile.display_name,
        time_zone=profile.time_zone,
        subscription=SubscriptionSummary(
            plan_name=subscription.plan.name,
            status=subscription.get_status_display(),
            current_period_end=subscription.current_period_end,
            renews=subscription.renews(),
        )
        if subscription
        else None,
        live_token_count=live_tokens.count(),
        next_to_expire=TokenSummary(next_token.name, next_token.prefix, next_token.last_chars, next_token.expires_at)
        if next_token
        else None,
        activity=tuple(
            ActivitySummary(entry.get_action_display(), entry.created_at, entry.ip)
            for entry in activity[:RECENT_ACTIVITY]
        ),
    )
