"""A paying member deletes their account: Stripe stops billing them, and a Stripe outage changes
nothing rather than deleting someone Stripe goes on charging. Stripe's API is on loopback."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from members.models import Member
from subscriptions.models import Subscription
from subscriptions.services import sync_stripe_subscription
from subscriptions.stripe_api import SubscriptionState
from tests.conftest import PASSWORD
from tests.subscriptions import fake_stripe
from tests.subscriptions.fake_stripe import FakeStripe

pytestmark = pytest.mark.usefixtures("plans")


def _paying(member: Member, stripe_server: FakeStripe) -> Subscription:
    sub = stripe_server.add(fake_stripe.subscription(member_id=member.pk))
    synced = sync_stripe_subscription(state=SubscriptionState.from_stripe(sub), state_at=timezone.now(), source="test")
    assert synced is not None
    return synced


def test_asking_to_delete_stops_the_billing_at_the_end_of_the_period(
    client: Client, alice: Member, stripe_server: FakeStripe
) -> None:
    subscription = _paying(alice, stripe_server)
    client.force_login(alice)

    response = client.post("/profile/delete/", {"password": PASSWORD})

    assert response["Location"] == "/accounts/login/"
    (call,) = stripe_server.calls
    assert (call.method, call.path, call.form) == (
        "POST",
        f"/v1/subscriptions/{subscription.stripe_subscription_id}",
        {"cancel_at_period_end": "true"},
    )
    subscription.refresh_from_db()
    assert subscription.cancel_at_period_end
    alice.refresh_from_db()
    assert alice.deletion_scheduled_for is not None


def test_when_stripe_cannot_stop_the_billing_nothing_is_scheduled(
    client: Client, alice: Member, stripe_server: FakeStripe
) -> None:
    subscription = _paying(alice, stripe_server)
    stripe_server.failing = 500
    client.force_login(alice)

    response = client.post("/profile/delete/", {"password": PASSWORD})

    assert response.status_code == 400
    assert "could not be cancelled with our payment provider just now, so nothing was" in response.content.decode()
    alice.refresh_from_db()
    assert alice.deletion_scheduled_for is None
    subscription.refresh_from_db()
    assert not subscription.cancel_at_period_end
    assert client.get("/dashboard/").status_code == 200  # still logged in


def test_the_purge_ends_a_subscription_still_live_in_stripe_before_deleting(
    alice: Member, stripe_server: FakeStripe
) -> None:
    subscription = _paying(alice, stripe_server)
    Member.objects.filter(pk=alice.pk).update(deletion_scheduled_for=timezone.now() - dt.timedelta(minutes=1))

    stripe_server.failing = 500
    with pytest.raises(CommandError, match="1 account\\(s\\) due for deletion wait for the next run"):
        call_command("purge_deleted_members")
    assert Member.objects.filter(pk=alice.pk).exists()  # not deleted while Stripe would still bill

    stripe_server.failing = None
    stripe_server.calls.clear()
    call_command("purge_deleted_members")

    assert [(call.method, call.path) for call in stripe_server.calls] == [
        ("DELETE", f"/v1/subscriptions/{subscription.stripe_subscription_id}")
    ]
    assert stripe_server.subscriptions[subscription.stripe_subscription_id]["status"] == "canceled"
    assert not Member.objects.filter(pk=alice.pk).exists()
    assert not Subscription.objects.filter(pk=subscription.pk).exists()
