"""The subscription page: plan, status, dates; with billing off (no Stripe key), no action at all.
The actions with billing on are in test_billing.py."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.test import Client
from django.utils import timezone

from members.models import Member
from subscriptions.models import Plan, Subscription, SubscriptionStatus
from subscriptions.services import start_subscription
from subscriptions.views import BILLING_UNAVAILABLE

# The live subscription with its plan, the plans on offer; the member comes from their cached
# snapshot (members/authentication.py) and the time zone from their cached profile
# (members/reads.py). Warm, the plans on offer come from the cache too. With billing off the
# member's Stripe customer is not looked up.
SUBSCRIPTION_QUERIES = 2
SUBSCRIPTION_QUERIES_WARM = 1
PERIOD_END = dt.datetime(2031, 3, 14, 12, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _render_every_page(settings) -> None:
    """These tests pin what a render of the page costs and shows; serving it from the page cache
    is tested in tests/core/test_pagecache.py and tests/portal/test_cache_invalidation.py."""
    settings.PAGE_CACHE = False


@pytest.fixture
def logged_in(client: Client, alice: Member) -> Client:
    client.force_login(alice)
    client.get("/subscription/")  # the session's idle clock is set on the first request
    return client


def _subscribe(member: Member, plan: Plan, status: SubscriptionStatus = SubscriptionStatus.ACTIVE) -> Subscription:
    return start_subscription(
        member=member, plan=plan, status=status, period_start=timezone.now(), period_end=PERIOD_END
    )


def _assert_no_action_while_billing_is_off(body: str) -> None:
    main = body.split("<main", 1)[1]
    assert f'<p id="billing-unavailable" class="muted">{BILLING_UNAVAILABLE}</p>' in main
    assert not re.findall(r"<button[^>]*>", main)
    assert '<form method="post"' not in main


def test_a_member_without_a_subscription_is_on_free(
    logged_in: Client, plans: dict[str, Plan], django_assert_num_queries
):
    with django_assert_num_queries(SUBSCRIPTION_QUERIES):
        response = logged_in.get("/subscription/")
    with django_assert_num_queries(SUBSCRIPTION_QUERIES_WARM):
        logged_in.get("/subscription/")

    assert response.status_code == 200
    body = response.content.decode()
    assert "<strong>Free</strong>: you have no subscription." in body
    _assert_no_action_while_billing_is_off(body)
    assert [plan.name for plan in response.context["plans"]] == ["Free", "Basic", "Pro"]
    assert "Legacy" not in body


def test_a_live_subscription_shows_plan_status_and_renewal(
    logged_in: Client, alice: Member, bob: Member, plans: dict[str, Plan], django_assert_num_queries
):
    _subscribe(alice, plans["pro"])
    _subscribe(bob, plans["basic"])

    with django_assert_num_queries(SUBSCRIPTION_QUERIES):
        response = logged_in.get("/subscription/")

    body = response.content.decode()
    assert "<dt>Plan</dt><dd>Pro (29.00 USD per month)</dd>" in body
    assert "<dt>Status</dt><dd>Active</dd>" in body
    assert "<dt>Renews on</dt>" in body and "14 Mar 2031" in body
    assert "<dt>Cancels at period end</dt><dd>No</dd>" in body
    assert "<strong>Your plan</strong>" in body
    _assert_no_action_while_billing_is_off(body)


def test_a_subscription_set_to_cancel_shows_its_end_and_offers_to_resume(
    logged_in: Client, alice: Member, plans: dict[str, Plan]
):
    subscription = _subscribe(alice, plans["basic"])
    Subscription.objects.filter(pk=subscription.pk).update(cancel_at_period_end=True)

    body = logged_in.get("/subscription/").content.decode()

    assert "<dt>Ends on</dt>" in body
    assert "<dt>Cancels at period end</dt><dd>Yes</dd>" in body
    _assert_no_action_while_billing_is_off(body)


def test_a_comped_membership_ends_rather_than_renews(logged_in: Client, alice: Member, plans: dict[str, Plan]):
    _subscribe(alice, plans["pro"], SubscriptionStatus.COMPED)

    body = logged_in.get("/subscription/").content.decode()

    assert "<dt>Status</dt><dd>Comped, a membership given by staff</dd>" in body
    assert "Cancels at period end" not in body  # Stripe's notion; a comp just ends
    assert "<dt>Ends on</dt>" in body


def test_an_ended_subscription_leaves_the_member_on_free(logged_in: Client, alice: Member, plans: dict[str, Plan]):
    _subscribe(alice, plans["pro"], SubscriptionStatus.CANCELED)

    body = logged_in.get("/subscription/").content.decode()

    assert "<strong>Free</strong>: you have no subscription." in body


def test_an_anonymous_visitor_is_sent_to_log_in(client: Client, db: None):
    response = client.get("/subscription/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/subscription/"
