"""Stripe's webhook: signed deliveries only, each event applied once, in whatever order it comes."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import threading
import time
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from members.models import Action, ActivityLog, Member, Tier
from subscriptions.models import StripeEvent, Subscription, SubscriptionStatus
from subscriptions.services import comp_membership
from tests.subscriptions import fake_stripe
from tests.subscriptions.conftest import OLD_WEBHOOK_SECRET, WEBHOOK_SECRET, deliver
from tests.subscriptions.fake_stripe import FakeStripe, signed

pytestmark = pytest.mark.usefixtures("plans", "webhook_secrets")


def _tier(member: Member) -> str:
    member.refresh_from_db()
    return member.tier


def _created(member: Member, **fields: Any) -> dict[str, Any]:
    return fake_stripe.event(
        "customer.subscription.created", fake_stripe.subscription(member_id=member.pk, **fields), created=1_800_000_000
    )


# --- Signatures ---------------------------------------------------------------------------------


def _post(client: Client, payload: str, signature: str | None) -> Any:
    headers = {"Stripe-Signature": signature} if signature is not None else {}
    return client.post("/webhooks/stripe/", data=payload, content_type="application/json", headers=headers)


def test_signature_matrix(client: Client, alice: Member) -> None:
    event = _created(alice)
    payload = json.dumps(event)
    altered = payload.replace('"price_basic"', '"price_pro"')
    assert altered != payload
    stale = int(time.time()) - 301  # just past the 300-second tolerance

    statuses = [
        _post(client, payload, None).status_code,
        _post(client, payload, signed(payload, "whsec_someone_else")).status_code,
        _post(client, altered, signed(payload, WEBHOOK_SECRET)).status_code,
        _post(client, payload, signed(payload, WEBHOOK_SECRET, timestamp=stale)).status_code,
    ]
    # Nothing from a rejected delivery is stored or applied.
    assert StripeEvent.objects.count() == 0
    assert _tier(alice) == Tier.FREE

    statuses.append(_post(client, payload, signed(payload, WEBHOOK_SECRET)).status_code)

    assert statuses == [400, 400, 400, 400, 200]
    assert _tier(alice) == Tier.BASIC


def test_rejections_say_why_with_a_stable_code(client: Client) -> None:
    payload = json.dumps(fake_stripe.event("invoice.paid", {}))

    missing = _post(client, payload, None).json()
    wrong = _post(client, payload, signed(payload, "whsec_other")).json()

    assert missing["code"] == "missing_signature"
    assert wrong["code"] == "invalid_signature"


def test_the_previous_secret_is_accepted_during_a_rotation(client: Client, alice: Member) -> None:
    response = deliver(client, _created(alice), secret=OLD_WEBHOOK_SECRET)

    assert response.status_code == 200
    assert _tier(alice) == Tier.BASIC


def test_a_signed_body_that_is_not_an_event_is_refused(client: Client) -> None:
    payload = "[1, 2, 3]"
    response = _post(client, payload, signed(payload, WEBHOOK_SECRET))

    assert (response.status_code, response.json()["code"]) == (400, "invalid_payload")


def test_without_a_signing_secret_every_delivery_is_refused(client: Client, alice: Member, settings: Any) -> None:
    settings.STRIPE_WEBHOOK_SECRETS = []
    response = deliver(client, _created(alice))

    assert (response.status_code, response.json()["code"]) == (400, "webhook_not_configured")
    assert StripeEvent.objects.count() == 0


def test_only_post_is_answered(client: Client) -> None:
    assert client.get("/webhooks/stripe/").status_code == 405


# --- The log and idempotency ---------------------------------------------------------------------


def test_every_delivery_is_logged(client: Client, alice: Member) -> None:
    event = _created(alice)

    deliver(client, event)

    row = StripeEvent.objects.get()
    assert (row.stripe_id, row.type, row.deliveries, row.error) == (
        event["id"],
        "customer.subscription.created",
        1,
        "",
    )
    assert row.payload == event
    assert row.processed_at is not None
    assert row.stripe_created_at.timestamp() == event["created"]


def test_an_unknown_event_type_is_logged_and_answered_200(client: Client) -> None:
    response = deliver(client, fake_stripe.event("customer.tax_id.created", {"id": "txi_1", "object": "tax_id"}))

    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    row = StripeEvent.objects.get()
    assert row.processed_at is not None
    assert row.outcome == "type not handled"


def test_a_repeated_delivery_has_no_second_effect(client: Client, alice: Member) -> None:
    sub = fake_stripe.subscription(member_id=alice.pk)
    deliver(client, fake_stripe.event("customer.subscription.created", sub))
    paid = fake_stripe.event("invoice.paid", fake_stripe.invoice(sub_id=sub["id"]))

    first, second = deliver(client, paid), deliver(client, paid)

    assert (first.json()["status"], second.json()["status"]) == ("processed", "duplicate")
    assert ActivityLog.objects.filter(member=alice, action=Action.PAYMENT_SUCCEEDED).count() == 1
    assert StripeEvent.objects.get(stripe_id=paid["id"]).deliveries == 2


def deliver_concurrently(payload: str, times: int = 5) -> list[str]:
    """`payload`, signed, delivered `times` times at once (each by its own thread and database
    connection, as Stripe's retries can arrive); the answers, as "status body-status"."""
    start = threading.Barrier(times)
    answers: list[str] = []

    def stripe_delivers() -> None:
        try:
            client = Client()
            start.wait()
            response = client.post(
                "/webhooks/stripe/",
                data=payload,
                content_type="application/json",
                headers={"Stripe-Signature": signed(payload, WEBHOOK_SECRET)},
            )
            answers.append(f"{response.status_code} {response.json()['status']}")
        finally:
            connection.close()

    threads = [threading.Thread(target=stripe_delivers) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return answers


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_five_concurrent_deliveries_of_one_event_have_exactly_one_effect(alice: Member) -> None:
    sub = fake_stripe.subscription(member_id=alice.pk)
    deliver(Client(), fake_stripe.event("customer.subscription.created", sub))
    paid = fake_stripe.event("invoice.paid", fake_stripe.invoice(sub_id=sub["id"]))
    payload = json.dumps(paid)
    answers = deliver_concurrently(payload)

    assert sorted(answers) == ["200 duplicate"] * 4 + ["200 processed"]
    assert ActivityLog.objects.filter(member=alice, action=Action.PAYMENT_SUCCEEDED).count() == 1
    row = StripeEvent.objects.get(stripe_id=paid["id"])
    assert row.deliveries == 5


def test_a_failed_event_keeps_its_error_and_applies_nothing_until_it_succeeds(
    client: Client, alice: Member, plans: dict[str, Any]
) -> None:
    event = _created(alice, price_id="price_new_enterprise")

    response = deliver(client, event)

    assert response.status_code == 500  # Stripe delivers it again later
    assert response.json()["code"] == "processing_failed"
    row = StripeEvent.objects.get()
    assert row.processed_at is None
    assert "price_new_enterprise" in row.error
    assert not Subscription.objects.exists()
    assert not ActivityLog.objects.filter(action=Action.SUBSCRIPTION_CHANGED).exists()

    # Staff give the plan its new price; Stripe's next delivery applies the event.
    plans["pro"].stripe_price_id = "price_new_enterprise"
    plans["pro"].save()
    retried = deliver(client, event)

    assert retried.json()["status"] == "processed"
    row = StripeEvent.objects.get(pk=row.pk)
    assert (row.error, row.deliveries) == ("", 2)
    assert row.processed_at is not None
    assert _tier(alice) == Tier.PRO


# --- Order ---------------------------------------------------------------------------------------

T0 = 1_800_000_000


def _lifecycle(member: Member) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """created (basic), updated (to pro, cancelling at period end) and deleted, a minute apart,
    and the subscription as Stripe holds it at the end."""
    created = fake_stripe.subscription(sub_id="sub_test_order", member_id=member.pk, start=T0)
    updated = {
        **fake_stripe.subscription(
            sub_id="sub_test_order", member_id=member.pk, start=T0, price_id="price_pro", cancel_at_period_end=True
        )
    }
    final = fake_stripe.subscription(
        sub_id="sub_test_order",
        member_id=member.pk,
        start=T0,
        price_id="price_pro",
        status="canceled",
        canceled_at=T0 + 120,
    )
    return (
        fake_stripe.event("customer.subscription.created", created, created=T0),
        fake_stripe.event("customer.subscription.updated", updated, created=T0 + 60),
        fake_stripe.event("customer.subscription.deleted", final, created=T0 + 120),
        final,
    )


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))), ids=lambda order: "-".join(map(str, order)))
def test_every_order_of_created_updated_deleted_ends_in_the_state_stripe_holds(
    client: Client, alice: Member, order: tuple[int, int, int]
) -> None:
    *events, final = _lifecycle(alice)

    for index in order:
        assert deliver(client, events[index]).status_code == 200

    subscription = Subscription.objects.select_related("plan").get(stripe_subscription_id="sub_test_order")
    assert subscription.status == SubscriptionStatus.CANCELED
    assert subscription.plan.stripe_price_id == "price_pro"
    assert subscription.canceled_at is not None and subscription.canceled_at.timestamp() == final["canceled_at"]
    assert subscription.current_period_end is not None
    assert subscription.current_period_end.timestamp() == final["items"]["data"][0]["current_period_end"]
    assert _tier(alice) == Tier.FREE
    assert StripeEvent.objects.filter(processed_at__isnull=False).count() == 3


