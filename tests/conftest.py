"""Personas and server gates shared by the whole suite.

alice and bob are members, carol is staff. Tests marked `postgres` or `redis` need that server:
without it configured they are skipped locally, and fail when `CI` is set, so a CI run that
lost its server cannot pass by skipping. Tests marked `browser` need Debian's Chromium at
`CHROMIUM` (`apt-get install chromium`), and tests marked `prometheus` need Debian's Prometheus
server and promtool (`apt-get install prometheus`), gated the same way.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth.hashers import Argon2PasswordHasher
from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache
from django.db import connection
from django.test.utils import override_settings

from core import redis_breaker
from members.models import Member
from members.services import create_member
from subscriptions.models import Plan

PASSWORD = "correct horse battery staple"
# Debian's build, driven by Playwright; Playwright's own downloaded browsers are never used.
CHROMIUM = Path("/usr/bin/chromium")


def _postgres_configured() -> bool:
    return connection.vendor == "postgresql"


def _redis_configured() -> bool:
    return str(settings.CACHES["default"]["BACKEND"]).startswith("django_redis")


def pytest_runtest_setup(item: pytest.Item) -> None:
    needs = []
    if item.get_closest_marker("postgres") and not _postgres_configured():
        needs.append("PostgreSQL (set DATABASE_URL=postgres://...)")
    if item.get_closest_marker("redis") and not _redis_configured():
        needs.append("Redis (set REDIS_URL=redis://...)")
    if item.get_closest_marker("browser") and not os.access(CHROMIUM, os.X_OK):
        needs.append(f"Chromium at {CHROMIUM} (apt-get install chromium fonts-dejavu-core)")
    if item.get_closest_marker("prometheus") and not (shutil.which("prometheus") and shutil.which("promtool")):
        needs.append("Prometheus and promtool on PATH (apt-get install prometheus)")
    if not needs:
        return
    message = "needs " + " and ".join(needs)
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and this test {message}", pytrace=False)
    pytest.skip(message)


def make_plan(*, code: str, **fields: Any) -> Plan:
    """A plan as a test needs it. The default plans (free, basic, pro) exist after every migrate,
    so a test sets its own values over them rather than creating a second plan with their code."""
    plan, _ = Plan.objects.update_or_create(code=code, defaults=fields)
    return plan


class CheapArgon2PasswordHasher(Argon2PasswordHasher):
    """Argon2 at its cheapest parameters, for tests only. The portal's own parameters cost about
    0.2 s a hash on a 2-core machine, and most tests make or log in two or three members; the
    algorithm and the encoding (`argon2$...`) are the same, so tests of hashing still hold."""

    time_cost = 1
    memory_cost = 8  # KiB: Argon2's minimum for one lane
    parallelism = 1


@pytest.fixture(autouse=True, scope="session")
def _cheap_password_hashing() -> Iterator[None]:
    # Through override_settings, so Django's cached list of hashers is rebuilt.
    with override_settings(PASSWORD_HASHERS=["tests.conftest.CheapArgon2PasswordHasher", *settings.PASSWORD_HASHERS]):
        yield


@pytest.fixture(autouse=True, scope="session")
def _tasks_run_eagerly() -> Iterator[None]:
    """Tasks run in the test's process, even with REDIS_URL set (which gives the portal a
    broker): the tests of the queue itself switch to it (tests/background.py `queueing`)."""
    from portal.celery import app

    saved = app.conf.task_always_eager
    app.conf.task_always_eager = True
    with override_settings(CELERY_TASK_ALWAYS_EAGER=True):
        yield
    app.conf.task_always_eager = saved


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    """Each test starts with an empty cache: rate-limit counters and cached reads from one test
    must not leak into the next (with REDIS_URL set, this empties the test Redis database). A
    Redis circuit tripped by an outage test is closed again first."""
    redis_breaker.reset()
    cache.clear()


@pytest.fixture
def alice(db: None) -> Member:
    return create_member(email="alice@example.com", password=PASSWORD, display_name="Alice")


@pytest.fixture
def bob(db: None) -> Member:
    return create_member(email="bob@example.com", password=PASSWORD, display_name="Bob")


@pytest.fixture
def carol(db: None) -> Member:
    return create_member(
        email="carol@example.com", password=PASSWORD, display_name="Carol", is_staff=True, is_superuser=True
    )


@pytest.fixture
def warm_content_types(db: None) -> None:
    """Admin change pages look up their model's content type, which a running server caches for
    good after the first request. Warm that cache so a query count does not depend on which test
    ran first."""
    ContentType.objects.get_for_models(*apps.get_models())


@pytest.fixture(scope="module")
def scale_rows(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Enough rows, with realistic skew, that PostgreSQL's planner picks an index only when it
    really serves the query: 5,000 members (2% pro, 18% basic), 200,000 activity rows plus 400
    more for one busy member (m2500), a token and a subscription each (2% past due). Loaded
    once per module with set-based SQL and ANALYZEd; removed when the module is done."""
    statements = [
        """INSERT INTO members_member (password, is_superuser, email, tier, status, is_staff, created_at, updated_at)
           SELECT '!', false, 'm' || g || '@scale.example',
                  CASE WHEN g % 50 = 0 THEN 'pro' WHEN g % 5 = 0 THEN 'basic' ELSE 'free' END,
                  'active', false, now() - g * interval '1 minute', now()
           FROM generate_series(1, 5000) g""",
        """INSERT INTO members_activitylog (member_id, action, created_at, ip, user_agent, detail)
           SELECT m.id, (ARRAY['login', 'logout', 'profile_updated', 'token_created'])[1 + g % 4],
                  now() - g * interval '37 minutes' - m.id * interval '1 second', '127.0.0.1', 'bench', '{}'::jsonb
           FROM members_member m CROSS JOIN generate_series(1, 40) g""",
        """INSERT INTO members_activitylog (member_id, action, created_at, ip, user_agent, detail)
           SELECT m.id, (ARRAY['login', 'logout', 'profile_updated', 'token_created'])[1 + g % 4],
                  now() - g * interval '17 minutes' - interval '11 seconds', '127.0.0.1', 'bench', '{}'::jsonb
           FROM members_member m CROSS JOIN generate_series(1, 400) g WHERE m.email = 'm2500@scale.example'""",
        """INSERT INTO members_apitoken (member_id, name, prefix, last_chars, token_hash, scopes, created_at)
           SELECT id, 'script', 'mpt_abcd', 'wxyz', md5(id::text) || md5(email), '["read"]'::jsonb, now()
           FROM members_member""",
        """INSERT INTO subscriptions_plan (code, name, tier, price_cents, currency, interval, stripe_price_id,
                                          is_active, created_at, updated_at)
           VALUES ('scale-basic', 'Scale basic', 'basic', 900, 'usd', 'month', '', true, now(), now())""",
        """INSERT INTO subscriptions_subscription (member_id, plan_id, status, stripe_subscription_id,
               stripe_customer_id, current_period_start, current_period_end, cancel_at_period_end,
               created_at, updated_at)
           SELECT m.id, p.id, CASE WHEN m.id % 50 = 0 THEN 'past_due' ELSE 'active' END, 'sub_' || m.id,
                  'cus_' || m.id, now(), now() + interval '30 days', false, now(), now()
           FROM members_member m, subscriptions_plan p WHERE p.code = 'scale-basic'""",
        "ANALYZE members_member, members_activitylog, members_apitoken, subscriptions_subscription",
    ]
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    yield
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute("TRUNCATE members_member CASCADE")  # and every row that refers to a member
        cursor.execute("DELETE FROM subscriptions_plan WHERE code = 'scale-basic'")  # the default plans stay
