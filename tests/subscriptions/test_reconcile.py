"""`reconcile_stripe`: the portal's subscriptions compared with Stripe's, and drift repaired."""

from __future__ import annotations

import datetime as dt
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from members.models import Action, ActivityLog, Member, Tier
from members.services import create_member
from subscriptions.models import ReconciliationRun, StripeEvent, Subscription, SubscriptionStatus
from subscriptions.reads import stripe_sync_status
from subscriptions.services import sync_stripe_subscription
from subscriptions.stripe_api import SubscriptionState
from tests.subscriptions import fake_stripe
from tests.subscriptions.conftest import deliver
from tests.subscriptions.fake_stripe import FakeStripe

pytestmark = pytest.mark.usefixtures("plans")


def _local(sub: dict[str, Any]) -> Subscription:
    synced = sync_stripe_subscription(
        state=SubscriptionState.from_stripe(sub), state_at=timezone.now() - dt.timedelta(hours=1), source="test"
    )
    assert synced is not None
    return synced


def _reconcile(*args: str) -> list[str]:
    out = StringIO()
    call_command("reconcile_stripe", *args, "--no-progress", stdout=out)
    return out.getvalue().splitlines()


def _tier(member: Member) -> str:
    member.refresh_from_db()
    return member.tier


@pytest.fixture
def drifted(alice: Member, bob: Member, stripe_server: FakeStripe) -> dict[str, dict[str, Any]]:
    """Four members, three of them out of step with Stripe: missed webhooks, as after an outage."""
    carl = create_member(email="carl@example.com", password=None)
    dora = create_member(email="dora@example.com", password=None)
    in_step = stripe_server.add(fake_stripe.subscription(sub_id="sub_test_in_step", member_id=alice.pk))
    _local(in_step)
    # Cancelled in Stripe; the portal still thinks bob pays.
    _local(fake_stripe.subscription(sub_id="sub_test_cancelled", member_id=bob.pk, customer="cus_test_bob"))
    cancelled = stripe_server.add(
        fake_stripe.subscription(
            sub_id="sub_test_cancelled",
            member_id=bob.pk,
            customer="cus_test_bob",
            status="canceled",
            canceled_at=int(timezone.now().timestamp()) - 600,
        )
    )
    # Upgraded in Stripe; the portal still has basic.
    _local(fake_stripe.subscription(sub_id="sub_test_upgraded", member_id=carl.pk, customer="cus_test_carl"))
    upgraded = stripe_server.add(
        fake_stripe.subscription(
            sub_id="sub_test_upgraded", member_id=carl.pk, customer="cus_test_carl", price_id="price_pro"
        )
    )
    # Created in Stripe; the portal never heard of it.
    unseen = stripe_server.add(
        fake_stripe.subscription(sub_id="sub_test_unseen", member_id=dora.pk, customer="cus_test_dora")
    )
    return {"in_step": in_step, "cancelled": cancelled, "upgraded": upgraded, "unseen": unseen}


def test_drift_is_reported_and_repaired(alice: Member, bob: Member, drifted: Any, stripe_server: FakeStripe) -> None:
    stripe_server.page_size_limit = 2  # every page boundary is crossed

    lines = _reconcile()

    assert lines[-1] == "Checked 4 subscriptions: 3 drifted, repaired 3."
    assert sorted(lines[:-1]) == [
        "sub_test_cancelled (bob@example.com): status active → canceled",
        "sub_test_unseen (new): missing here (active in Stripe)",
        "sub_test_upgraded (carl@example.com): price price_basic → price_pro",
    ]
    assert _tier(bob) == Tier.FREE
    assert _tier(Member.objects.get(email="carl@example.com")) == Tier.PRO
    assert _tier(Member.objects.get(email="dora@example.com")) == Tier.BASIC
    assert _tier(alice) == Tier.BASIC
    repaired = ActivityLog.objects.filter(action=Action.SUBSCRIPTION_CHANGED, detail__source="reconcile")
    assert repaired.count() == 3
    assert [call.path for call in stripe_server.calls] == ["/v1/subscriptions"] * 2
    assert _reconcile()[-1] == "Checked 4 subscriptions: 0 drifted, repaired 0."