def test_an_older_update_does_not_overwrite_a_newer_one(client: Client, alice: Member) -> None:
    sub: dict[str, Any] = {"sub_id": "sub_test_updates", "member_id": alice.pk, "start": T0}
    to_pro = fake_stripe.event(
        "customer.subscription.updated", fake_stripe.subscription(price_id="price_pro", **sub), created=T0 + 10
    )
    back_to_basic = fake_stripe.event(
        "customer.subscription.updated", fake_stripe.subscription(price_id="price_basic", **sub), created=T0 + 20
    )

    deliver(client, back_to_basic)
    late = deliver(client, to_pro)

    assert late.json()["status"] == "processed"
    assert StripeEvent.objects.get(stripe_id=to_pro["id"]).outcome.endswith("not applied")
    assert Subscription.objects.get().plan.code == "basic"
    assert _tier(alice) == Tier.BASIC


# --- Tier ----------------------------------------------------------------------------------------


def test_tier_follows_the_live_subscription_through_every_transition(client: Client, alice: Member) -> None:
    sub: dict[str, Any] = {"sub_id": "sub_test_tier", "member_id": alice.pk, "start": T0}
    steps: list[tuple[str, dict[str, Any], str]] = [
        ("customer.subscription.created", {"status": "incomplete"}, Tier.FREE),
        ("customer.subscription.updated", {"status": "active"}, Tier.BASIC),
        ("customer.subscription.updated", {"status": "active", "price_id": "price_pro"}, Tier.PRO),
        ("customer.subscription.updated", {"status": "past_due", "price_id": "price_pro"}, Tier.PRO),
        ("customer.subscription.updated", {"status": "unpaid", "price_id": "price_pro"}, Tier.FREE),
        ("customer.subscription.updated", {"status": "active", "price_id": "price_pro"}, Tier.PRO),
        ("customer.subscription.updated", {"status": "paused", "price_id": "price_pro"}, Tier.FREE),
        ("customer.subscription.updated", {"status": "trialing"}, Tier.BASIC),
        ("customer.subscription.deleted", {"status": "canceled", "canceled_at": T0 + 999}, Tier.FREE),
    ]
    seen = []
    for second, (event_type, fields, _) in enumerate(steps):
        event = fake_stripe.event(event_type, fake_stripe.subscription(**sub, **fields), created=T0 + second)
        assert deliver(client, event).status_code == 200
        seen.append(_tier(alice))

    assert seen == [tier for *_, tier in steps]
    changes = ActivityLog.objects.filter(member=alice, action=Action.SUBSCRIPTION_CHANGED)
    assert changes.count() == len(steps)


