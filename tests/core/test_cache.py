"""The cache layer's own behaviour (core/cache.py): hit and miss counts, the warm dashboard's
query count, namespaced invalidation, stampede protection, shared statistics and the log filter.

The stampede tests run on Django's local-memory cache and, marked `redis`, on the real Redis of
REDIS_URL: the lock and the stale entries must work the same on both.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import time_machine
from django.core.cache import cache
from django.test import Client

from core.cache import (
    MEMBER,
    SHORT,
    STAFF,
    TIERS,
    WAIT_SECONDS,
    CachedRead,
    Namespace,
    OncePerInterval,
    check_cache,
    invalidate,
    shape_of,
    stats,
)
from core.cache import cached_read as declare_cached_read
from members.models import Member, Tier
from portal.dashboard import dashboard_summary
from tests.conftest import make_plan
from tests.portal.test_landing import without_nonce

ROOT = Path(__file__).resolve().parents[2]
# Reads declared by these tests live in their own namespace, so they add no tier to the real
# namespaces (whose invalidations are counted per tier).
TESTS = Namespace("tests")
READERS = 16


def _counts(tier: str) -> dict[str, float]:
    return stats.totals()[tier]


def _zero(**counts: float) -> dict[str, float]:
    reads = counts.get("hits", 0) + counts.get("misses", 0)
    return {
        "hits": 0,
        "misses": 0,
        "sets": 0,
        "invalidations": 0,
        **counts,
        "hit_rate": counts.get("hits", 0) / reads if reads else 0.0,
    }


# --- Hits and misses of real pages --------------------------------------------------------------


def test_a_dashboard_visited_twice_is_computed_once_then_served_from_the_cache(client: Client, alice: Member):
    client.force_login(alice)
    stats.reset()

    first = client.get("/dashboard/")
    second = client.get("/dashboard/")

    assert first.status_code == second.status_code == 200
    assert "Welcome, Alice" in second.content.decode()
    totals = stats.totals()
    # The first visit misses and stores the member's snapshot (members/authentication.py), the
    # dashboard's data and the rendered page; the second reads the snapshot and the page, so the
    # data is not read again.
    assert totals["medium"] == _zero(misses=3, sets=3, hits=2)
    # Nothing else on the page is cached, so no other tier moved.
    for tier in ("short", "long", "very_long"):
        assert totals[tier] == _zero()


def test_with_the_page_cache_off_the_dashboard_data_is_still_computed_once(client: Client, alice: Member, settings):
    settings.PAGE_CACHE = False
    client.force_login(alice)
    stats.reset()

    first = client.get("/dashboard/")
    second = client.get("/dashboard/")

    assert first.status_code == second.status_code == 200
    assert "Welcome, Alice" in second.content.decode()
    # The member's snapshot and the dashboard's data, each stored once and read once.
    assert stats.totals()["medium"] == _zero(misses=2, sets=2, hits=2)


def test_the_landing_page_visited_twice_reads_the_plans_once(client: Client, db: None):
    make_plan(code="pro", name="Pro monthly", tier=Tier.PRO, price_cents=2900, stripe_price_id="price_pro")
    stats.reset()

    first = client.get("/")
    second = client.get("/")

    assert without_nonce(first.content) == without_nonce(second.content)  # the CSP nonce is new each time
    assert "Pro monthly" in second.content.decode()
    totals = stats.totals()
    # The first visit misses and stores the plans and the rendered page; the second reads the page.
    assert totals["long"] == _zero(misses=2, sets=2, hits=1)
    assert totals["medium"] == _zero()


def test_the_warm_dashboard_costs_no_query(client: Client, alice: Member, django_assert_num_queries):
    client.force_login(alice)
    client.get("/dashboard/")  # warms the summary, the member's snapshot and the page

    # The session, the member (members/authentication.py) and the page all come from the cache.
    with django_assert_num_queries(0):
        response = client.get("/dashboard/")

    assert response.status_code == 200
    assert "Welcome, Alice" in response.content.decode()


# --- Namespaces ---------------------------------------------------------------------------------


def test_invalidating_one_member_leaves_the_other_members_cached(alice: Member, bob: Member, django_assert_num_queries):
    dashboard_summary(alice.pk)
    dashboard_summary(bob.pk)

    invalidate(MEMBER, alice.pk)

    with django_assert_num_queries(5):  # alice's summary is computed again
        assert dashboard_summary(alice.pk).display_name == "Alice"
    with django_assert_num_queries(0):
        assert dashboard_summary(bob.pk).display_name == "Bob"


def test_a_read_called_by_keyword_is_invalidated_with_its_member(alice: Member, django_assert_num_queries):
    # The scope is the first parameter, however it is passed: by keyword it must land in the
    # member's namespace too (and share the positional call's entry), or invalidating the member
    # would leave it stale.
    dashboard_summary(member_id=alice.pk)
    with django_assert_num_queries(0):
        dashboard_summary(alice.pk)

    invalidate(MEMBER, alice.pk)

    with django_assert_num_queries(5):
        dashboard_summary(member_id=alice.pk)


# --- Stampede protection ------------------------------------------------------------------------


@pytest.fixture(params=["locmem", pytest.param("redis", marks=pytest.mark.redis)])
def shared_cache(request: pytest.FixtureRequest, settings) -> str:
    """The cache the threads share: a local-memory cache, or the Redis of REDIS_URL."""
    if request.param == "locmem":
        settings.CACHES = {
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "stampede"}
        }
        cache.clear()
    stats.reset()
    return str(request.param)


class _Calls:
    """Counts the computations of a test's cached read, from any thread."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self.count += 1
            return self.count


