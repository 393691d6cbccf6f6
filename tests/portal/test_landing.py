"""The landing page."""

from __future__ import annotations

import re
from pathlib import Path

from members.models import Tier
from subscriptions.models import Plan
from tests.conftest import make_plan

ROOT = Path(__file__).resolve().parents[2]


def without_nonce(content: bytes) -> bytes:
    return re.sub(rb'nonce="[^"]*"', b'nonce=""', content)


def test_landing_page_lists_the_plans_on_offer_from_the_cache(client, db, django_assert_num_queries):
    make_plan(code="free", name="Free", tier=Tier.FREE, price_cents=0)
    make_plan(code="pro", name="Pro", tier=Tier.PRO, price_cents=2900, stripe_price_id="price_pro")
    Plan.objects.create(code="legacy", name="Legacy", tier=Tier.BASIC, price_cents=500, is_active=False)
    with django_assert_num_queries(1):
        response = client.get("/")
    with django_assert_num_queries(0):
        again = client.get("/")
    # The same page, but for its script's CSP nonce, which is new for every response.
    assert without_nonce(again.content) == without_nonce(response.content)
    assert response.status_code == 200
    body = response.content.decode()
    assert "Pro" in body and "29.00 USD" in body
    assert "Legacy" not in body


def test_landing_page_says_so_when_no_plan_is_offered(client, db):
    Plan.objects.update(is_active=False)  # the default plans, withdrawn
    response = client.get("/")
    assert "No plans are offered yet" in response.content.decode()


def test_the_stylesheet_comes_inline(client, db):
    # Nothing to fetch before the first paint (portal/inline.py; its CSP: tests/portal/test_inline.py).
    html = client.get("/").content.decode()
    assert f"<style>{(ROOT / 'static/css/portal.css').read_text()}</style>" in html
    assert "/static/css/portal." not in html


def test_the_anonymous_landing_page_may_be_cached_briefly_by_shared_caches(client, db, settings):
    for _ in range(2):  # rendered, then from the page cache (core/pagecache.py): the same headers
        response = client.get("/")
        assert response["Cache-Control"] == f"public, max-age={settings.CACHE_TTL_SHORT}"
        assert "Cookie" in response["Vary"]


def test_a_logged_in_member_never_gets_the_cached_anonymous_page(client, alice):
    client.get("/")
    client.get("/")  # the anonymous page, from the cache

    client.force_login(alice)
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/dashboard/"


def test_static_files_are_cached_for_a_year_in_production(tmp_path):
    """With DEBUG off, collected static files have content-hashed names and are served with a
    far-future, immutable Cache-Control."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": "x" * 50,
        "ALLOWED_HOSTS": "testserver",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "portal.settings",
    }
    env.pop("REDIS_URL", None)
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=root, env=env, check=True, timeout=120
    )
    code = (
        "import django; django.setup()\n"
        "from django.templatetags.static import static\n"
        "from django.test import Client\n"
        "url = static('css/portal.css')\n"
        "response = Client().get(url, secure=True)\n"
        "print(url, response.status_code, response['Cache-Control'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, check=True, timeout=60
    )
    url, status, cache_control = result.stdout.split(maxsplit=2)
    assert url.startswith("/static/css/portal.") and url != "/static/css/portal.css"  # hashed name
    assert status == "200"
    assert "max-age=315360000" in cache_control and "immutable" in cache_control