def test_a_dry_run_changes_nothing(bob: Member, drifted: Any) -> None:
    lines = _reconcile("--dry-run")

    assert lines[-1] == "Checked 4 subscriptions: 3 drifted, would repair 3."
    assert _tier(bob) == Tier.BASIC
    assert not Subscription.objects.filter(stripe_subscription_id="sub_test_unseen").exists()


def test_a_live_subscription_stripe_does_not_have_is_ended(alice: Member, stripe_server: FakeStripe) -> None:
    _local(fake_stripe.subscription(sub_id="sub_test_deleted", member_id=alice.pk))

    lines = _reconcile()

    assert lines == [
        "sub_test_deleted (alice@example.com): active here, not found in Stripe",
        "Checked 1 subscriptions: 1 drifted, repaired 1.",
    ]
    assert Subscription.objects.get().status == SubscriptionStatus.CANCELED
    assert _tier(alice) == Tier.FREE


def test_the_wrong_stripe_account_ends_nothing(stripe_server: FakeStripe) -> None:
    members = [create_member(email=f"m{i}@example.com", password=None) for i in range(6)]
    for member in members:
        _local(fake_stripe.subscription(member_id=member.pk, customer=f"cus_test_{member.pk}"))

    with pytest.raises(CommandError, match="right account"):
        _reconcile()

    assert Subscription.objects.live().count() == 6


def test_stripe_unreachable_is_an_error_not_a_repair(alice: Member, stripe_server: FakeStripe) -> None:
    _local(fake_stripe.subscription(member_id=alice.pk))
    stripe_server.failing = 500

    with pytest.raises(CommandError, match="Stripe"):
        _reconcile()

    assert _tier(alice) == Tier.BASIC
    assert ReconciliationRun.objects.get().error


def test_without_a_stripe_key_the_command_says_so(db: None) -> None:
    with pytest.raises(CommandError, match="STRIPE_SECRET_KEY"):
        _reconcile()


def test_drift_and_webhook_age_are_exposed_for_monitoring(
    client: Client, drifted: Any, alice: Member, webhook_secrets: Any
) -> None:
    before = stripe_sync_status()
    assert (before.drifted, before.reconciled_at, before.last_event_processed_at) == (None, None, None)

    _reconcile()
    deliver(client, fake_stripe.event("customer.subscription.updated", drifted["in_step"]))
    deliver(client, fake_stripe.event("invoice.paid", fake_stripe.invoice(sub_id="sub_test_nobody")))

    after = stripe_sync_status()
    assert after.configured is True
    assert after.drifted == 3
    assert after.reconciled_at is not None
    assert after.last_event_processed_at == StripeEvent.objects.filter(processed_at__isnull=False).get().processed_at
    assert after.failed_events == 1


def test_staff_refresh_a_subscription_from_stripe_in_the_admin(
    client: Client, carol: Member, bob: Member, drifted: Any
) -> None:
    subscription = Subscription.objects.get(stripe_subscription_id="sub_test_cancelled")
    client.force_login(carol)

    response = client.post(
        reverse("admin:subscriptions_subscription_changelist"),
        {"action": "refresh_from_stripe", "_selected_action": [subscription.pk]},
        follow=True,
    )

    assert "Refreshed 1 subscription from Stripe." in response.content.decode()
    assert _tier(bob) == Tier.FREE


@pytest.mark.django_db(transaction=True)
def test_each_processed_or_failed_event_refreshes_the_monitoring_numbers(
    client: Client, alice: Member, webhook_secrets: Any
) -> None:
    assert stripe_sync_status().last_event_processed_at is None  # cached from here on

    deliver(client, fake_stripe.event("customer.subscription.created", fake_stripe.subscription(member_id=alice.pk)))
    processed = stripe_sync_status()
    deliver(client, fake_stripe.event("invoice.paid", fake_stripe.invoice(sub_id="sub_test_nobody")))
    failed = stripe_sync_status()

    assert processed.last_event_processed_at is not None
    assert (processed.failed_events, failed.failed_events) == (0, 1)
