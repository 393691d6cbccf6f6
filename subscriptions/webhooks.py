"""Stripe webhook events: verified, logged, and applied exactly once, in any order.

`verify` checks the signature on the raw body; the view then logs the delivery
(`services.record_stripe_event`) and answers at once, and `apply` (run by the task
`subscriptions.tasks.apply_stripe_event`, on a worker) applies the event. The `StripeEvent` row is
the idempotency key: it is locked and marked processed in the same transaction as the event's
effects, so five concurrent deliveries of one event have one effect, and a failed attempt leaves
no partial effect, only the error, for the task's retry, the sweep of unprocessed events, or a
re-process from the admin.

No call to Stripe's API is made while a row is locked: what an event needs from Stripe (the
subscription behind a completed Checkout) is read first, outside any transaction, and only then
is the event's row locked and the state applied.

"""

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
from django.db import transaction
from django.utils import timezone

from members.models import Action, Member
from members.services import record_activity
from subscriptions import stripe_api
from subscriptions.models import StripeEvent, Subscription
from subscriptions.services import BillingError, mark_event_failed, mark_event_processed, sync_stripe_subscription
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


@dataclass(frozen=True)
class Fetched:
    """What an event needed from Stripe's API, read before any lock was taken, and when."""

    state: SubscriptionState
    at: dt.datetime


def apply(event_pk: int) -> Outcome:
    """Apply the stored event `event_pk` unless it was applied before; a failure is kept on the
    row (its error) and returned, never raised."""
    row = StripeEvent.objects.filter(pk=event_pk).first()
    if row is None:
        return Outcome(Status.IGNORED, "no such event")
    if row.processed_at is not None:
        return Outcome(Status.DUPLICATE)
    try:
        fetched = _fetch(row)  # Stripe's API, with no transaction open and no row locked
        with transaction.atomic():
            locked = StripeEvent.objects.select_for_update().get(pk=event_pk)
            if locked.processed_at is not None:  # a concurrent attempt won
                return Outcome(Status.DUPLICATE)
            outcome = _process(locked, fetched)
            mark_event_processed(event=locked, outcome=outcome.detail)
        return outcome
    except Exception as error:  # anything: the event stays unprocessed, with the reason kept
        logger.warning("Stripe event %s (%s) failed: %s", row.stripe_id, row.type, _describe(error))
        mark_event_failed(event=row, error=_describe(error))
        return Outcome(Status.FAILED, str(error))


def _fetch(row: StripeEvent) -> Fetched | None:
    """Read from Stripe what the event's handler needs: a Checkout's subscription, when the
    event carries only its id."""
    if row.type != "checkout.session.completed":
        return None
    obj = (row.payload.get("data") or {}).get("object") or {}
    subscription = obj.get("subscription")
    if obj.get("mode") != "subscription" or not isinstance(subscription, str) or not subscription:
        return None
    if not stripe_api.configured():
        return None
    asked_at = timezone.now()
    return Fetched(state=stripe_api.retrieve_subscription(subscription), at=asked_at)


def _process(row: StripeEvent, fetched: Fetched | None) -> Outcome:
    handler = HANDLERS.get(row.type)
    if handler is None:
        logger.info("Stripe event %s of type %s is not one the portal handles", row.stripe_id, row.type)
        return Outcome(Status.IGNORED, "type not handled")
    obj = (row.payload.get("data") or {}).get("object") or {}
    return Outcome(Status.PROCESSED, handler(obj, row.stripe_created_at, row.type, fetched))


def _describe(error: Exception) -> str:
    if isinstance(error, (BillingError, StripeDataError)):
        return str(error)
    return f"{type(error).__name__}: {error}"


# --- Handlers: each returns what it did, in a few words ----------------------------------------


def _subscription_event(
    obj: Mapping[str, Any], created_at: dt.datetime, event_type: str, fetched: Fetched | None
) -> str:
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


def _checkout_completed(
    obj: Mapping[str, Any], created_at: dt.datetime, event_type: str, fetched: Fetched | None
) -> str:
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
    if fetched is None:
        return f"{subscription}: left to its subscription events (no API key to read it)"
    synced = sync_stripe_subscription(state=fetched.state, state_at=fetched.at, source="checkout", member_id=member_id)
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


def _invoice_paid(obj: Mapping[str, Any], created_at: dt.datetime, event_type: str, fetched: Fetched | None) -> str:
    return _record_payment(obj, Action.PAYMENT_SUCCEEDED, "amount_paid")


def _invoice_payment_failed(
    obj: Mapping[str, Any], created_at: dt.datetime, event_type: str, fetched: Fetched | None
) -> str:
    # The status (past_due, then unpaid or canceled) arrives in customer.subscription.updated.
    return _record_payment(obj, Action.PAYMENT_FAILED, "amount_due", attempt=obj.get("attempt_count"))


HANDLERS: dict[str, Callable[[Mapping[str, Any], dt.datetime, str, Fetched | None], str]] = {
    "checkout.session.completed": _checkout_completed,
    "customer.subscription.created": _subscription_event,
    "customer.subscription.updated": _subscription_event,
    "customer.subscription.deleted": _subscription_event,
    "invoice.paid": _invoice_paid,
    "invoice.payment_failed": _invoice_payment_failed,
}
