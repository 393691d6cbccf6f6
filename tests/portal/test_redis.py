"""With REDIS_URL set, the cache and sessions live in the real Redis, shared by processes."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.contrib.sessions.backends.cached_db import KEY_PREFIX, SessionStore
from django.core.cache import cache
from django_redis import get_redis_connection

pytestmark = pytest.mark.redis
ROOT = Path(__file__).resolve().parents[2]


def test_the_cache_round_trips_through_redis():
    key = f"test:{uuid.uuid4()}"
    cache.set(key, {"tier": "pro"}, timeout=30)
    assert cache.get(key) == {"tier": "pro"}
    # Stored in Redis itself, under the portal's prefix, with the expiry asked for.
    redis = get_redis_connection("default")
    stored = list(redis.keys(f"portal:*{key}"))
    assert len(stored) == 1
    assert 0 < redis.ttl(stored[0]) <= 30
    cache.delete(key)


def test_another_process_reads_what_this_one_cached():
    key = f"test:{uuid.uuid4()}"
    cache.set(key, "from the test process", timeout=30)
    code = f"import django; django.setup(); from django.core.cache import cache; print(cache.get({key!r}))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "from the test process"
    cache.delete(key)


def test_a_session_is_cached_in_redis_and_kept_in_the_database(db):
    store = SessionStore()
    store["member_id"] = 7
    store.save()
    key = KEY_PREFIX + str(store.session_key)
    assert cache.get(key) == {"member_id": 7}
    # A Redis flush loses no session: it is read back from the database.
    cache.delete(key)
    assert SessionStore(session_key=store.session_key)["member_id"] == 7
