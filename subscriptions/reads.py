"""Cached reads of the subscriptions app. Writes invalidate them through `subscriptions.services`."""

from __future__ import annotations

from dataclasses import dataclass

from portal.cache import CONFIG, LONG, cached_read
from subscriptions.models import Plan


@dataclass(frozen=True)
class PlanSummary:
    pk: int
    code: str
    name: str
    tier: str
    price_cents: int
    price: str
    interval: str


@cached_read(tier=LONG, namespace=CONFIG)
def plans_on_offer() -> tuple[PlanSummary, ...]:
    """The active plans, cheapest first, as the landing and subscription pages list them.
    They change only when staff edit a plan (`save_plan` invalidates CONFIG)."""
    return tuple(
        PlanSummary(plan.pk, plan.code, plan.name, plan.tier, plan.price_cents, plan.price, plan.interval)
        for plan in Plan.objects.active().only("code", "name", "tier", "price_cents", "currency", "interval")
    )
