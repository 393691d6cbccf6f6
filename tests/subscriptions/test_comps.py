"""Comped memberships: staff give a plan for a period without Stripe; it ends by itself."""

from __future__ import annotations

import datetime as dt
import threading
from io import StringIO
from typing import Any

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from members.models import Action, ActivityLog, Member, Tier
from subscriptions.models import Plan, Subscription, SubscriptionStatus
from subscriptions.services import BillingError, comp_membership, expire_comps, sync_stripe_subscription
from subscriptions.stripe_api import SubscriptionState
from tests.subscriptions import fake_stripe

pytestmark = pytest.mark.usefixtures("plans")


def _tier(member: Member) -> str:
    member.refresh_from_db()
    return member.tier


def _comp_through_the_admin(client: Client, members: list[Member], plan: Plan, until: str) -> Any:
    return client.post(
        reverse("admin:members_member_changelist"),
        {
            "action": "comp_membership",
            "_selected_action": [member.pk for member in members],
            "apply": "1",
            "plan": plan.pk,
            "until": until,
        },
        follow=True,
    )


def test_staff_comp_members_from_the_member_list(
    client: Client, carol: Member, alice: Member, bob: Member, plans: dict[str, Plan]
) -> None:
    client.force_login(carol)
    until = (timezone.localtime() + dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")

    response = _comp_through_the_admin(client, [alice, bob], plans["pro"], until)

    assert "Comped Pro for 2 members." in response.content.decode()
    assert (_tier(alice), _tier(bob)) == (Tier.PRO, Tier.PRO)
    comp = Subscription.objects.get(member=alice)
    assert (comp.status, comp.stripe_subscription_id) == (SubscriptionStatus.COMPED, "")
    entry = ActivityLog.objects.get(member=alice, action=Action.SUBSCRIPTION_CHANGED)
    assert (entry.detail["actor"], entry.detail["source"], entry.detail["plan"]) == (carol.pk, "staff", "pro")


def test_the_comp_form_asks_first_and_refuses_a_past_end(
    client: Client, carol: Member, alice: Member, plans: dict[str, Plan]
) -> None:
    client.force_login(carol)

    asked = client.post(
        reverse("admin:members_member_changelist"), {"action": "comp_membership", "_selected_action": [alice.pk]}
    )
    refused = _comp_through_the_admin(client, [alice], plans["pro"], "2001-01-01T00:00")

    assert asked.status_code == 200 and "alice@example.com" in asked.content.decode()
    assert "The end must be in the future." in refused.content.decode()
    assert not Subscription.objects.exists()


def test_a_member_who_pays_through_stripe_is_not_comped(alice: Member, carol: Member, plans: dict[str, Plan]) -> None:
    sub = fake_stripe.subscription(member_id=alice.pk)
    sync_stripe_subscription(state=SubscriptionState.from_stripe(sub), state_at=timezone.now(), source="test")

    with pytest.raises(BillingError, match="pays through Stripe"):
        comp_membership(member=alice, plan=plans["pro"], until=timezone.now() + dt.timedelta(days=1), actor=carol)

    assert _tier(alice) == Tier.BASIC


def test_a_new_comp_replaces_the_running_one(alice: Member, carol: Member, plans: dict[str, Plan]) -> None:
    first = comp_membership(member=alice, plan=plans["basic"], until=timezone.now() + dt.timedelta(days=1), actor=carol)
    comp_membership(member=alice, plan=plans["pro"], until=timezone.now() + dt.timedelta(days=60), actor=carol)

    first.refresh_from_db()
    assert first.status == SubscriptionStatus.CANCELED
    assert _tier(alice) == Tier.PRO


def test_a_member_without_the_permission_cannot_comp(client: Client, alice: Member, plans: dict[str, Plan]) -> None:
    staff = Member.objects.create_user(email="staff@example.com", password="x", is_staff=True)
    client.force_login(staff)

    response = _comp_through_the_admin(client, [alice], plans["pro"], "2099-01-01T00:00")

    assert response.status_code == 403
    assert not Subscription.objects.exists()


def test_comps_end_by_themselves_and_the_sweep_is_idempotent(
    alice: Member, bob: Member, carol: Member, plans: dict[str, Plan]
) -> None:
    now = timezone.now()
    comp_membership(member=alice, plan=plans["pro"], until=now + dt.timedelta(days=1), actor=carol)
    comp_membership(member=bob, plan=plans["basic"], until=now + dt.timedelta(days=10), actor=carol)

    outputs = []
    with time_machine.travel(now + dt.timedelta(days=2)):
        for _ in range(2):
            out = StringIO()
            call_command("expire_subscriptions", stdout=out)
            outputs.append(out.getvalue().strip())

    assert outputs == [
        "Ended 1 comped membership whose period was over.",
        "Ended 0 comped memberships whose period was over.",
    ]
    assert (_tier(alice), _tier(bob)) == (Tier.FREE, Tier.BASIC)
    ended = ActivityLog.objects.filter(member=alice, action=Action.SUBSCRIPTION_CHANGED).latest("id")
    assert (ended.detail["status"], ended.detail["source"], ended.detail["reason"]) == ("canceled", "expiry", "expired")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_end_each_comp_once(plans: dict[str, Plan]) -> None:
    now = timezone.now()
    members = [Member.objects.create_user(email=f"comp{i}@example.com", password=None) for i in range(20)]
    for member in members:
        comp_membership(member=member, plan=plans["pro"], until=now + dt.timedelta(hours=1), actor=None)
    counts: list[int] = []
    start = threading.Barrier(2)

    def sweep() -> None:
        try:
            start.wait()
            counts.append(expire_comps(at=now + dt.timedelta(hours=2), batch_size=5))
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sum(counts) == 20
    assert not Subscription.objects.live().exists()
    assert ActivityLog.objects.filter(action=Action.SUBSCRIPTION_CHANGED, detail__reason="expired").count() == 20
