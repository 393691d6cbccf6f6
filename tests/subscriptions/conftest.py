"""Plans shared by the subscription tests."""

from __future__ import annotations

import pytest

from members.models import Tier
from portal.cache import CONFIG, invalidate
from subscriptions.models import Plan


@pytest.fixture
def plans(db: None) -> dict[str, Plan]:
    """Free, basic and pro on offer, cheapest first, and a legacy plan no longer offered."""
    made = {
        "free": Plan.objects.create(code="free", name="Free", tier=Tier.FREE, price_cents=0),
        "basic": Plan.objects.create(
            code="basic", name="Basic", tier=Tier.BASIC, price_cents=900, stripe_price_id="price_basic"
        ),
        "pro": Plan.objects.create(
            code="pro", name="Pro", tier=Tier.PRO, price_cents=2900, stripe_price_id="price_pro"
        ),
        "legacy": Plan.objects.create(code="legacy", name="Legacy", tier=Tier.BASIC, price_cents=500, is_active=False),
    }
    # Written around `save_plan`, so the cached plan list is refreshed by hand.
    invalidate(CONFIG)
    return made
