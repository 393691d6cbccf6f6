"""The landing page."""

from __future__ import annotations

from members.models import Tier
from subscriptions.models import Plan


def test_landing_page_lists_the_plans_on_offer_from_the_cache(client, db, django_assert_num_queries):
    Plan.objects.create(code="free", name="Free", tier=Tier.FREE, price_cents=0)
    Plan.objects.create(code="pro", name="Pro", tier=Tier.PRO, price_cents=2900, stripe_price_id="price_pro")
    Plan.objects.create(code="legacy", name="Legacy", tier=Tier.BASIC, price_cents=500, is_active=False)
    with django_assert_num_queries(1):
        response = client.get("/")
    with django_assert_num_queries(0):
        assert client.get("/").content == response.content
    assert response.status_code == 200
    body = response.content.decode()
    assert "Pro" in body and "29.00 USD" in body
    assert "Legacy" not in body


def test_landing_page_says_so_when_no_plan_is_offered(client, db):
    response = client.get("/")
    assert "No plans are offered yet" in response.content.decode()


def test_static_stylesheet_is_served(client, db):
    response = client.get("/")
    assert 'href="/static/css/portal.css"' in response.content.decode()
