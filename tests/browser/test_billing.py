"""Billing in the browser: a paying member cancels and resumes; a free member is offered the paid
plans. Stripe's API is the loopback stand-in of tests/subscriptions/fake_stripe.py."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.utils import timezone
from playwright.sync_api import Page, expect

from core.cache import CONFIG, invalidate
from members.models import Member, Tier
from subscriptions import stripe_api
from subscriptions.services import sync_stripe_subscription
from subscriptions.stripe_api import SubscriptionState
from tests.conftest import PASSWORD, make_plan
from tests.subscriptions import fake_stripe
from tests.subscriptions.fake_stripe import FakeStripe

pytestmark = pytest.mark.browser


@pytest.fixture
def billing(settings: Any, db: None) -> Iterator[FakeStripe]:
    fake = FakeStripe()
    server = fake.serve()
    settings.STRIPE_SECRET_KEY = "sk_test_browser"
    settings.STRIPE_API_BASE = fake.url
    make_plan(code="basic", name="Basic", tier=Tier.BASIC, price_cents=900, stripe_price_id="price_basic")
    make_plan(code="pro", name="Pro", tier=Tier.PRO, price_cents=2900, stripe_price_id="price_pro")
    invalidate(CONFIG)
    yield fake
    server.shutdown()
    server.server_close()
    stripe_api._client.cache_clear()


def _log_in(page: Page, member: Member) -> None:
    EmailAddress.objects.create(user=member, email=member.email, verified=True, primary=True)
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(member.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    expect(page).to_have_url(re.compile(r"/dashboard/$"))


def test_a_paying_member_cancels_at_period_end_and_resumes(
    page: Page, checkpoint: Callable[[str], None], alice: Member, billing: FakeStripe
) -> None:
    sub = billing.add(fake_stripe.subscription(member_id=alice.pk))
    sync_stripe_subscription(state=SubscriptionState.from_stripe(sub), state_at=timezone.now(), source="test")
    _log_in(page, alice)

    page.goto("/subscription/")
    checkpoint("paying")
    page.get_by_role("button", name="Cancel at period end").click()

    expect(page.get_by_role("status")).to_contain_text("Your subscription will end on")
    expect(page.get_by_text("Ends on")).to_be_visible()
    checkpoint("cancelling")
    page.get_by_role("button", name="Resume subscription").click()

    expect(page.get_by_role("status")).to_contain_text("Your subscription will renew as before.")
    expect(page.get_by_role("button", name="Cancel at period end")).to_be_visible()
    expect(page.get_by_label("Change plan to")).to_have_value("pro")
    assert [call.form for call in billing.calls if call.method == "POST"] == [
        {"cancel_at_period_end": "true"},
        {"cancel_at_period_end": "false"},
    ]


def test_a_free_member_is_offered_the_paid_plans(
    page: Page, checkpoint: Callable[[str], None], alice: Member, billing: FakeStripe
) -> None:
    _log_in(page, alice)
    page.goto("/subscription/")
    checkpoint("free")
    # Checkout is on Stripe's own site, which this machine cannot reach: the test follows the
    # member as far as the browser's request for it.
    with page.expect_request(re.compile(r"^https://checkout\.stripe\.com/")) as checkout:
        page.get_by_role("button", name="Subscribe to Pro").click()

    assert checkout.value.url.startswith("https://checkout.stripe.com/c/pay/cs_test_")
    (call,) = billing.calls
    assert call.form["line_items[0][price]"] == "price_pro"
