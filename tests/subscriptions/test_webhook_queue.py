"""Stripe's webhook on the real job queue: a delivery is stored and answered at once, a worker
process applies it, exactly once and in any order; and no Stripe API call is made while the
database holds a lock for the event."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from members.models import Action, ActivityLog, Member, Tier
from subscriptions.models import StripeEvent, Subscription, SubscriptionStatus
from tests import background
from tests.subscriptions import fake_stripe
from tests.subscriptions.conftest import deliver
from tests.subscriptions.fake_stripe import Call, FakeStripe
from tests.subscriptions.test_webhooks import deliver_concurrently

T0 = 1_800_000_000

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("plans", "webhook_secrets"),
]


@pytest.fixture
def queue() -> Iterator[str]:
    with background.queueing() as url:
        yield url


@pytest.fixture
def worker(queue: str, tmp_path: Path, stripe_server: FakeStripe) -> Iterator[background.Process]:
    """A worker process, billing configured against the fake Stripe."""
    process = background.start_worker(
        tmp_path / "worker.log", STRIPE_SECRET_KEY="sk_test_portal", STRIPE_API_BASE=stripe_server.url
    )
    yield process
    process.stop()


def _tier(member: Member) -> str:
    member.refresh_from_db()
    return member.tier


def _all_processed(count: int) -> bool:
    return StripeEvent.objects.filter(processed_at__isnull=False).count() >= count


def test_a_delivery_is_answered_before_its_effect_which_a_worker_applies(
    client: Client, alice: Member, queue: str, tmp_path: Path, stripe_server: FakeStripe
) -> None:
    event = fake_stripe.event("customer.subscription.created", fake_stripe.subscription(member_id=alice.pk))

    started = time.perf_counter()
    response = deliver(client, event)
    answered_in = time.perf_counter() - started

    # No worker runs yet: the answer came, the event is stored, and nothing is applied.
    assert (response.status_code, response.json()["status"]) == (200, "accepted")
    row = StripeEvent.objects.get()
    assert (row.processed_at, row.deliveries) == (None, 1)
    assert _tier(alice) == Tier.FREE
    assert not Subscription.objects.exists()

    process = background.start_worker(tmp_path / "worker.log")
    try:
        background.wait_for(lambda: _all_processed(1), timeout=20, what="the worker to apply the event")
    finally:
        process.stop()
    assert _tier(alice) == Tier.BASIC
    print(f"answered in {answered_in * 1000:.0f} ms; applied by the worker")


def test_a_checkout_is_answered_faster_than_stripe_and_read_from_stripe_by_the_worker(
    client: Client, alice: Member, stripe_server: FakeStripe, worker: background.Process
) -> None:
    stripe_server.on_call = lambda call: time.sleep(1.0)  # a Stripe that takes a second to answer
    sub = stripe_server.add(fake_stripe.subscription(customer="cus_test_new"))
    session = {
        "id": "cs_test_1",
        "object": "checkout.session",
        "client_reference_id": str(alice.pk),
        "customer": "cus_test_new",
        "mode": "subscription",
        "subscription": sub["id"],
    }

    started = time.perf_counter()
    response = deliver(client, fake_stripe.event("checkout.session.completed", session))
    answered_in = time.perf_counter() - started

    assert response.json()["status"] in {"accepted", "processed"}
    assert answered_in < 1.0  # under one Stripe call: the web process did not make it
    background.wait_for(lambda: _all_processed(1), timeout=20, what="the worker to apply the checkout")
    assert [call.path for call in stripe_server.calls] == [f"/v1/subscriptions/{sub['id']}"]
    assert _tier(alice) == Tier.BASIC


def test_five_concurrent_duplicate_deliveries_have_one_effect_through_the_queue(
    alice: Member, worker: background.Process
) -> None:
    sub = fake_stripe.subscription(member_id=alice.pk)
    deliver(Client(), fake_stripe.event("customer.subscription.created", sub))
    background.wait_for(lambda: _all_processed(1), timeout=20, what="the subscription to arrive")
    paid = fake_stripe.event("invoice.paid", fake_stripe.invoice(sub_id=sub["id"]))
    payload = json.dumps(paid)
    answers = deliver_concurrently(payload)

    assert len(answers) == 5 and all(answer in {"200 accepted", "200 duplicate"} for answer in answers), answers
    background.wait_for(lambda: _all_processed(2), timeout=20, what="the invoice to be applied")
    time.sleep(1)  # every queued copy has had time to run
    assert ActivityLog.objects.filter(member=alice, action=Action.PAYMENT_SUCCEEDED).count() == 1
    row = StripeEvent.objects.get(stripe_id=paid["id"])
    assert (row.deliveries, row.error) == (5, "")
    print(f"answers: {sorted(answers)}; effects: 1")


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))), ids=lambda order: "-".join(map(str, order)))
def test_every_order_of_created_updated_deleted_through_the_queue_ends_as_stripe_holds(
    client: Client, alice: Member, worker: background.Process, order: tuple[int, int, int]
) -> None:
    sub: dict[str, Any] = {"sub_id": "sub_test_order", "member_id": alice.pk, "start": T0}
    final = fake_stripe.subscription(**sub, price_id="price_pro", status="canceled", canceled_at=T0 + 120)
    events = [
        fake_stripe.event("customer.subscription.created", fake_stripe.subscription(**sub), created=T0),
        fake_stripe.event(
            "customer.subscription.updated",
            fake_stripe.subscription(**sub, price_id="price_pro", cancel_at_period_end=True),
            created=T0 + 60,
        ),
        fake_stripe.event("customer.subscription.deleted", final, created=T0 + 120),
    ]

    for index in order:
        assert deliver(client, events[index]).status_code == 200
    background.wait_for(lambda: _all_processed(3), timeout=20, what="the three events to be applied")

    subscription = Subscription.objects.select_related("plan").get(stripe_subscription_id="sub_test_order")
    assert subscription.status == SubscriptionStatus.CANCELED
    assert subscription.plan.stripe_price_id == "price_pro"
    assert subscription.canceled_at is not None and subscription.canceled_at.timestamp() == final["canceled_at"]
    assert _tier(alice) == Tier.FREE


def _open_transactions(seen: list[str]) -> Any:
    """A Stripe call hook: records every other connection to the test database that has a
    transaction open (so may hold row locks) at the moment Stripe is called."""
    params = connection.get_connection_params()

    def look(call: Call) -> None:
        import psycopg

        with psycopg.connect(**params) as other:
            rows = other.execute(
                "SELECT state, left(query, 80) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND (state LIKE 'idle in transaction%%' OR backend_xid IS NOT NULL)"
            ).fetchall()
        seen.extend(f"{state}: {query}" for state, query in rows)
        seen.append("called")

    return look


@pytest.mark.usefixtures("queue")
def test_no_stripe_call_is_made_while_the_worker_holds_a_lock(
    client: Client, alice: Member, stripe_server: FakeStripe, worker: background.Process
) -> None:
    seen: list[str] = []
    stripe_server.on_call = _open_transactions(seen)
    sub = stripe_server.add(fake_stripe.subscription(customer="cus_test_new"))
    session = {"id": "cs_1", "object": "checkout.session", "client_reference_id": str(alice.pk), "mode": "subscription"}

    deliver(client, fake_stripe.event("checkout.session.completed", {**session, "subscription": sub["id"]}))
    background.wait_for(lambda: _all_processed(1), timeout=20, what="the checkout to be applied")

    assert seen == ["called"]
    assert _tier(alice) == Tier.BASIC


def test_a_failed_event_is_kept_visible_and_retried_by_the_worker_until_it_applies(
    client: Client, alice: Member, worker: background.Process
) -> None:
    """An invoice arriving before its subscription fails, keeps its error (the admin's failed
    filter), and the worker's retry 10 s later applies it once the subscription is known."""
    sub = fake_stripe.subscription(member_id=alice.pk)
    paid = fake_stripe.event("invoice.paid", fake_stripe.invoice(sub_id=sub["id"]))

    assert deliver(client, paid).json()["status"] == "accepted"
    failed = background.wait_for(
        lambda: StripeEvent.objects.failed().filter(stripe_id=paid["id"]).first(), timeout=20, what="the failure"
    )
    assert "not known yet" in failed.error
    deliver(client, fake_stripe.event("customer.subscription.created", sub))

    background.wait_for(lambda: _all_processed(2), timeout=30, what="the retry to apply the invoice")
    assert ActivityLog.objects.filter(member=alice, action=Action.PAYMENT_SUCCEEDED).count() == 1
    row = StripeEvent.objects.get(stripe_id=paid["id"])
    assert (row.error, row.deliveries) == ("", 1)  # applied by the retry, not by a redelivery
