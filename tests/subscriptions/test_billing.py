"""Members subscribe, change plan, cancel, resume and manage billing from /subscription/, with
Stripe's API on loopback."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from members.models import Action, ActivityLog, Member, Tier
from subscriptions.models import Plan, Subscription, SubscriptionStatus
from subscriptions.services import comp_membership, sync_stripe_subscription
from subscriptions.stripe_api import SubscriptionState
from subscriptions.views import BILLING_UNAVAILABLE, STRIPE_UNREACHABLE
from tests.subscriptions import fake_stripe
from tests.subscriptions.fake_stripe import FakeStripe

pytestmark = pytest.mark.usefixtures("plans")


@pytest.fixture(autouse=True)
def _render_every_page(settings) -> None:
    """These tests pin what a render of the page costs and shows; serving it from the page cache
    is tested in tests/core/test_pagecache.py and tests/portal/test_cache_invalidation.py."""
    settings.PAGE_CACHE = False


def _messages(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def _paying(member: Member, stripe_server: FakeStripe, **fields: Any) -> Subscription:
    """`member` on basic through Stripe: known to the fake Stripe and synced here."""
    sub = stripe_server.add(fake_stripe.subscription(member_id=member.pk, **fields))
    synced = sync_stripe_subscription(state=SubscriptionState.from_stripe(sub), state_at=timezone.now(), source="test")
    assert synced is not None
    return synced


# --- Without Stripe -------------------------------------------------------------------------------


def test_without_a_stripe_key_the_page_says_billing_is_off_and_offers_no_action(client: Client, alice: Member) -> None:
    client.force_login(alice)

    response = client.get("/subscription/")

    html = response.content.decode()
    assert response.status_code == 200
    assert BILLING_UNAVAILABLE in html
    assert "<form" not in html.split("<h3>Actions</h3>")[1].split("</section>")[0]


@pytest.mark.parametrize("path", ["checkout", "change", "cancel", "resume", "billing"])
def test_without_a_stripe_key_every_action_explains_and_changes_nothing(
    client: Client, alice: Member, path: str
) -> None:
    client.force_login(alice)

    response = client.post(f"/subscription/{path}/", {"plan": "basic"}, follow=True)

    assert response.status_code == 200
    assert any(
        text in message
        for message in _messages(response)
        for text in (BILLING_UNAVAILABLE, "no billing account", "no subscription")
    )
    assert not Subscription.objects.exists()


# --- Subscribe --------------------------------------------------------------------------------


def test_subscribing_sends_the_member_to_stripe_checkout(
    client: Client, alice: Member, stripe_server: FakeStripe
) -> None:
    client.force_login(alice)

    response = client.post("/subscription/checkout/", {"plan": "basic"})

    assert response.status_code == 303
    assert response["Location"].startswith("https://checkout.stripe.com/c/pay/cs_test_")
    (call,) = stripe_server.calls
    assert (call.method, call.path, call.authorization) == ("POST", "/v1/checkout/sessions", "Bearer sk_test_portal")
    assert call.form["mode"] == "subscription"
    assert call.form["line_items[0][price]"] == "price_basic"
    assert call.form["client_reference_id"] == str(alice.pk)
    assert call.form["subscription_data[metadata][member_id]"] == str(alice.pk)
    assert call.form["customer_email"] == "alice@example.com"
    assert call.form["success_url"].startswith("http://testserver/subscription/?checkout=success")


def test_back_from_checkout_the_member_sees_their_new_plan_at_once(
    client: Client, alice: Member, stripe_server: FakeStripe
) -> None:
    client.force_login(alice)
    client.post("/subscription/checkout/", {"plan": "pro"})
    (session_id,) = stripe_server.checkout_sessions
    stripe_server.complete_checkout(
        session_id, sub=fake_stripe.subscription(member_id=alice.pk, price_id="price_pro", customer="cus_test_a")
    )

    response = client.get(f"/subscription/?checkout=success&session_id={session_id}", follow=True)

    assert "Thank you. You are now on Pro." in _messages(response)
    alice.refresh_from_db()
    assert alice.tier == Tier.PRO
    assert Subscription.objects.get(member=alice).stripe_customer_id == "cus_test_a"
    assert ActivityLog.objects.filter(member=alice, action=Action.SUBSCRIPTION_CHANGED).count() == 1


def test_another_members_checkout_session_is_not_applied(
    client: Client, alice: Member, bob: Member, stripe_server: FakeStripe
) -> None:
    client.force_login(bob)
    client.post("/subscription/checkout/", {"plan": "pro"})
    (session_id,) = stripe_server.checkout_sessions
    stripe_server.complete_checkout(session_id, sub=fake_stripe.subscription(member_id=bob.pk, price_id="price_pro"))
    client.force_login(alice)

    client.get(f"/subscription/?checkout=success&session_id={session_id}")

    assert not Subscription.objects.exists()


def test_a_plan_not_on_offer_cannot_be_bought(client: Client, alice: Member, stripe_server: FakeStripe) -> None:
    client.force_login(alice)

    for code in ("legacy", "free", "nonsense"):
        response = client.post("/subscription/checkout/", {"plan": code}, follow=True)
        assert "Choose one of the plans on offer." in _messages(response)
    assert stripe_server.calls == []


def test_when_stripe_fails_the_member_is_told_and_nothing_changes(
    client: Client, alice: Member, stripe_server: FakeStripe
) -> None:
    stripe_server.failing = 500
    client.force_login(alice)

    response = client.post("/subscription/checkout/", {"plan": "basic"}, follow=True)

    assert response.status_code == 200
    assert STRIPE_UNREACHABLE in _messages(response)


def test_a_paying_member_is_not_sent_to_checkout_again(
    client: Client, alice: Member, stripe_server: FakeStripe
) -> None:
    _paying(alice, stripe_server)
    client.force_login(alice)

    response = client.post("/subscription/checkout/", {"plan": "pro"}, follow=True)

    assert "You already have a subscription; change its plan instead." in _messages(response)
    assert [call.path for call in stripe_server.calls] == []


def test_a_returning_member_checks_out_as_their_stripe_customer(
    client: Client, alice: Member, stripe_server: FakeStripe
) -> None:
    _paying(alice, stripe_server, status="canceled", customer="cus_test_returning")
    client.force_login(alice)

    client.post("/subscription/checkout/", {"plan": "basic"})

    (call,) = stripe_server.calls
    assert call.form["customer"] == "cus_test_returning"
    assert "customer_email" not in call.form


# --- Paying members -------------------------------------------------------------------------------


def test_cancel_at_period_end_then_resume(client: Client, alice: Member, stripe_server: FakeStripe) -> None:
    subscription = _paying(alice, stripe_server)
    client.force_login(alice)

    cancelled = client.post("/subscription/cancel/", follow=True)

    subscription.refresh_from_db()
    assert subscription.cancel_at_period_end is True
    assert subscription.status == SubscriptionStatus.ACTIVE  # the member keeps the plan until then
    assert any(message.startswith("Your subscription will end on") for message in _messages(cancelled))
    assert "Resume subscription" in cancelled.content.decode()
    assert stripe_server.calls[-1].form == {"cancel_at_period_end": "true"}

    resumed = client.post("/subscription/resume/", follow=True)

    subscription = Subscription.objects.get(pk=subscription.pk)
    assert subscription.cancel_at_period_end is False
    assert "Your subscription will renew as before." in _messages(resumed)
    changes = ActivityLog.objects.filter(member=alice, action=Action.SUBSCRIPTION_CHANGED).order_by("id")
    cancel_flag = ["cancel_at_period_end"]
    assert [entry.detail.get("changed") for entry in changes] == [["created"], cancel_flag, cancel_flag]
    assert all(entry.detail["source"] == "member" for entry in changes[1:])


def test_changing_plan_opens_stripes_confirmation_of_the_change(
    client: Client, alice: Member, stripe_server: FakeStripe
) -> None:
    subscription = _paying(alice, stripe_server, customer="cus_test_alice")
    client.force_login(alice)

    response = client.post("/subscription/change/", {"plan": "pro"})

    assert response.status_code == 303
    assert response["Location"].startswith("https://billing.stripe.com/p/session/")
    call = stripe_server.calls[-1]
    assert call.path == "/v1/billing_portal/sessions"
    assert call.form["flow_data[type]"] == "subscription_update_confirm"
    assert call.form["flow_data[subscription_update_confirm][subscription]"] == subscription.stripe_subscription_id
    assert call.form["flow_data[subscription_update_confirm][items][0][price]"] == "price_pro"
    assert call.form["customer"] == "cus_test_alice"


def test_manage_billing_opens_the_customer_portal(client: Client, alice: Member, stripe_server: FakeStripe) -> None:
    _paying(alice, stripe_server, customer="cus_test_alice")
    client.force_login(alice)

    response = client.post("/subscription/billing/")

    assert response.status_code == 303
    call = stripe_server.calls[-1]
    assert (call.path, call.form["customer"]) == ("/v1/billing_portal/sessions", "cus_test_alice")
    assert call.form["return_url"] == "http://testserver/subscription/"


def test_a_comped_member_can_subscribe_but_not_cancel_the_comp(
    client: Client, alice: Member, carol: Member, stripe_server: FakeStripe, plans: dict[str, Plan]
) -> None:
    comp_membership(member=alice, plan=plans["pro"], until=timezone.now() + dt.timedelta(days=30), actor=carol)
    client.force_login(alice)

    page = client.get("/subscription/").content.decode()
    refused = client.post("/subscription/cancel/", follow=True)

    assert "a membership given by staff" in page
    assert "Subscribe to Basic" in page
    assert "Your membership was given by staff; ask them to change it." in _messages(refused)


def test_actions_need_a_csrf_token(alice: Member, stripe_server: FakeStripe) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    assert client.post("/subscription/checkout/", {"plan": "basic"}).status_code == 403
    assert stripe_server.calls == []


# --- Queries ------------------------------------------------------------------------------------


@pytest.mark.parametrize("paying", [False, True], ids=["free", "paying"])
def test_subscription_page_query_count(
    client: Client, alice: Member, stripe_server: FakeStripe, django_assert_num_queries: Any, paying: bool
) -> None:
    if paying:
        _paying(alice, stripe_server)
    client.force_login(alice)
    client.get("/subscription/")  # the plans on offer are cached from here on

    # Their live subscription with its plan, and their Stripe customer id; the session and the
    # member come from the cache (members/authentication.py), their time zone with their profile
    # (members/reads.py).
    with django_assert_num_queries(2):
        response = client.get("/subscription/")

    assert response.status_code == 200
