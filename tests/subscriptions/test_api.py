"""The subscriptions' API (`/api/v1/subscription`, `/api/v1/plans`): what a member's script sees
of their plan, cached, and fresh after every write."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from members.models import Member, Tier, TokenScope
from members.services import create_api_token
from subscriptions.models import Plan, Subscription, SubscriptionStatus
from subscriptions.services import save_plan, start_subscription, update_subscription

# The token with its member; the first request of each minute also records the token's use.
AUTHENTICATE = 1
RECORD_USE = 1
# Cold: + the live subscription with its plan (one query, joined) or the plans on offer.
SUBSCRIPTION_COLD = AUTHENTICATE + RECORD_USE + 1
PLANS_COLD = AUTHENTICATE + RECORD_USE + 1
# Warm: both come from the cache.
WARM = AUTHENTICATE
PERIOD_END = dt.datetime(2031, 3, 14, 12, tzinfo=dt.UTC)


@pytest.fixture
def plain(alice: Member) -> str:
    return create_api_token(member=alice, name="script", scopes=[TokenScope.READ], expires_at=None)[1]


def get(client: Client, path: str, plain: str, headers: dict[str, str] | None = None):
    return client.get(path, headers={"Authorization": f"Bearer {plain}", **(headers or {})})


def test_a_member_without_a_subscription_is_on_the_free_tier(client: Client, plain: str, django_assert_num_queries):
    with django_assert_num_queries(SUBSCRIPTION_COLD):
        response = get(client, "/api/v1/subscription", plain)

    assert response.status_code == 200
    assert response.json() == {
        "tier": "free",
        "plan": None,
        "status": None,
        "current_period_start": None,
        "current_period_end": None,
        "cancel_at_period_end": False,
        "renews": False,
    }


def test_the_live_subscription_is_shown_cached_and_fresh_after_a_change(
    client: Client,
    alice: Member,
    plans: dict[str, Plan],
    plain: str,
    django_assert_num_queries,
    django_capture_on_commit_callbacks,
):
    # An ended subscription is history, not the member's plan.
    Subscription.objects.create(member=alice, plan=plans["basic"], status=SubscriptionStatus.CANCELED)
    with django_capture_on_commit_callbacks(execute=True):
        subscription = start_subscription(
            member=alice,
            plan=plans["pro"],
            status=SubscriptionStatus.ACTIVE,
            period_start=timezone.now(),
            period_end=PERIOD_END,
        )

    with django_assert_num_queries(SUBSCRIPTION_COLD):
        first = get(client, "/api/v1/subscription", plain)
    body = first.json()
    assert body["tier"] == "pro"
    assert body["status"] == "active"
    assert body["plan"] == {
        "id": plans["pro"].pk,
        "code": "pro",
        "name": "Pro",
        "tier": "pro",
        "price_cents": 2900,
        "price": "29.00 USD",
        "interval": "month",
    }
    assert body["current_period_end"] == "2031-03-14T12:00:00Z"
    assert body["renews"] is True and body["cancel_at_period_end"] is False

    with django_assert_num_queries(WARM):
        assert get(client, "/api/v1/subscription", plain).content == first.content

    subscription.cancel_at_period_end = True
    with django_capture_on_commit_callbacks(execute=True):
        update_subscription(subscription=subscription, fields=["cancel_at_period_end"])

    after = get(client, "/api/v1/subscription", plain)
    assert after.json()["cancel_at_period_end"] is True
    assert after.json()["renews"] is False
    assert after["ETag"] != first["ETag"]


def test_the_plans_on_offer_are_listed_cheapest_first_from_the_cache(
    client: Client, plans: dict[str, Plan], plain: str, django_assert_num_queries, django_capture_on_commit_callbacks
):
    with django_assert_num_queries(PLANS_COLD):
        first = get(client, "/api/v1/plans", plain)
    assert first.status_code == 200
    assert [plan["code"] for plan in first.json()["items"]] == ["free", "basic", "pro"]
    assert first.json()["items"][1] == {
        "id": plans["basic"].pk,
        "code": "basic",
        "name": "Basic",
        "tier": "basic",
        "price_cents": 900,
        "price": "9.00 USD",
        "interval": "month",
    }
    with django_assert_num_queries(WARM):
        assert get(client, "/api/v1/plans", plain).content == first.content

    with django_capture_on_commit_callbacks(execute=True):
        save_plan(plan=Plan(code="team", name="Team", tier=Tier.PRO, price_cents=1900, interval="year"))

    after = get(client, "/api/v1/plans", plain)
    assert [plan["code"] for plan in after.json()["items"]] == ["free", "basic", "team", "pro"]
    assert after["ETag"] != first["ETag"]
    # The old copy no longer validates.
    assert get(client, "/api/v1/plans", plain, headers={"If-None-Match": first["ETag"]}).status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/subscription", "/api/v1/plans"])
def test_both_need_a_token(client: Client, alice: Member, path: str):
    client.force_login(alice)
    response = client.get(path)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