def test_a_paid_subscription_replaces_a_comp(
    client: Client, alice: Member, carol: Member, plans: dict[str, Any]
) -> None:
    comp = comp_membership(member=alice, plan=plans["pro"], until=timezone.now() + dt.timedelta(days=30), actor=carol)

    deliver(client, _created(alice))

    comp.refresh_from_db()
    assert comp.status == SubscriptionStatus.CANCELED
    assert _tier(alice) == Tier.BASIC


def test_a_second_paid_subscription_fails_with_a_reason_for_staff(client: Client, alice: Member) -> None:
    deliver(client, _created(alice, sub_id="sub_test_first"))

    response = deliver(client, _created(alice, sub_id="sub_test_second", price_id="price_pro"))

    assert response.status_code == 500
    error = StripeEvent.objects.get(payload__data__object__id="sub_test_second").error
    assert "sub_test_first" in error and "second" in error
    assert _tier(alice) == Tier.BASIC


def test_a_subscription_of_nobody_we_know_fails_with_a_reason(client: Client) -> None:
    event = fake_stripe.event("customer.subscription.created", fake_stripe.subscription(customer="cus_stranger"))

    assert deliver(client, event).status_code == 500
    assert "No member matches" in StripeEvent.objects.get().error


# --- Checkout and invoices -----------------------------------------------------------------------