def _read_at_once(read: Callable[[], str], readers: int, returned: threading.Semaphore) -> list[str]:
    """Start `readers` threads on `read` at the same instant; each releases `returned` when done."""
    barrier = threading.Barrier(readers)

    def one() -> str:
        barrier.wait(timeout=5)
        try:
            return read()
        finally:
            returned.release()

    with ThreadPoolExecutor(max_workers=readers) as pool:
        futures = [pool.submit(one) for _ in range(readers)]
        return [future.result(timeout=10) for future in futures]


def test_readers_of_an_expired_key_cause_one_recomputation_and_are_served_the_old_value(shared_cache: str):
    calls = _Calls()
    returned = threading.Semaphore(0)

    @declare_cached_read(tier=SHORT, namespace=TESTS)
    def hot_number() -> str:
        call = calls.next()
        if call > 1:
            # Hold the recomputation until every other reader has its answer: they must not be
            # waiting for this one.
            deadline = time.monotonic() + 5
            for _ in range(READERS - 1):
                returned.acquire(timeout=max(0.0, deadline - time.monotonic()))
        return f"value {call}"

    assert hot_number() == "value 1"
    stats.reset()

    # Past the entry's freshness (one TTL) but before the cache drops it (two).
    with time_machine.travel(time.time() + SHORT.ttl + 1, tick=True):
        results = _read_at_once(hot_number, READERS, returned)
        assert hot_number() == "value 2"  # the recomputed value, now fresh

    assert calls.count == 2
    assert sorted(results) == ["value 1"] * (READERS - 1) + ["value 2"]
    # The stale answers count as hits; the recomputation as a miss and a set; then one fresh hit.
    assert _counts("short") == _zero(hits=READERS, misses=1, sets=1)


def test_readers_of_a_missing_key_wait_for_the_one_that_computes_it(shared_cache: str):
    calls = _Calls()

    @declare_cached_read(tier=SHORT, namespace=TESTS)
    def cold_number() -> str:
        call = calls.next()
        time.sleep(0.3)  # long enough for every reader to find the key missing and locked
        return f"value {call}"

    started = time.monotonic()
    results = _read_at_once(cold_number, READERS, threading.Semaphore(0))
    elapsed = time.monotonic() - started

    assert calls.count == 1
    assert results == ["value 1"] * READERS
    assert elapsed < WAIT_SECONDS  # they had the value as soon as it was there
    assert _counts("short") == _zero(hits=READERS - 1, misses=1, sets=1)


