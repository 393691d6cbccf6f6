"""Stripe webhook events: verified, logged, and applied exactly once, in any order.

`verify` checks the signature on the raw body; `receive` logs the delivery and applies the
event. The `StripeEvent` row is the idempotency key: it is locked (or inserted) and marked
processed in the same transaction as the event's effects, so five concurrent deliveries of one
event have one effect, and a failed attempt leaves no partial effect, only the error, for Stripe's
next retry or a re-process from the admin."""

from __future__ import annotations

import datetime as dt
import enum
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from core.cache import STAFF, invalidate_on_commit
from members.models import Action, Member
from members.services import record_activity
from subscriptions import stripe_api
from subscriptions.models import StripeEvent, Subscription
from subscriptions.services import BillingError, refresh_from_stripe, sync_stripe_subscription
from subscriptions.stripe_api import StripeDataError, SubscriptionState

logger = logging.getLogger(__name__)


class WebhookRejected(Exception):
    """A delivery we will not act on; `code` is stable for tools, the message is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def verify(payload: bytes, signature: str | None) -> dict[str, Any]:
    """The event in `payload`, if `signature` is Stripe's for it under one of our secrets (two
    are accepted while a secret is rotated) and no older than the tolerance."""
    secrets: list[str] = settings.STRIPE_WEBHOOK_SECRETS
    if not secrets:
        raise WebhookRejected("webhook_not_configured", "No webhook signing secret is configured.")
    if not signature:
        raise WebhookRejected("missing_signature", "The Stripe-Signature header is missing.")
    try:
        body = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRejected("invalid_payload", "The body is not UTF-8.") from None
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(body, signature, secret, tolerance=settings.STRIPE_WEBHOOK_TOLERANCE)
        except stripe.SignatureVerificationError:
            continue
        break
    else:
        raise WebhookRejected("invalid_signature", "The signature does not match, or it is too old.")
    try:
        event = json.loads(body)
    except ValueError:
        raise WebhookRejected("invalid_payload", "The body is not JSON.") from None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str):
        raise WebhookRejected("invalid_payload", "The body is not a Stripe event.")
    _check_fields(event)
    return event


def _check_fields(event: dict[str, Any]) -> None:
    """Refuse, before anything is stored, a signed event whose own fields are not of the kind
    Stripe sends: they would fail the same way on every retry, and fail again while the failure
    was being recorded. The fields of `data.object` are each handler's to check."""
    problems = []
    if not event["id"] or len(event["id"]) > StripeEvent._meta.get_field("stripe_id").max_length:  # type: ignore[operator]
        problems.append("`id` is empty or too long")
    if not event["type"] or len(event["type"]) > StripeEvent._meta.get_field("type").max_length:  # type: ignore[operator]
        problems.append("`type` is empty or too long")
    if not stripe_api.is_timestamp(event.get("created")):
        problems.append("`created` is not a Unix time")
    if not isinstance(event.get("livemode", False), bool):
        problems.append("`livemode` is not true or false")
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        problems.append("`data.object` is not an object")
    if problems:
        raise WebhookRejected("invalid_event", f"The event is malformed: {'; '.join(problems)}.")