def test_checkout_completed_reads_the_subscription_from_stripe(
    client: Client, alice: Member, stripe_server: FakeStripe
) -> None:
    sub = stripe_server.add(fake_stripe.subscription(customer="cus_test_new"))  # no metadata: Checkout's reference
    session = {
        "id": "cs_test_1",
        "object": "checkout.session",
        "client_reference_id": str(alice.pk),
        "customer": "cus_test_new",
        "mode": "subscription",
        "status": "complete",
        "subscription": sub["id"],
    }

    response = deliver(client, fake_stripe.event("checkout.session.completed", session))

    assert response.json()["status"] == "processed"
    assert [call.path for call in stripe_server.calls] == [f"/v1/subscriptions/{sub['id']}"]
    subscription = Subscription.objects.get()
    assert (subscription.member, subscription.stripe_customer_id) == (alice, "cus_test_new")
    assert _tier(alice) == Tier.BASIC


def test_a_payment_checkout_is_not_a_subscription(client: Client) -> None:
    session = {"id": "cs_test_2", "object": "checkout.session", "mode": "payment", "subscription": None}

    response = deliver(client, fake_stripe.event("checkout.session.completed", session))

    assert response.json()["status"] == "processed"
    assert StripeEvent.objects.get().outcome == "not a subscription checkout"


def test_invoices_paid_and_failed_are_recorded_in_the_members_activity(client: Client, alice: Member) -> None:
    sub = fake_stripe.subscription(member_id=alice.pk)
    deliver(client, fake_stripe.event("customer.subscription.created", sub))

    deliver(client, fake_stripe.event("invoice.paid", fake_stripe.invoice(sub_id=sub["id"], amount=900)))
    deliver(client, fake_stripe.event("invoice.payment_failed", fake_stripe.invoice(sub_id=sub["id"], paid=False)))

    paid = ActivityLog.objects.get(member=alice, action=Action.PAYMENT_SUCCEEDED)
    failed = ActivityLog.objects.get(member=alice, action=Action.PAYMENT_FAILED)
    assert (paid.detail["amount_cents"], paid.detail["currency"]) == (900, "usd")
    assert failed.detail["attempt"] == 1


def test_an_invoice_for_a_subscription_not_known_yet_is_retried_later(client: Client) -> None:
    response = deliver(client, fake_stripe.event("invoice.paid", fake_stripe.invoice(sub_id="sub_test_later")))

    assert response.status_code == 500
    assert "not known yet" in StripeEvent.objects.get().error


# --- Malformed fields in a signed event ------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("created", "abc"),
        ("created", None),
        ("created", 1.5e300),
        ("created", 10**20),
        ("created", True),
        ("livemode", "yes"),
        ("data", []),
        ("data", {"object": "sub_1"}),
        ("id", "evt_" + "x" * 300),
        ("type", ""),
    ],
)
def test_a_signed_event_with_a_malformed_field_is_refused_with_a_code(
    client: Client, alice: Member, field: str, value: Any
) -> None:
    event = {**_created(alice), field: value}
    payload = json.dumps(event)

    response = _post(client, payload, signed(payload, WEBHOOK_SECRET))

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_event"
    assert f"`{field}" in response.json()["message"]
    assert StripeEvent.objects.count() == 0
    assert _tier(alice) == Tier.FREE


def test_a_malformed_time_inside_the_object_fails_the_event_with_a_reason(client: Client, alice: Member) -> None:
    sub = fake_stripe.subscription(member_id=alice.pk)
    sub["items"]["data"][0]["current_period_end"] = "next month"

    response = deliver(client, fake_stripe.event("customer.subscription.created", sub))

    assert (response.status_code, response.json()["code"]) == (500, "processing_failed")
    row = StripeEvent.objects.get()
    assert "is not a Unix time" in row.error
    assert _tier(alice) == Tier.FREE


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_no_stripe_call_is_made_while_a_transaction_holds_the_events_lock(
    client: Client, alice: Member, stripe_server: FakeStripe
) -> None:
    """Eagerly, in this process: when Stripe is asked for the Checkout's subscription, no
    connection to the database has a transaction open (none holds the event's or the member's
    row lock)."""
    from tests.subscriptions.test_webhook_queue import _open_transactions

    seen: list[str] = []
    stripe_server.on_call = _open_transactions(seen)
    sub = stripe_server.add(fake_stripe.subscription(customer="cus_test_new"))
    session = {"id": "cs_1", "object": "checkout.session", "client_reference_id": str(alice.pk), "mode": "subscription"}

    response = deliver(client, fake_stripe.event("checkout.session.completed", {**session, "subscription": sub["id"]}))

    assert response.json()["status"] == "processed"
    assert seen == ["called"]
    assert _tier(alice) == Tier.BASIC
