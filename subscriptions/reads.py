"""Cached reads of the subscriptions app. Writes invalidate them through `subscriptions.services`
and `subscriptions.webhooks`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Max

from core.cache import CONFIG, LONG, SHORT, STAFF, cached_read
from subscriptions.models import Plan, ReconciliationRun, StripeEvent


@dataclass(frozen=True)
class PlanSummary:
    pk: int
    code: str
    name: str
    tier: str
    price_cents: int
    price: str
    interval: str
    # Paid, with a Stripe price: members can subscribe to it through Checkout.
    purchasable: bool

    @classmethod
    def of(cls, plan: Plan) -> PlanSummary:
        return cls(
            plan.pk,
            plan.code,
            plan.name,
            plan.tier,
            plan.price_cents,
            plan.price,
            plan.interval,
            purchasable=plan.price_cents > 0 and bool(plan.stripe_price_id),
        )


@cached_read(tier=LONG, namespace=CONFIG)
def plans_on_offer() -> tuple[PlanSummary, ...]:
    """The active plans, cheapest first, as the landing and subscription pages list them.
    They change only when staff edit a plan (`save_plan` invalidates CONFIG)."""
    return tuple(
        PlanSummary.of(plan)
        for plan in Plan.objects.active().only(
            "code", "name", "tier", "price_cents", "currency", "interval", "stripe_price_id"
        )
    )


@dataclass(frozen=True)
class StripeSyncStatus:
    """How closely the portal follows Stripe, for health checks and metrics."""

    # Webhooks can be verified: a signing secret is set.
    configured: bool
    last_event_processed_at: dt.datetime | None
    # Deliveries whose processing failed and has not succeeded since.
    failed_events: int
    # Subscriptions the latest reconciliation found out of step with Stripe; None before the first.
    drifted: int | None
    reconciled_at: dt.datetime | None


@cached_read(tier=SHORT, namespace=STAFF)
def stripe_sync_status() -> StripeSyncStatus:
    """Three index-served queries; every processed or failed event invalidates STAFF, and so
    does every reconciliation, so this is never staler than the events it counts."""
    last = StripeEvent.objects.aggregate(at=Max("processed_at"))["at"]
    failed = StripeEvent.objects.failed().count()
    run = ReconciliationRun.objects.filter(finished_at__isnull=False, dry_run=False).order_by("-finished_at").first()
    return StripeSyncStatus(
        configured=bool(settings.STRIPE_WEBHOOK_SECRETS),
        last_event_processed_at=last,
        failed_events=failed,
        drifted=run.drifted if run else None,
        reconciled_at=run.finished_at if run else None,
    )
