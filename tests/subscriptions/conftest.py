"""Plans, Stripe's API on loopback and signed webhook deliveries, shared by the subscription tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from core.cache import CONFIG, invalidate
from members.models import Tier
from subscriptions import stripe_api
from subscriptions.models import Plan
from tests.conftest import make_plan
from tests.subscriptions.fake_stripe import FakeStripe, signed

WEBHOOK_SECRET = "whsec_test_current"
OLD_WEBHOOK_SECRET = "whsec_test_previous"


@pytest.fixture
def plans(db: None) -> dict[str, Plan]:
    """Free, basic and pro on offer (the default plans, with Stripe prices), cheapest first, and
    a legacy plan no longer offered."""
    made = {
        "free": make_plan(code="free", name="Free", tier=Tier.FREE, price_cents=0, stripe_price_id=""),
        "basic": make_plan(code="basic", name="Basic", tier=Tier.BASIC, price_cents=900, stripe_price_id="price_basic"),
        "pro": make_plan(code="pro", name="Pro", tier=Tier.PRO, price_cents=2900, stripe_price_id="price_pro"),
        "legacy": make_plan(
            code="legacy", name="Legacy", tier=Tier.BASIC, price_cents=500, stripe_price_id="", is_active=False
        ),
    }
    # Written around `save_plan`, so the cached plan list is refreshed by hand.
    invalidate(CONFIG)
    return made


@pytest.fixture
def stripe_server(settings: Any) -> Iterator[FakeStripe]:
    """Stripe's API on a loopback port, with billing configured to call it."""
    fake = FakeStripe()
    server = fake.serve()
    settings.STRIPE_SECRET_KEY = "sk_test_portal"
    settings.STRIPE_API_BASE = fake.url
    yield fake
    server.shutdown()
    server.server_close()
    stripe_api._client.cache_clear()


@pytest.fixture
def webhook_secrets(settings: Any) -> list[str]:
    """Two signing secrets, as during a rotation: the new one first."""
    settings.STRIPE_WEBHOOK_SECRETS = [WEBHOOK_SECRET, OLD_WEBHOOK_SECRET]
    return settings.STRIPE_WEBHOOK_SECRETS


def deliver(client: Client, event: dict[str, Any], *, secret: str = WEBHOOK_SECRET) -> Any:
    """POST `event` to the webhook as Stripe does: a JSON body signed now with `secret`."""
    payload = json.dumps(event)
    return client.post(
        "/webhooks/stripe/",
        data=payload,
        content_type="application/json",
        headers={"Stripe-Signature": signed(payload, secret)},
    )
