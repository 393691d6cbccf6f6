"""Background work of subscriptions, run by Celery workers (eagerly, in the caller, without a
broker). Each task calls the same service the management command does."""

from __future__ import annotations

import datetime as dt
from typing import Any

from celery import Task, shared_task
from celery.result import EagerResult
from django.utils import timezone

from core.jobs import run_scheduled
from subscriptions import stripe_api, webhooks
from subscriptions.models import StripeEvent
from subscriptions.services import expire_comps as expire_due_comps
from subscriptions.services import reconcile_stripe as reconcile_with_stripe

# A failed event is tried again after 10 s, 40 s and 160 s; after that the sweep below (every 10
# minutes, for three days: Stripe's own retry window) and staff in the admin take over.
EVENT_RETRIES = 3
SWEEP_WINDOW = dt.timedelta(days=3)
SWEEP_AFTER = dt.timedelta(minutes=2)


@shared_task(bind=True, name="subscriptions.apply_stripe_event", acks_late=True, time_limit=120, soft_time_limit=90)
def apply_stripe_event(self: Task[Any, Any], event_pk: int) -> dict[str, str]:
    """Apply one stored Stripe event, exactly once however often it is queued (the row lock and
    `processed_at` decide). A failure is kept on the event and retried with backoff."""
    outcome = webhooks.apply(event_pk)
    if outcome.status is webhooks.Status.FAILED and not self.request.is_eager and self.request.retries < EVENT_RETRIES:
        raise self.retry(countdown=10 * 4**self.request.retries)
    return {"status": outcome.status.value, "detail": outcome.detail}


def queue_stripe_event(event_pk: int) -> dict[str, str] | None:
    """Queue the event's task. None once queued for a worker; run eagerly (no broker), its
    outcome: {"status": ..., "detail": ...}."""
    result = apply_stripe_event.delay(event_pk)
    if not isinstance(result, EagerResult):
        return None
    if isinstance(result.result, dict):
        return result.result
    return {"status": webhooks.Status.FAILED.value, "detail": f"{type(result.result).__name__}: {result.result}"}


@shared_task(name="subscriptions.retry_stripe_events", time_limit=300)
def retry_stripe_events() -> str | None:
    """Queue again every stored event that is still unprocessed a while after its delivery: one
    whose retries ran out, or whose task was never queued (the broker was down at delivery)."""

    def work() -> str:
        now = timezone.now()
        pending = list(
            StripeEvent.objects.filter(
                processed_at__isnull=True,
                received_at__gte=now - SWEEP_WINDOW,
                last_received_at__lte=now - SWEEP_AFTER,
            ).values_list("pk", flat=True)[:500]
        )
        for pk in pending:
            apply_stripe_event.delay(pk)
        return f"queued {len(pending)} unprocessed event(s)"

    return run_scheduled("retry_stripe_events", work)


@shared_task(name="subscriptions.expire_comps", time_limit=300)
def expire_comps() -> str | None:
    """`expire_subscriptions`, every minute."""

    def work() -> str:
        return f"ended {expire_due_comps(at=timezone.now())} comp(s)"

    return run_scheduled("expire_comps", work)


@shared_task(name="subscriptions.reconcile_stripe", time_limit=1800, soft_time_limit=1700)
def reconcile_stripe() -> str | None:
    """`reconcile_stripe`, daily. A run Stripe could not answer fails (and is retried next
    period), so its last success stays old and the overdue alert fires."""

    def work() -> str:
        if not stripe_api.configured():
            return "billing is off (STRIPE_SECRET_KEY is not set): nothing to compare"
        run = reconcile_with_stripe(dry_run=False)
        if run.error:
            raise RuntimeError(run.error)
        return f"checked {run.checked}, drifted {run.drifted}, repaired {run.repaired}"

    return run_scheduled("reconcile_stripe", work)
