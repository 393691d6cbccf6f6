"""Personas and server gates shared by the whole suite.

alice and bob are members, carol is staff. Tests marked `postgres` or `redis` need that server:
without it configured they are skipped locally, and fail when `CI` is set, so a CI run that
lost its server cannot pass by skipping.
"""

from __future__ import annotations

import os

import pytest
from django.conf import settings
from django.db import connection

from members.models import Member
from members.services import create_member

PASSWORD = "correct horse battery staple"


def _postgres_configured() -> bool:
    return connection.vendor == "postgresql"


def _redis_configured() -> bool:
    return settings.CACHES["default"]["BACKEND"].startswith("django_redis")


def pytest_runtest_setup(item: pytest.Item) -> None:
    needs = []
    if item.get_closest_marker("postgres") and not _postgres_configured():
        needs.append("PostgreSQL (set DATABASE_URL=postgres://...)")
    if item.get_closest_marker("redis") and not _redis_configured():
        needs.append("Redis (set REDIS_URL=redis://...)")
    if not needs:
        return
    message = "needs " + " and ".join(needs)
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and this test {message}", pytrace=False)
    pytest.skip(message)


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
