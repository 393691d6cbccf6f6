"""The portal's side of Stripe's API: the calls we make, and how we read Stripe's objects.

Everything that crosses the network to Stripe goes through this module, so the services stay
free of Stripe's request shapes and the tests can point `STRIPE_API_BASE` at a stand-in server.
Stripe's objects are read as plain dicts (a webhook payload or `StripeObject.to_dict()`), in both
the shape of API versions before 2025-03-31 (periods on the subscription, `invoice.subscription`)
and after (periods on the subscription item, `invoice.parent.subscription_details`)."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import stripe
from django.conf import settings

from subscriptions.models import SubscriptionStatus

# Seconds to wait for Stripe before a member's click fails with a message; Stripe's default is 80.
REQUEST_TIMEOUT = 10


class StripeDataError(ValueError):
    """A Stripe object lacks what the portal needs (no price, an unknown status)."""


def configured() -> bool:
    """Billing is on: the portal can call Stripe's API."""
    return bool(settings.STRIPE_SECRET_KEY)


def client() -> stripe.StripeClient:
    return _client(settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE)


@functools.lru_cache(maxsize=4)
def _client(api_key: str, api_base: str) -> stripe.StripeClient:
    # One client per key and base, reused: it keeps its HTTP connections open between calls.
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base},
        # Retries use idempotency keys, so a retried POST never creates a second session.
        max_network_retries=2,
        http_client=stripe.RequestsClient(timeout=REQUEST_TIMEOUT),
    )


# The latest Unix time a datetime can hold (9999-12-31T23:59:59Z).
_LAST_TIMESTAMP = 253_402_300_799


def is_timestamp(value: object) -> bool:
    """Whether `value` is a Unix time as Stripe sends one: a whole number (not a bool) that a
    datetime can hold."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _LAST_TIMESTAMP


def timestamp(value: object) -> dt.datetime | None:
    """The time of a Unix timestamp from Stripe, None for none; a StripeDataError (kept as the
    event's reason) for anything else, rather than a TypeError deep in a handler."""
    if value is None:
        return None
    if not isinstance(value, int) or not is_timestamp(value):
        raise StripeDataError(f"{value!r:.40} is not a Unix time.")
    return dt.datetime.fromtimestamp(value, tz=dt.UTC)


def _id(value: str | Mapping[str, Any] | None) -> str:
    """An id from a field Stripe sends either as an id or, when expanded, as the object."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return str(value.get("id", ""))


@dataclass(frozen=True)
class SubscriptionState:
    """What Stripe holds for one subscription, in the terms of our `Subscription` model."""

    id: str
    customer_id: str
    status: SubscriptionStatus
    price_id: str
    item_id: str
    period_start: dt.datetime | None
    period_end: dt.datetime | None
    cancel_at_period_end: bool
    canceled_at: dt.datetime | None
    member_id: int | None

    @classmethod
    def from_stripe(cls, data: Mapping[str, Any]) -> SubscriptionState:
        items = (data.get("items") or {}).get("data") or []
        if not items:
            raise StripeDataError(f"Stripe subscription {data.get('id')} has no items.")
        item = items[0]
        try:
            status = SubscriptionStatus(str(data.get("status")))
        except ValueError:
            raise StripeDataError(f"Stripe subscription {data.get('id')} has an unknown status.") from None
        if status == SubscriptionStatus.COMPED:  # ours alone; Stripe never sends it
            raise StripeDataError(f"Stripe subscription {data.get('id')} has an unknown status.")
        metadata = data.get("metadata") or {}
        raw_member = str(metadata.get("member_id", ""))
        return cls(
            id=str(data["id"]),
            customer_id=_id(data.get("customer")),
            status=status,
            price_id=_id(item.get("price")),
            item_id=str(item.get("id", "")),
            period_start=timestamp(item.get("current_period_start", data.get("current_period_start"))),
            period_end=timestamp(item.get("current_period_end", data.get("current_period_end"))),
            cancel_at_period_end=bool(data.get("cancel_at_period_end")),
            canceled_at=timestamp(data.get("canceled_at")),
            member_id=int(raw_member) if raw_member.isascii() and raw_member.isdigit() else None,
        )


def invoice_subscription_id(invoice: Mapping[str, Any]) -> str:
    """The subscription an invoice bills, or "" for a one-off invoice."""
    details = ((invoice.get("parent") or {}).get("subscription_details")) or {}
    return _id(details.get("subscription")) or _id(invoice.get("subscription"))


# --- Calls -------------------------------------------------------------------------------------


def create_checkout_session(
    *, member_id: int, email: str, customer_id: str, price_id: str, success_url: str, cancel_url: str
) -> str:
    """A hosted Checkout page that subscribes the member to `price_id`; returns its URL.

    The member's id travels in the session and in the subscription's metadata, so the webhooks
    can find the member whichever event arrives first."""
    params: dict[str, Any] = {
        "mode": "subscription",
        "line_items": [{"price": price_id, "quantity": 1}],
        "success_url": success_url,
        "cancel_url": cancel_url,
        "client_reference_id": str(member_id),
        "metadata": {"member_id": str(member_id)},
        "subscription_data": {"metadata": {"member_id": str(member_id)}},
    }
    if customer_id:
        params["customer"] = customer_id
    else:
        params["customer_email"] = email
    session = client().v1.checkout.sessions.create(params=params)  # type: ignore[arg-type]
    return str(session.url)


def retrieve_checkout_session(session_id: str) -> dict[str, Any]:
    session = client().v1.checkout.sessions.retrieve(session_id, params={"expand": ["subscription"]})
    return session.to_dict()


def create_portal_session(
    *, customer_id: str, return_url: str, change: SubscriptionState | None = None, price_id: str = ""
) -> str:
    """Stripe's customer portal for the member's billing; returns its URL. With `change`, the
    portal opens on the confirmation of moving that subscription to `price_id`."""
    params: dict[str, Any] = {"customer": customer_id, "return_url": return_url}
    if change is not None:
        params["flow_data"] = {
            "type": "subscription_update_confirm",
            "subscription_update_confirm": {
                "subscription": change.id,
                "items": [{"id": change.item_id, "price": price_id, "quantity": 1}],
            },
            "after_completion": {"type": "redirect", "redirect": {"return_url": return_url}},
        }
    session = client().v1.billing_portal.sessions.create(params=params)  # type: ignore[arg-type]
    return str(session.url)


def retrieve_subscription(subscription_id: str) -> SubscriptionState:
    return SubscriptionState.from_stripe(client().v1.subscriptions.retrieve(subscription_id).to_dict())


def set_cancel_at_period_end(subscription_id: str, *, cancel: bool) -> SubscriptionState:
    updated = client().v1.subscriptions.update(subscription_id, params={"cancel_at_period_end": cancel})
    return SubscriptionState.from_stripe(updated.to_dict())


def cancel_subscription(subscription_id: str) -> SubscriptionState:
    """End a subscription now, not at its period's end: for an account being deleted."""
    return SubscriptionState.from_stripe(client().v1.subscriptions.cancel(subscription_id).to_dict())


def all_subscriptions() -> Iterator[dict[str, Any]]:
    """Every subscription of the account, ended ones included, a page of 100 at a time."""
    pages = client().v1.subscriptions.list(params={"status": "all", "limit": 100})
    for subscription in pages.auto_paging_iter():
        yield subscription.to_dict()