# --- Statistics ---------------------------------------------------------------------------------


def test_counts_flushed_by_many_threads_at_once_add_up(shared_cache: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(stats, "FLUSH_SECONDS", 0.0)  # every count goes straight to the cache
    per_thread = 25

    def count() -> str:
        for _ in range(per_thread):
            stats.record(SHORT, "hits")
        return ""

    _read_at_once(count, READERS, threading.Semaphore(0))

    assert _counts("short")["hits"] == READERS * per_thread


@pytest.mark.redis
def test_counts_of_every_process_add_up():
    stats.reset()
    stats.record(SHORT, "hits")
    stats.record(SHORT, "misses")
    stats.flush()
    code = (
        "import django; django.setup()\n"
        "from core.cache import SHORT, stats\n"
        "for _ in range(3): stats.record(SHORT, 'hits')\n"
        "stats.flush()\n"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings"},
        check=True,
        timeout=60,
    )

    assert _counts("short") == _zero(hits=4, misses=1)
    assert _counts("short")["hit_rate"] == 0.8


def test_a_reset_starts_every_tier_from_zero(alice: Member):
    dashboard_summary(alice.pk)
    dashboard_summary(alice.pk)

    stats.reset()

    assert stats.totals() == {tier.name: _zero() for tier in TIERS}


# --- Health and logging -------------------------------------------------------------------------


def test_a_working_cache_is_reported_up():
    health = check_cache()

    assert health.up
    assert health.error == ""
    assert 0 <= health.latency_ms < 500


def test_a_burst_of_log_records_lets_one_through_per_interval():
    log = logging.getLogger("tests.once_per_interval")
    once = OncePerInterval(interval=0.2)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    log.addFilter(once)
    log.addHandler(handler)
    log.propagate = False
    try:
        for _ in range(100):
            log.error("Exception ignored")
        time.sleep(0.25)
        log.error("Exception ignored")
    finally:
        log.removeFilter(once)
        log.removeHandler(handler)
        log.propagate = True

    assert len(records) == 2
    assert records[0].getMessage() == "Exception ignored"
    assert records[1].getMessage().startswith("Exception ignored (99 more like it in the last")


def test_the_redis_logger_is_limited_to_one_record_a_minute():
    filters = [f for f in logging.getLogger("django_redis").filters if isinstance(f, OncePerInterval)]

    assert len(filters) == 1
    assert filters[0].interval == 60


# --- Keys follow the shape of what is cached --------------------------------------------------


@dataclass(frozen=True)
class _Line:
    label: str
    count: int


@dataclass(frozen=True)
class _Report:
    lines: tuple[_Line, ...]


@dataclass(frozen=True)
class _LineWithShare:
    label: str
    count: int
    share: float


@dataclass(frozen=True)
class _ReportWithShares:
    lines: tuple[_LineWithShare, ...]


def _report() -> _Report:
    return _Report(lines=())


def _same_report_again() -> _Report:
    return _Report(lines=())


def _report_with_shares() -> _ReportWithShares:
    return _ReportWithShares(lines=())


def test_a_reads_keys_change_when_the_shape_it_returns_changes():
    """A release that adds a field to a cached dataclass, even one nested in a tuple, gets new
    keys: old and new instances side by side in a rolling deploy never unpickle each other's."""
    assert shape_of(_report) == shape_of(_same_report_again)
    assert shape_of(_report) != shape_of(_report_with_shares)
    assert shape_of(dashboard_summary) != shape_of(_report)
    read = CachedRead(_report, tier=SHORT, namespace=STAFF)
    key = read.key()
    assert key is not None
    assert f"{read.name}@{shape_of(_report)}:" in key
