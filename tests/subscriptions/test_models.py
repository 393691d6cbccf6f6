"""Subscription rules that hold at the database."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.utils import timezone

from members.models import Tier
from subscriptions.models import Plan, Subscription, SubscriptionStatus
from tests.conftest import make_plan


@pytest.fixture
def basic(db: None) -> Plan:
    return make_plan(code="basic", name="Basic", tier=Tier.BASIC, price_cents=900, stripe_price_id="price_b")


@pytest.fixture
def pro(db: None) -> Plan:
    return make_plan(code="pro", name="Pro", tier=Tier.PRO, price_cents=2900, stripe_price_id="price_p")


@pytest.mark.parametrize(
    "second_status", [SubscriptionStatus.ACTIVE, SubscriptionStatus.COMPED, SubscriptionStatus.PAST_DUE]
)
def test_a_member_has_at_most_one_live_subscription(alice, basic, pro, second_status):
    Subscription.objects.create(member=alice, plan=basic, status=SubscriptionStatus.TRIALING)
    with pytest.raises(IntegrityError), transaction.atomic():
        Subscription.objects.create(member=alice, plan=pro, status=second_status)


def test_ended_subscriptions_do_not_count_against_the_live_one(alice, bob, basic, pro):
    Subscription.objects.create(member=alice, plan=basic, status=SubscriptionStatus.CANCELED)
    Subscription.objects.create(member=alice, plan=basic, status=SubscriptionStatus.INCOMPLETE_EXPIRED)
    Subscription.objects.create(member=alice, plan=pro, status=SubscriptionStatus.ACTIVE)
    Subscription.objects.create(member=bob, plan=pro, status=SubscriptionStatus.ACTIVE)
    assert Subscription.objects.live().count() == 2


def test_a_stripe_subscription_id_belongs_to_one_row(alice, bob, basic):
    Subscription.objects.create(member=alice, plan=basic, status="canceled", stripe_subscription_id="sub_1")
    with pytest.raises(IntegrityError), transaction.atomic():
        Subscription.objects.create(member=bob, plan=basic, status="canceled", stripe_subscription_id="sub_1")


def test_an_unknown_status_is_refused_by_the_database(alice, basic):
    with pytest.raises(IntegrityError), transaction.atomic():
        Subscription.objects.create(member=alice, plan=basic, status="lifetime")


def test_a_period_cannot_end_before_it_starts(alice, basic):
    now = timezone.now()
    with pytest.raises(IntegrityError), transaction.atomic():
        Subscription.objects.create(
            member=alice,
            plan=basic,
            status="active",
            current_period_start=now,
            current_period_end=now - dt.timedelta(days=1),
        )


def test_a_comped_subscription_is_live_only_within_its_period(alice, basic):
    now = timezone.now()
    comp = Subscription(
        member=alice, plan=basic, status=SubscriptionStatus.COMPED, current_period_end=now + dt.timedelta(days=7)
    )
    assert comp.is_live(at=now)
    assert not comp.is_live(at=now + dt.timedelta(days=8))
    assert not Subscription(member=alice, plan=basic, status=SubscriptionStatus.CANCELED).is_live()


def test_plans_on_offer_are_the_active_ones_cheapest_first(basic, pro):
    Plan.objects.create(code="legacy", name="Legacy", tier=Tier.BASIC, price_cents=500, is_active=False)
    assert list(Plan.objects.active()) == [Plan.objects.get(code="free"), basic, pro]
    assert basic.price == "9.00 USD"


def test_free_basic_and_pro_are_offered_on_a_fresh_portal(db):
    assert [(plan.code, plan.tier, plan.price_cents) for plan in Plan.objects.active()] == [
        ("free", Tier.FREE, 0),
        ("basic", Tier.BASIC, 900),
        ("pro", Tier.PRO, 2900),
    ]


def test_migrating_again_keeps_what_staff_changed_in_the_default_plans(db):
    Plan.objects.filter(code="pro").update(price_cents=3500, stripe_price_id="price_pro_2027")
    Plan.objects.filter(code="basic").delete()

    call_command("migrate", verbosity=0)

    assert Plan.objects.get(code="pro").price_cents == 3500
    assert not Plan.objects.filter(code="basic").exists()  # staff's choice stands
