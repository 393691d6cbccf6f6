"""The staff dashboard on the admin index: membership numbers beside ops numbers, computed by a
few aggregate queries, cached, and refreshed when members or subscriptions change."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from members.models import Action, ActivityLog, Member, MemberStatus, Tier
from members.services import create_member, record_activity
from monitoring.staff_dashboard import SIGNUP_DAYS, staff_numbers
from subscriptions.models import Plan, Subscription, SubscriptionStatus
from subscriptions.services import start_subscription
from tests.conftest import make_plan


def _member(email: str, days_ago: float, **fields: Any) -> Member:
    member = create_member(email=email, password=None)
    Member.objects.filter(pk=member.pk).update(created_at=timezone.now() - dt.timedelta(days=days_ago), **fields)
    return member


def _subscribe(member: Member, plan: Plan, status: SubscriptionStatus) -> Subscription:
    now = timezone.now()
    return start_subscription(
        member=member, plan=plan, status=status, period_start=now, period_end=now + dt.timedelta(days=30)
    )


@pytest.fixture
def membership(db: None) -> dict[str, Any]:
    """Ten members: five joined this week, three this month, two long ago (one suspended); two
    on basic, one on pro, one comped, one cancelled last week; some activity."""
    basic = make_plan(code="basic", name="Basic", price_cents=900, stripe_price_id="price_basic")
    pro = make_plan(code="pro", name="Pro", price_cents=2900, stripe_price_id="price_pro")
    members = [_member(f"new{i}@example.com", days_ago=i + 0.5) for i in range(5)]
    members += [_member(f"month{i}@example.com", days_ago=10 + i) for i in range(3)]
    members += [
        _member("old@example.com", days_ago=200),
        _member("gone@example.com", 300, status=MemberStatus.SUSPENDED),
    ]
    _subscribe(members[0], basic, SubscriptionStatus.ACTIVE)
    _subscribe(members[1], basic, SubscriptionStatus.PAST_DUE)
    _subscribe(members[2], pro, SubscriptionStatus.ACTIVE)
    _subscribe(members[3], pro, SubscriptionStatus.COMPED)
    ended = _subscribe(members[8], basic, SubscriptionStatus.ACTIVE)
    Subscription.objects.filter(pk=ended.pk).update(
        status=SubscriptionStatus.CANCELED, canceled_at=timezone.now() - dt.timedelta(days=6)
    )
    Member.objects.filter(pk=members[8].pk).update(tier=Tier.FREE)
    ActivityLog.objects.all().delete()  # the subscriptions' own entries: counted below by hand
    for member in members[:4]:
        record_activity(member=member, action=Action.LOGIN)
    old = record_activity(member=members[9], action=Action.LOGIN)
    ActivityLog.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=3))
    return {"members": members}


def test_the_numbers_add_up(membership: dict[str, Any]) -> None:
    numbers = staff_numbers()

    assert numbers.members == 10
    assert (numbers.new_7_days, numbers.new_30_days) == (5, 8)
    assert dict(numbers.by_tier) == {"Free": 6, "Basic": 2, "Pro": 2}
    assert dict(numbers.by_status) == {"Active": 9, "Suspended": 1, "Deactivated": 0}
    assert dict(numbers.live_by_plan) == {"Basic": 2, "Pro": 2}
    # Active and past due pay; the comp does not: 9 + 9 + 29.
    assert numbers.monthly_revenue == (("usd", Decimal("47")),)
    assert numbers.cancellations_30_days == 1
    assert (numbers.activity_24_hours, numbers.activity_7_days) == (4, 5)
    assert len(numbers.signups) == SIGNUP_DAYS
    assert numbers.signups[-1][0] == timezone.localdate()
    assert sum(count for _, count in numbers.signups) == 8


def test_the_admin_index_shows_them_with_a_chart_and_their_age(
    client: Client, carol: Member, membership: dict[str, Any]
) -> None:
    client.force_login(carol)

    response = client.get("/admin/")

    html = response.content.decode()
    assert response.status_code == 200
    assert "How the membership is doing" in html
    assert re.search(r"<h3>Members</h3><p class=\"figure\">11</p>", html)  # and carol
    assert "47.00 USD" in html
    assert "Computed <time" in html and "0\xa0minutes ago" in html
    svg = html.split('<svg role="img"', 1)[1].split("</svg>", 1)[0]
    assert svg.count("<rect") == SIGNUP_DAYS
    assert "<script" not in html.split('class="staff-dashboard"', 1)[1].split("</section>", 1)[0]
    assert 'href="/health/"' in html


def test_the_ops_tiles_say_what_they_measure(client: Client, carol: Member, db: None) -> None:
    client.force_login(carol)
    client.get("/dashboard/")  # a request for the traffic window

    html = client.get("/admin/").content.decode()

    for tile in ("Health", "p95 latency", "Error rate", "Cache hit rate", "Stripe webhooks"):
        assert f"<h3>{tile}</h3>" in html
    assert "this worker" in html
    assert "none yet" in html  # no webhook event processed


@pytest.mark.usefixtures("warm_content_types")
def test_the_index_query_count_is_pinned(
    client: Client, carol: Member, membership: dict[str, Any], django_assert_num_queries: Any
) -> None:
    client.force_login(carol)

    # Cold: the staff user; the numbers (members by tier and status, live subscriptions, plan
    # names, sign-ups per day, cancellations, activity volume); the Stripe sync status (last
    # event, failed events, last reconciliation); the admin's recent actions. The health checks
    # run on their own threads' connections (monitoring.health), which this does not count.
    with django_assert_num_queries(11):
        client.get("/admin/")
    # Warm: the staff user and the recent actions; the numbers come from the cache.
    with django_assert_num_queries(2):
        response = client.get("/admin/")

    assert response.status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_new_member_shows_at_once_and_activity_follows_by_ttl(client: Client, carol: Member) -> None:
    client.force_login(carol)
    before = staff_numbers()

    create_member(email="fresh@example.com", password=None)
    record_activity(member=carol, action=Action.LOGIN)
    after_signup = staff_numbers()

    assert after_signup.members == before.members + 1
    assert after_signup.activity_24_hours == before.activity_24_hours + 1  # recomputed with the rest
    record_activity(member=carol, action=Action.LOGOUT)
    assert staff_numbers().activity_24_hours == after_signup.activity_24_hours  # cached until the TTL
