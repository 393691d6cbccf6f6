"""Every write to the Stripe event log goes through subscriptions/services.py: the webhook view
records deliveries, the task marks events processed or failed, the admin queues the task. Each
caller leaves exactly what the service leaves."""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from members.models import Member
from subscriptions import services, webhooks
from subscriptions.models import StripeEvent
from tests.subscriptions import fake_stripe
from tests.subscriptions.conftest import deliver

pytestmark = pytest.mark.usefixtures("plans", "webhook_secrets")
ROOT = Path(__file__).resolve().parents[2]
WRITES = {"create", "update", "get_or_create", "update_or_create", "bulk_create", "bulk_update", "delete", "save"}


def _row(stripe_id: str) -> dict[str, Any]:
    values = StripeEvent.objects.filter(stripe_id=stripe_id).values().get()
    return {key: value for key, value in values.items() if key not in {"id", "received_at", "last_received_at"}}


def test_no_module_but_the_service_writes_the_event_log() -> None:
    offenders = []
    for path in [*ROOT.glob("subscriptions/*.py"), *ROOT.glob("portal/*.py"), *ROOT.glob("monitoring/*.py")]:
        if path.name == "services.py" and path.parent.name == "subscriptions":
            continue
        source = path.read_text()
        if "StripeEvent" not in source:
            continue
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Attribute) and node.attr in WRITES and "StripeEvent" in ast.unparse(node.value):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    assert offenders == []


def test_a_delivery_through_the_view_leaves_what_the_services_leave(client: Client, alice: Member) -> None:
    invoice = fake_stripe.invoice(sub_id="sub_test_unknown")  # fails: its subscription is not known yet
    by_view = fake_stripe.event("invoice.paid", invoice, created=1_800_000_000)
    by_services = {**by_view, "id": "evt_test_by_services"}

    deliver(client, by_view)
    webhooks.apply(services.record_stripe_event(event=by_services).pk)

    def kept(stripe_id: str) -> dict[str, Any]:
        row = _row(stripe_id)
        assert row["processed_at"] is None and "not known yet" in row["error"]
        return {**row, "stripe_id": "…", "payload": {**row["payload"], "id": "…"}}

    assert kept(by_view["id"]) == kept(by_services["id"])
    assert _row(by_view["id"])["deliveries"] == 1


def test_record_stripe_event_counts_every_later_delivery_and_changes_nothing_else(db: None) -> None:
    event = fake_stripe.event("invoice.paid", {"id": "in_1"}, created=1_800_000_000)
    first = services.record_stripe_event(event=event, now=timezone.now() - dt.timedelta(minutes=5))

    again = services.record_stripe_event(event=event)

    assert (first.deliveries, again.deliveries) == (1, 2)
    assert again.last_received_at > first.last_received_at
    assert (again.received_at, again.payload, again.stripe_created_at) == (
        first.received_at,
        event,
        dt.datetime.fromtimestamp(1_800_000_000, tz=dt.UTC),
    )
    assert (again.processed_at, again.error) == (None, "")


def test_mark_event_failed_keeps_the_error_but_never_over_a_processed_event(db: None) -> None:
    row = services.record_stripe_event(event=fake_stripe.event("invoice.paid", {"id": "in_2"}))
    why = "Invoice in_2 bills subscription sub_x, which is not known yet."

    services.mark_event_failed(event=row, error=why)
    failed = StripeEvent.objects.get(pk=row.pk)
    services.mark_event_processed(event=row, outcome="payment succeeded: 900 usd recorded")
    services.mark_event_failed(event=row, error="a late attempt failing")
    processed = StripeEvent.objects.get(pk=row.pk)

    assert (failed.processed_at, failed.error) == (None, why)
    assert list(StripeEvent.objects.failed()) == []
    assert processed.processed_at is not None
    assert (processed.error, processed.outcome) == ("", "payment succeeded: 900 usd recorded")