class Status(enum.StrEnum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    status: Status
    detail: str = ""


def receive(event: Mapping[str, Any]) -> Outcome:
    """Log one delivery of `event` and apply it unless it was applied before."""
    now = timezone.now()
    try:
        with transaction.atomic():
            row = _lock_or_insert(event, now)
            if row.processed_at is not None:
                return Outcome(Status.DUPLICATE)
            return _process(row)
    except Exception as error:  # anything: the event stays unprocessed, with the reason kept
        _record_failure(event, now, error)
        return Outcome(Status.FAILED, str(error))


def reprocess(event: StripeEvent) -> Outcome:
    """Apply a stored event again (staff, after fixing what made it fail)."""
    try:
        with transaction.atomic():
            row = StripeEvent.objects.select_for_update().get(pk=event.pk)
            if row.processed_at is not None:
                return Outcome(Status.DUPLICATE)
            return _process(row)
    except Exception as error:
        StripeEvent.objects.filter(pk=event.pk).update(error=_describe(error))
        invalidate_on_commit(STAFF)
        return Outcome(Status.FAILED, str(error))


def _lock_or_insert(event: Mapping[str, Any], now: dt.datetime) -> StripeEvent:
    """The event's row, locked for this transaction, with this delivery counted; inserted on the
    first delivery. A concurrent first delivery waits on the unique index until the inserting
    transaction ends, then finds its row (processed, or to process if that transaction failed)."""
    row = StripeEvent.objects.select_for_update().filter(stripe_id=event["id"]).first()
    if row is not None:
        StripeEvent.objects.filter(pk=row.pk).update(deliveries=F("deliveries") + 1, last_received_at=now)
        return row
    try:
        with transaction.atomic():
            return StripeEvent.objects.create(
                stripe_id=event["id"],
                type=event["type"],
                livemode=bool(event.get("livemode")),
                stripe_created_at=stripe_api.timestamp(event.get("created")) or now,
                payload=dict(event),
                received_at=now,
                last_received_at=now,
            )
    except IntegrityError:
        row = StripeEvent.objects.select_for_update().get(stripe_id=event["id"])
        StripeEvent.objects.filter(pk=row.pk).update(deliveries=F("deliveries") + 1, last_received_at=now)
        return row


def _process(row: StripeEvent) -> Outcome:
    handler = HANDLERS.get(row.type)
    if handler is None:
        logger.info("Stripe event %s of type %s is not one the portal handles", row.stripe_id, row.type)
        outcome = Outcome(Status.IGNORED, "type not handled")
    else:
        obj = (row.payload.get("data") or {}).get("object") or {}
        outcome = Outcome(Status.PROCESSED, handler(obj, row.stripe_created_at, row.type))
    StripeEvent.objects.filter(pk=row.pk).update(processed_at=timezone.now(), outcome=outcome.detail[:255], error="")
    invalidate_on_commit(STAFF)
    return outcome


def _describe(error: Exception) -> str:
    if isinstance(error, (BillingError, StripeDataError)):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _record_failure(event: Mapping[str, Any], now: dt.datetime, error: Exception) -> None:
    logger.warning("Stripe event %s (%s) failed: %s", event.get("id"), event.get("type"), _describe(error))
    with transaction.atomic():
        row, created = StripeEvent.objects.get_or_create(
            stripe_id=event["id"],
            defaults={
                "type": event["type"],
                "livemode": bool(event.get("livemode")),
                "stripe_created_at": stripe_api.timestamp(event.get("created")) or now,
                "payload": dict(event),
                "received_at": now,
                "last_received_at": now,
                "error": _describe(error),
            },
        )
        if not created:
            # Not over a concurrent delivery that has processed the event meanwhile.
            StripeEvent.objects.filter(pk=row.pk, processed_at__isnull=True).update(
                error=_describe(error), last_received_at=now, deliveries=F("deliveries") + 1
            )
        invalidate_on_commit(STAFF)


# --- Handlers: each returns what it did, in a few words ----------------------------------------


def _subscription_event(obj: Mapping[str, Any], created_at: dt.datetime, event_type: str) -> str:
    state = SubscriptionState.from_stripe(obj)
    synced = sync_stripe_subscription(
        state=state,
        state_at=created_at,
        source="webhook",
        newer_only=event_type == "customer.subscription.created",
    )
    if synced is None:
        return f"{state.id}: older than the state held, not applied"
    return f"{state.id}: {synced.status}"


def _checkout_completed(obj: Mapping[str, Any], created_at: dt.datetime, event_type: str) -> str:
    """A member finished Checkout. The subscription events carry its state too; reading it here
    as well means the member sees their plan even if those events are late."""
    if obj.get("mode") != "subscription" or not obj.get("subscription"):
        return "not a subscription checkout"
    reference = str(obj.get("client_reference_id") or "")
    member_id = (
        int(reference)
        if reference.isascii() and reference.isdigit() and Member.objects.filter(pk=int(reference)).exists()
        else None
    )
    subscription = obj["subscription"]
    if isinstance(subscription, Mapping):
        synced = sync_stripe_subscription(
            state=SubscriptionState.from_stripe(subscription),
            state_at=created_at,
            source="checkout",
            member_id=member_id,
        )
        return f"{subscription.get('id')}: {synced.status if synced else 'older than the state held'}"
    if not stripe_api.configured():
        return f"{subscription}: left to its subscription events (no API key to read it)"
    synced = refresh_from_stripe(subscription_id=str(subscription), source="checkout", member_id=member_id)
    return f"{subscription}: {synced.status if synced else 'older than the state held'}"


def _invoice_member(invoice: Mapping[str, Any]) -> tuple[Member, Subscription] | None:
    subscription_id = stripe_api.invoice_subscription_id(invoice)
    if not subscription_id:
        return None
    subscription = Subscription.objects.select_related("member").filter(stripe_subscription_id=subscription_id).first()
    if subscription is None:
        # The subscription's own events have not arrived yet: fail, and Stripe's retry will find it.
        raise BillingError(f"Invoice {invoice.get('id')} bills subscription {subscription_id}, which is not known yet.")
    return subscription.member, subscription


def _record_payment(obj: Mapping[str, Any], action: Action, amount_field: str, **extra: Any) -> str:
    found = _invoice_member(obj)
    if found is None:
        return "not a subscription invoice"
    member, subscription = found
    amount, currency = obj.get(amount_field), obj.get("currency")
    detail = {"invoice": obj.get("id"), "subscription": subscription.pk, "amount_cents": amount, "currency": currency}
    record_activity(member=member, action=action, detail={**detail, **extra})
    return f"{action.label.lower()}: {amount} {currency} recorded"


def _invoice_paid(obj: Mapping[str, Any], created_at: dt.datetime, event_type: str) -> str:
    return _record_payment(obj, Action.PAYMENT_SUCCEEDED, "amount_paid")


def _invoice_payment_failed(obj: Mapping[str, Any], created_at: dt.datetime, event_type: str) -> str:
    # The status (past_due, then unpaid or canceled) arrives in customer.subscription.updated.
    return _record_payment(obj, Action.PAYMENT_FAILED, "amount_due", attempt=obj.get("attempt_count"))


HANDLERS: dict[str, Callable[[Mapping[str, Any], dt.datetime, str], str]] = {
    "checkout.session.completed": _checkout_completed,
    "customer.subscription.created": _subscription_event,
    "customer.subscription.updated": _subscription_event,
    "customer.subscription.deleted": _subscription_event,
    "invoice.paid": _invoice_paid,
    "invoice.payment_failed": _invoice_payment_failed,
}
