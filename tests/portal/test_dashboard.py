"""The member's dashboard."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from core.cache import MEMBER, invalidate
from members.models import Action, ActivityLog, Member, Profile, Tier, TokenScope
from members.services import create_api_token, revoke_api_token
from subscriptions.models import Plan, SubscriptionStatus
from subscriptions.services import start_subscription
from tests.conftest import make_plan

# Cold: the member (auth middleware), then the cached summary's profile, live subscription with
# its plan, live token count, next token to expire and ten activity rows. Warm: none, the
# member's snapshot (members/authentication.py) and the page come from the cache. The session
# comes from the cache either way.
DASHBOARD_COLD_QUERIES = 6
DASHBOARD_WARM_QUERIES = 0


def _add_activity(member: Member, rows: int) -> None:
    now = timezone.now()
    ActivityLog.objects.bulk_create(
        ActivityLog(
            member=member,
            action=Action.LOGIN if i % 2 else Action.LOGOUT,
            created_at=now - dt.timedelta(minutes=i + 1),
            ip="192.0.2.10",
            user_agent="Firefox",
        )
        for i in range(rows)
    )


def _add_tokens(member: Member, count: int) -> None:
    for i in range(count):
        create_api_token(
            member=member,
            name=f"script {i}",
            scopes=[TokenScope.READ],
            expires_at=timezone.now() + dt.timedelta(days=10 + i),
        )


@pytest.fixture
def pro_plan(db: None) -> Plan:
    return make_plan(code="pro", name="Pro monthly", tier=Tier.PRO, price_cents=2900, stripe_price_id="price_pro")


def test_the_dashboard_shows_membership_tokens_and_recent_activity(client: Client, alice: Member, pro_plan: Plan):
    renews = dt.datetime(2031, 3, 14, 12, tzinfo=dt.UTC)
    start_subscription(
        member=alice, plan=pro_plan, status=SubscriptionStatus.ACTIVE, period_start=timezone.now(), period_end=renews
    )
    soon, _ = create_api_token(
        member=alice, name="deploy bot", scopes=[TokenScope.READ], expires_at=timezone.now() + dt.timedelta(days=3)
    )
    create_api_token(member=alice, name="laptop", scopes=[TokenScope.READ], expires_at=None)
    gone, _ = create_api_token(member=alice, name="old", scopes=[TokenScope.READ], expires_at=None)
    revoke_api_token(token=gone)
    _add_activity(alice, 30)
    client.force_login(alice)

    response = client.get("/dashboard/")

    assert response.status_code == 200
    body = response.content.decode()
    assert "Welcome, Alice" in body
    assert "Tier: <strong>Pro</strong>" in body
    assert "Pro monthly: Active" in body
    assert "Renews on" in body and "14 Mar 2031" in body
    assert "<strong>2</strong> live tokens" in body  # the revoked one is not counted
    assert f"Next to expire: deploy bot (<code>{soon.prefix}…{soon.last_chars}</code>)" in body
    assert len(response.context["activity"]) == 10
    for name in ("profile", "tokens", "subscription", "activity"):
        assert f'href="/{name}/"' in body


def test_the_dashboard_falls_back_to_the_email_and_says_free_without_a_subscription(client: Client, alice: Member):
    Profile.objects.filter(member=alice).update(display_name="")
    client.force_login(alice)

    body = client.get("/dashboard/").content.decode()

    assert "Welcome, alice@example.com" in body
    assert "Free, no subscription" in body
    assert "<strong>0</strong> live tokens" in body


def test_a_subscription_set_to_cancel_shows_its_end_date(client: Client, alice: Member, pro_plan: Plan):
    subscription = start_subscription(
        member=alice,
        plan=pro_plan,
        status=SubscriptionStatus.ACTIVE,
        period_start=timezone.now(),
        period_end=dt.datetime(2031, 3, 14, 12, tzinfo=dt.UTC),
    )
    subscription.cancel_at_period_end = True
    subscription.save(update_fields=["cancel_at_period_end"])
    client.force_login(alice)

    body = client.get("/dashboard/").content.decode()

    assert "Ends on" in body and "Renews on" not in body


def test_the_dashboard_query_count_does_not_grow_with_data(
    client: Client, alice: Member, pro_plan: Plan, django_assert_num_queries
):
    start_subscription(
        member=alice,
        plan=pro_plan,
        status=SubscriptionStatus.ACTIVE,
        period_start=timezone.now(),
        period_end=timezone.now() + dt.timedelta(days=30),
    )
    _add_tokens(alice, 2)
    _add_activity(alice, 10)
    client.force_login(alice)
    client.get("/dashboard/")  # the session's idle clock is set on the first request

    invalidate(MEMBER, alice.pk)
    with django_assert_num_queries(DASHBOARD_COLD_QUERIES):
        small = client.get("/dashboard/")
    with django_assert_num_queries(DASHBOARD_WARM_QUERIES):
        client.get("/dashboard/")

    # Rows written around the services (bulk_create) leave the cache alone: invalidate by hand.
    _add_tokens(alice, 8)
    _add_activity(alice, 490)
    invalidate(MEMBER, alice.pk)
    with django_assert_num_queries(DASHBOARD_COLD_QUERIES):
        large = client.get("/dashboard/")
    with django_assert_num_queries(DASHBOARD_WARM_QUERIES):
        client.get("/dashboard/")

    assert small.status_code == large.status_code == 200
    assert large.context["live_token_count"] == 10
    assert len(large.context["activity"]) == 10


def test_a_logged_in_member_is_taken_from_the_landing_page_to_the_dashboard(client: Client, alice: Member):
    client.force_login(alice)

    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/dashboard/"


def test_an_anonymous_visitor_is_sent_to_log_in(client: Client, db: None):
    response = client.get("/dashboard/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/dashboard/"


@pytest.mark.postgres
@pytest.mark.usefixtures("scale_rows")
@pytest.mark.django_db
def test_the_dashboard_of_a_busy_member_among_many_takes_the_same_queries(client: Client, django_assert_num_queries):
    busy = Member.objects.get(email="m2500@scale.example")
    Profile.objects.create(member=busy)  # the bulk-loaded members have none
    client.force_login(busy)
    client.get("/dashboard/")

    invalidate(MEMBER, busy.pk)
    with django_assert_num_queries(DASHBOARD_COLD_QUERIES):
        response = client.get("/dashboard/")

    assert response.status_code == 200
    assert "Scale basic: Active" in response.content.decode()
