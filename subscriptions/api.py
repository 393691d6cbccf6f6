"""The subscriptions' part of the JSON API (`/api/v1/`): the caller's subscription and the plans
on offer. Mounted by `portal.api`; errors come from `core.api`, authentication from `members.api_auth`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ninja import Field, Router, Schema

from core.api import documented
from core.cache import MEDIUM, MEMBER, cached_read
from members.api_auth import READ, TokenRequest
from members.models import Tier
from subscriptions.models import PlanInterval, Subscription, SubscriptionStatus
from subscriptions.reads import PlanSummary, plans_on_offer


class PlanOut(Schema):
    id: int
    code: str
    name: str
    tier: Tier
    price_cents: int = Field(description="Price per interval, in the currency's minor unit (cents).")
    price: str = Field(description="The price for people, with its currency: `9.00 USD`.")
    interval: PlanInterval


class PlanList(Schema):
    items: list[PlanOut] = Field(description="The plans members may choose now, cheapest first.")


class SubscriptionOut(Schema):
    """The member's live subscription. A member without one is on the free tier, and every
    subscription field is null (or false)."""

    tier: Tier = Field(description="The member's tier: their live subscription's plan's, or free.")
    plan: PlanOut | None
    status: SubscriptionStatus | None
    current_period_start: dt.datetime | None
    current_period_end: dt.datetime | None
    cancel_at_period_end: bool
    renews: bool = Field(description="Whether current_period_end is a renewal date rather than an end date.")


@dataclass(frozen=True)
class LiveSubscription:
    """Plain values only: a cached entry must not depend on the shape of a model instance."""

    plan: PlanSummary
    status: str
    current_period_start: dt.datetime | None
    current_period_end: dt.datetime | None
    cancel_at_period_end: bool
    renews: bool


@cached_read(tier=MEDIUM, namespace=MEMBER)
def live_subscription(member_id: int) -> LiveSubscription | None:
    """The member's live subscription, if any. `start_subscription` and `update_subscription`
    invalidate MEMBER."""
    subscription = Subscription.objects.filter(member_id=member_id).live().first()
    if subscription is None:
        return None
    return LiveSubscription(
        plan=PlanSummary.of(subscription.plan),
        status=subscription.status,
        current_period_start=subscription.current_period_start,
        current_period_end=subscription.current_period_end,
        cancel_at_period_end=subscription.cancel_at_period_end,
        renews=subscription.renews(),
    )


def _plan(plan: PlanSummary) -> PlanOut:
    return PlanOut(
        id=plan.pk,
        code=plan.code,
        name=plan.name,
        tier=Tier(plan.tier),
        price_cents=plan.price_cents,
        price=plan.price,
        interval=PlanInterval(plan.interval),
    )


router = Router(tags=["subscriptions"])


@router.get(
    "/subscription",
    auth=READ,
    operation_id="get_subscription",
    response=documented({200: SubscriptionOut, 304: None}),
)
def get_subscription(request: TokenRequest) -> SubscriptionOut:
    """The member's tier and live subscription."""
    member = request.auth.member
    live = live_subscription(member.pk)
    return SubscriptionOut(
        tier=Tier(member.tier),
        plan=_plan(live.plan) if live else None,
        status=SubscriptionStatus(live.status) if live else None,
        current_period_start=live.current_period_start if live else None,
        current_period_end=live.current_period_end if live else None,
        cancel_at_period_end=live.cancel_at_period_end if live else False,
        renews=live.renews if live else False,
    )


@router.get("/plans", auth=READ, operation_id="list_plans", response=documented({200: PlanList, 304: None}))
def list_plans(request: TokenRequest) -> PlanList:
    """The plans on offer, cheapest first."""
    return PlanList(items=[_plan(plan) for plan in plans_on_offer()])
