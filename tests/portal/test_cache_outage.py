"""With Redis gone or hung, every page still answers from the database, nobody is logged out,
the health check says the cache is down and the log gets one line, not one per request; when
Redis returns, caching resumes by itself.

Each test runs its own `redis-server` on a free port, so it can be killed, paused and restarted
without touching the Redis of REDIS_URL, and points the cache at it with the same options as
production (`portal.settings._redis_cache`).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis
from allauth.account.models import EmailAddress
from django.core.cache import cache
from django.test import Client
from django_redis import get_redis_connection

from core import redis_breaker
from core.cache import OncePerInterval, check_cache
from members.models import Member, Tier, TokenScope
from members.services import create_api_token
from portal.settings import _redis_cache
from tests.conftest import PASSWORD, make_plan

pytestmark = pytest.mark.redis

# Every member page, with something on it only the database could have told.
MEMBER_PAGES = {
    "/dashboard/": "Welcome, Alice<",
    "/profile/": 'value="Alice"',
    "/tokens/": "deploy bot",
    "/activity/": "Created an API token",
    "/subscription/": "Pro monthly",
}
SOCKET_TIMEOUT = 0.5  # portal.settings: SOCKET_TIMEOUT and SOCKET_CONNECT_TIMEOUT


class RedisServer:
    """A throwaway redis-server: no persistence, so a restart comes back empty."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--daemonize", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        probe = redis.Redis(port=self.port, socket_timeout=0.2, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                probe.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.02)
        probe.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # SIGKILL: also ends a paused (SIGSTOP) server
            self.process.wait(timeout=10)
        self.process = None

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


@pytest.fixture
def own_redis(settings) -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        server.start()
        # Changing CACHES makes Django drop its cache connections, so the next use connects here.
        settings.CACHES = {"default": _redis_cache(server.url)}
        assert get_redis_connection("default").connection_pool.connection_kwargs["port"] == server.port
        yield server
    finally:
        server.kill()


@pytest.fixture
def redis_log_filter(monkeypatch: pytest.MonkeyPatch) -> OncePerInterval:
    """The filter settings.LOGGING puts on the `django_redis` logger, as if nothing had been
    logged this minute (an earlier test's outage would otherwise have used up the minute)."""
    (once,) = [f for f in logging.getLogger("django_redis").filters if isinstance(f, OncePerInterval)]
    monkeypatch.setattr(once, "_last", -math.inf)
    monkeypatch.setattr(once, "_held", 0)
    return once


@pytest.fixture
def alices_client(client: Client, alice: Member) -> Client:
    """alice logged in, with a token, a subscription plan on offer and every page visited once."""
    create_api_token(member=alice, name="deploy bot", scopes=[TokenScope.READ], expires_at=None)
    make_plan(code="pro", name="Pro monthly", tier=Tier.PRO, price_cents=2900, stripe_price_id="price_pro")
    client.force_login(alice)
    for url, shown in MEMBER_PAGES.items():
        assert shown in _page(client, url)
    return client


def _page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, f"{url} answered {response.status_code}"
    return response.content.decode()


def test_pages_answer_from_the_database_while_redis_is_down(
    own_redis: RedisServer,
    alices_client: Client,
    redis_log_filter: OncePerInterval,
    caplog: pytest.LogCaptureFixture,
):
    visitor = Client()
    assert "Pro monthly" in _page(visitor, "/")
    assert check_cache().up

    own_redis.kill()
    caplog.clear()
    for _ in range(3):
        for url, shown in MEMBER_PAGES.items():
            assert shown in _page(alices_client, url)  # still logged in, and the right content
        assert "Pro monthly" in _page(visitor, "/")
    # A write works too, and the next page shows it.
    response = alices_client.post(
        "/profile/", {"display_name": "Alice Liddell", "bio": "", "time_zone": "UTC", "email_updates": ""}
    )
    assert response.status_code == 302
    assert "Welcome, Alice Liddell<" in _page(alices_client, "/dashboard/")

    health = check_cache()
    assert not health.up
    assert health.error == "ConnectionError"
    # Nineteen requests, each with several failed cache calls: one line in the log.
    problems = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert [record.name for record in problems] == ["django_redis"]
    assert redis_log_filter._held > 19


def test_caching_resumes_by_itself_when_redis_returns(
    own_redis: RedisServer, alices_client: Client, django_assert_num_queries, monkeypatch: pytest.MonkeyPatch
):
    own_redis.kill()
    _page(alices_client, "/dashboard/")
    assert not check_cache().up

    own_redis.start()  # same port, empty
    assert not check_cache().up  # the circuit the outage opened is still open...
    # ...for OPEN_SECONDS, after which the next call tries Redis again: move the breaker's clock on.
    monkeypatch.setattr(redis_breaker, "_now", lambda: time.monotonic() + redis_breaker.OPEN_SECONDS)

    assert check_cache().up
    cache.set("outage:probe", "back", timeout=30)
    assert cache.get("outage:probe") == "back"
    assert "Welcome, Alice<" in _page(alices_client, "/dashboard/")
    with django_assert_num_queries(0):  # warm again: the member and the page from the cache
        assert "Welcome, Alice<" in _page(alices_client, "/dashboard/")


def test_a_hung_redis_delays_a_page_by_a_few_socket_timeouts_only(
    own_redis: RedisServer, alices_client: Client, django_assert_num_queries
):
    own_redis.pause()
    try:
        started = time.perf_counter()
        body = _page(alices_client, "/dashboard/")
        elapsed = time.perf_counter() - started
        health = check_cache()
    finally:
        own_redis.resume()

    assert "Welcome, Alice<" in body
    print(f"dashboard with Redis hung: {elapsed:.2f} s; health check: {health.latency_ms:.0f} ms")
    # One timeout: the first call trips the circuit breaker (core/redis_breaker.py) and every
    # later call fails at once; a little room on top for a slow machine.
    assert elapsed < 8 * SOCKET_TIMEOUT
    assert not health.up
    # The page's first call timed out and tripped the circuit: the check fails at once.
    assert health.error in {"TimeoutError", "ConnectionError"}
    assert health.latency_ms < 3 * SOCKET_TIMEOUT * 1000
    # Resumed, and the circuit closed (OPEN_SECONDS later; here at once): from the cache again.
    redis_breaker.reset()
    _page(alices_client, "/dashboard/")
    with django_assert_num_queries(0):  # the member and the page from the cache
        assert "Welcome, Alice<" in _page(alices_client, "/dashboard/")


def test_members_log_in_while_redis_is_down(own_redis: RedisServer, alice: Member):
    """The login limits count in the cache; with the cache down they let logins through rather
    than refuse them all."""
    EmailAddress.objects.create(user=alice, email=alice.email, primary=True, verified=True)
    own_redis.kill()
    visitor = Client()

    assert visitor.post("/accounts/login/", {"login": alice.email, "password": "wrong password"}).status_code == 200
    response = visitor.post("/accounts/login/", {"login": alice.email, "password": PASSWORD})

    assert (response.status_code, response["Location"]) == (302, "/dashboard/")
    assert "Welcome, Alice<" in _page(visitor, "/dashboard/")
