"""On PostgreSQL, with enough rows, the key subscription queries use their indexes."""

from __future__ import annotations

import pytest

from subscriptions.models import Subscription, SubscriptionStatus

pytestmark = [pytest.mark.postgres, pytest.mark.django_db, pytest.mark.usefixtures("scale_rows")]


def test_subscriptions_by_status_use_the_status_and_period_end_index():
    plan = Subscription.objects.with_status(SubscriptionStatus.PAST_DUE).explain()
    assert "subscription_status_end_idx" in plan
    assert "Seq Scan" not in plan


def test_a_webhook_finds_its_subscription_by_stripe_id():
    plan = Subscription.objects.filter(stripe_subscription_id="sub_2500").explain()
    assert "subscription_stripe_id_unique" in plan


def test_a_members_subscriptions_use_the_member_index():
    from members.models import Member

    member = Member.objects.get(email="m2500@scale.example")
    plan = Subscription.objects.for_member(member).explain()
    assert "Seq Scan" not in plan
