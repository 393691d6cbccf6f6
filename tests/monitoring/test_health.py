"""Health endpoints: what each answers with everything up, with Redis down, with the database
down, and with a dependency that accepts a connection and never answers.

Redis down is the real thing: the cache pointed at a closed port, with production's options
(`portal.settings._redis_cache`), so it needs no Redis server. The database down is the real
thing too: the checks' connections (each check runs in a thread of its own, so on a connection
of its own) go to a database that cannot be opened (SQLite) or to a closed port (PostgreSQL).
A hung dependency is a loopback socket that accepts connections and never says a word.

The checks run on their own threads' connections, which `django_assert_num_queries` (watching
this thread's) does not see: the pinned counts are the request's own queries; the checks' are
pinned where they are run directly, below.
"""

from __future__ import annotations

import datetime
import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from unittest.mock import patch

import pytest
from django.core.cache import cache
from django.db import connection, connections
from django.db.migrations.recorder import MigrationRecorder
from django.test import Client, override_settings
from health_check.exceptions import ServiceWarning

from members.models import Member
from monitoring import checks, health
from monitoring.traffic import recent_requests
from portal.settings import _redis_cache
from subscriptions import reads

TOKEN = "health-token-for-tests"
BEARER = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
AS_JSON = {"HTTP_ACCEPT": "application/json"}
ALL_CHECKS = ["database", "cache", "disk", "memory", "migrations", "stripe", "background_jobs"]
CLOSED_PORT = 1  # nothing listens on 127.0.0.1:1; a connection is refused at once


@pytest.fixture(autouse=True)
def _fresh_health(settings) -> Iterator[None]:
    settings.HEALTH_TOKEN = TOKEN
    health.reset()
    recent_requests.clear()
    yield
    health.reset()


@pytest.fixture
def staff_client(client: Client, carol: Member) -> Client:
    client.force_login(carol)
    return client


class SilentServer:
    """A loopback TCP server that accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                peer, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.accepted.append(peer)

    def close(self) -> None:
        self.listener.close()
        for peer in self.accepted:
            peer.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


@pytest.fixture
def redis_down(settings) -> None:
    settings.CACHES = {"default": _redis_cache(f"redis://127.0.0.1:{CLOSED_PORT}/0")}


@pytest.fixture
def database_at(db: None) -> Iterator[Any]:
    """Send every new connection (each check's thread makes its own) somewhere else; this
    thread's connection keeps its own settings and stays where it is (the tests make no query
    of their own meanwhile: on PostgreSQL it would take a connection from the moved pool).

    Needs `db`, so that the database is moved back before the test's transaction is rolled
    back."""
    holder: dict[str, Any] = (
        type(connections["default"])._connection_pools  # type: ignore[attr-defined]
        if connection.vendor == "postgresql"
        else {}
    )
    original_pool = holder.get("default")
    with pytest.MonkeyPatch.context() as patch:

        def move(*, port: int = CLOSED_PORT) -> None:
            moved = dict(connections.settings["default"])
            if connection.vendor == "sqlite":
                moved["NAME"] = "/nonexistent/health/db.sqlite3"
            else:
                moved.update(HOST="127.0.0.1", PORT=str(port))
                # Django keeps one pool per alias for the process: the moved database gets its own.
                patch.delitem(holder, "default", raising=False)
            patch.setitem(connections.settings, "default", moved)

        yield move
        moved_pool = holder.get("default")
    if moved_pool is not None and moved_pool is not original_pool:
        moved_pool.close(timeout=0)


def _json(response) -> dict[str, Any]:
    assert response["Content-Type"].startswith("application/json")
    return json.loads(response.content)


def _stripe_status(**overrides: Any) -> reads.StripeSyncStatus:
    values: dict[str, Any] = {
        "configured": True,
        "last_event_processed_at": datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5),
        "failed_events": 0,
        "drifted": 0,
        "reconciled_at": datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1),
    }
    return reads.StripeSyncStatus(**{**values, **overrides})


# --- Everything up ------------------------------------------------------------------------------


def test_liveness_touches_no_dependency(client, django_assert_num_queries, db):
    with django_assert_num_queries(0):
        response = client.get("/health/live")
    assert response.status_code == 200
    assert response.content == b"ok\n"
    assert "no-cache" in response["Cache-Control"]


def _wsgi(method: str, path: str) -> tuple[str, bytes]:
    """A request to the WSGI application that gunicorn serves (portal/wsgi.py)."""
    # Importing it runs django.setup() again, which would add the logging filters a second time;
    # Django is set up already here.
    # It refuses production settings without mail (portal/checks.py): these have mail set up.
    with patch("django.setup"), override_settings(EMAIL_URL_SET=True):
        from portal.wsgi import application

    environ: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": io.BytesIO()}
    environ.update({"SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "HTTP_HOST": "127.0.0.1"})
    environ["wsgi.url_scheme"] = "http"
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], object]:
        statuses.append(status)
        return lambda data: None

    body = b"".join(application(environ, start_response))
    return statuses[0], body


def test_under_gunicorn_liveness_is_answered_before_django(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert _wsgi("GET", "/health/live") == ("200 OK", b"ok\n")
        assert _wsgi("HEAD", "/health/live") == ("200 OK", b"")
    # Other methods go through Django, whose view refuses them.
    assert _wsgi("OPTIONS", "/health/live")[0].startswith("405")


def test_readiness_with_everything_up(client, django_assert_num_queries, db):
    with django_assert_num_queries(0):
        response = client.get("/health/ready")

    assert response.status_code == 200
    assert _json(response) == {"status": "ok", "checks": {"database": "ok", "cache": "ok"}}
    assert "no-cache" in response["Cache-Control"]


def test_public_health_with_everything_up_says_states_only(client, django_assert_num_queries, db):
    with django_assert_num_queries(0):
        response = client.get("/api/health")

    assert response.status_code == 200
    body = _json(response)
    assert body == {"status": "ok", "checks": dict.fromkeys(ALL_CHECKS, "ok")}
    # No internals: no host, version, timing or message of any kind.
    text = response.content.decode()
    for internal in ("latency", "ms", "sqlite", "postgres", "redis", "version", "127.0.0.1", socket.gethostname()):
        assert internal not in text


def test_status_page_with_everything_up(staff_client, django_assert_num_queries, db):
    with django_assert_num_queries(1):  # the staff member (the session is in the cache)
        response = staff_client.get("/health/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert 'Status: <span class="state state-ok">Ok</span>' in page
    for title in ("Database", "Cache (Redis)", "Disk", "Memory", "Migrations", "Stripe webhooks"):
        assert f"{title}" in page
    assert page.count("Never") == len(ALL_CHECKS)  # never seen failing
    assert "Accept" in response["Vary"]


def test_status_json_with_everything_up(client, django_assert_num_queries, db):
    with django_assert_num_queries(0):  # a bearer token never touches the session
        response = client.get("/health/", **AS_JSON, **BEARER)

    assert response.status_code == 200
    body = _json(response)
    assert body["status"] == "ok"
    assert list(body["checks"]) == ALL_CHECKS
    for name, check in body["checks"].items():
        assert check["state"] == "ok", (name, check)
        assert check["last_failure"] is None
        assert 0 <= check["latency_ms"] < 5000
    assert body["checks"]["database"]["critical"] is True
    assert body["checks"]["database"]["measurements"]["latency_ms"] > 0
    assert body["checks"]["migrations"]["summary"] == "all applied"
    assert body["checks"]["stripe"]["summary"] == "webhooks are off (STRIPE_WEBHOOK_SECRET is not set)"


def test_advanced_health_with_everything_up(staff_client, django_assert_num_queries, db):
    for _ in range(3):
        assert staff_client.get("/").status_code == 302  # carol goes on to the dashboard
    staff_client.get("/no-such-page/")

    with django_assert_num_queries(0):  # the staff member's snapshot is cached (members/authentication.py)
        response = staff_client.get("/api/health/advanced")

    assert response.status_code == 200
    body = _json(response)
    assert body["status"] == "ok"
    assert body["database"]["state"] == "ok"
    assert body["database"]["latency_ms"] > 0
    assert body["cache"]["state"] == "ok"
    assert set(body["cache"]["tiers"]) == {"short", "medium", "long", "very_long"}
    for tier in body["cache"]["tiers"].values():
        assert {"hits", "misses", "sets", "invalidations", "hit_rate"} <= set(tier)
        assert 0.0 <= tier["hit_rate"] <= 1.0
    assert body["memory"]["process_rss_bytes"] > 10 * 2**20
    assert 0 < body["memory"]["used_percent"] <= 100
    requests = body["requests"]
    assert requests["scope"] == "process"
    assert requests["requests"] == 4  # the health endpoints themselves are not counted
    assert requests["errors"] == 0
    assert requests["error_rate"] == 0.0
    assert requests["requests_per_second"] > 0
    assert requests["p95_ms"] > 0


def test_advanced_health_counts_server_errors(client, db, monkeypatch):
    from monitoring.traffic import RecentRequestsMiddleware

    def fail(request):
        raise RuntimeError("boom")

    middleware = RecentRequestsMiddleware(fail)
    ok = RecentRequestsMiddleware(lambda request: type("R", (), {"status_code": 200})())
    request = type("Request", (), {"path": "/dashboard/"})()
    for _ in range(3):
        ok(request)
    with pytest.raises(RuntimeError):
        middleware(request)

    body = _json(client.get("/api/health/advanced", **BEARER))
    assert body["requests"]["requests"] == 4
    assert body["requests"]["errors"] == 1
    assert body["requests"]["error_rate"] == 0.25


# --- Who may see the details ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/health/", "/api/health/advanced"])
def test_details_refuse_an_anonymous_tool(client, db, path):
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong"}, {"HTTP_AUTHORIZATION": "Basic Zm9vOmJhcg=="}):
        response = client.get(path, **AS_JSON, **headers)
        assert response.status_code == 401
        assert _json(response)["code"] == "not_authenticated"
        assert response["WWW-Authenticate"] == 'Bearer realm="health"'
    assert client.get(f"{path}?token={TOKEN}", **AS_JSON).status_code == 401  # never in the URL


def test_status_page_sends_an_anonymous_visitor_to_log_in(client, db):
    response = client.get("/health/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/health/"


@pytest.mark.parametrize(("path", "headers"), [("/health/", {}), ("/health/", AS_JSON), ("/api/health/advanced", {})])
def test_details_are_refused_to_a_member(client, alice, path, headers):
    client.force_login(alice)
    assert client.get(path, **headers).status_code == 403


def test_a_wrong_token_is_refused_even_with_a_staff_session(staff_client):
    assert staff_client.get("/health/", HTTP_AUTHORIZATION="Bearer wrong", **AS_JSON).status_code == 401


def test_no_token_configured_opens_nothing(client, settings, db):
    settings.HEALTH_TOKEN = ""
    assert client.get("/health/", HTTP_AUTHORIZATION="Bearer ", **AS_JSON).status_code == 401
    assert client.get("/api/health/advanced", HTTP_AUTHORIZATION="Bearer").status_code == 401


@pytest.mark.parametrize("path", ["/health/live", "/health/ready", "/health/", "/api/health", "/api/health/advanced"])
def test_health_endpoints_answer_get_only(client, db, path):
    assert client.post(path, **BEARER).status_code == 405


# --- Redis down ----------------------------------------------------------------------------------


def test_readiness_with_redis_down_is_degraded_and_stays_in_service(client, redis_down, db):
    response = client.get("/health/ready")

    assert response.status_code == 200
    assert _json(response) == {"status": "degraded", "checks": {"database": "ok", "cache": "down"}}


def test_public_health_with_redis_down(client, redis_down, db):
    response = client.get("/api/health")

    assert response.status_code == 200
    body = _json(response)
    assert body["status"] == "degraded"
    assert body["checks"]["cache"] == "down"
    assert body["checks"]["database"] == "ok"
    assert "ConnectionError" not in response.content.decode()


def test_status_page_with_redis_down_says_when_it_last_failed(staff_client, redis_down, db):
    response = staff_client.get("/health/")

    assert response.status_code == 200
    page = response.content.decode()
    assert 'Status: <span class="state state-degraded">Degraded</span>' in page
    assert "Redis does not answer (ConnectionError)" in page
    assert page.count("Never") == len(ALL_CHECKS) - 1  # the cache was seen failing, just now

    body = _json(staff_client.get("/health/", **AS_JSON))
    cache_check = body["checks"]["cache"]
    assert cache_check["state"] == "down"
    assert cache_check["critical"] is False
    assert cache_check["last_failure"]["state"] == "down"
    seen = datetime.datetime.fromisoformat(cache_check["last_failure"]["at"])
    assert abs((datetime.datetime.now(datetime.UTC) - seen).total_seconds()) < 30


def test_advanced_health_with_redis_down_leaves_out_the_cache_stats(client, redis_down, db):
    started = time.perf_counter()
    response = client.get("/api/health/advanced", **BEARER)

    assert time.perf_counter() - started < 2
    assert response.status_code == 200
    body = _json(response)
    assert body["status"] == "degraded"
    assert body["cache"]["state"] == "down"
    assert body["cache"]["tiers"] is None
    assert body["database"]["state"] == "ok"


@pytest.mark.redis
def test_a_failure_seen_while_redis_was_down_is_shared_once_it_is_back(client, settings, db):
    redis_settings = settings.CACHES
    settings.CACHES = {"default": _redis_cache(f"redis://127.0.0.1:{CLOSED_PORT}/0")}
    assert _json(client.get("/health/", **AS_JSON, **BEARER))["checks"]["cache"]["state"] == "down"

    settings.CACHES = redis_settings
    body = _json(client.get("/health/", **AS_JSON, **BEARER))
    assert body["checks"]["cache"]["state"] == "ok"
    seen = body["checks"]["cache"]["last_failure"]
    assert seen["state"] == "down"

    # Another process (or this one restarted) knows it from Redis.
    health.failures.clear()
    body = _json(client.get("/health/", **AS_JSON, **BEARER))
    assert body["checks"]["cache"]["last_failure"] == seen
    assert cache.get("health:last-failure:cache") is not None


# --- Database down -------------------------------------------------------------------------------


@pytest.fixture
def short_database_timeout(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(checks.Database, "timeout", datetime.timedelta(seconds=1))
    monkeypatch.setattr(checks.Migrations, "timeout", datetime.timedelta(seconds=1))
    monkeypatch.setattr(checks.Stripe, "timeout", datetime.timedelta(seconds=1))
    return 1.0


def test_readiness_with_the_database_down_takes_the_portal_out_of_service(
    client, database_at, short_database_timeout, db
):
    database_at()
    response = client.get("/health/ready")

    assert response.status_code == 503
    body = _json(response)
    assert body["status"] == "down"
    assert body["checks"]["database"] == "down"
    # The cache still works: "degraded" only if slow (over 50 ms) on a busy machine, never down.
    assert body["checks"]["cache"] in {"ok", "degraded"}
    assert set(body["checks"]) == {"database", "cache"}


def test_public_health_with_the_database_down(client, database_at, short_database_timeout, db):
    database_at()
    response = client.get("/api/health")

    assert response.status_code == 503
    body = _json(response)
    assert body["status"] == "down"
    assert body["checks"]["database"] == "down"
    # As above: the cache may read degraded on a busy machine, never down.
    assert body["checks"]["cache"] in {"ok", "degraded"}
    assert "Error" not in response.content.decode()


def test_status_and_advanced_with_the_database_down(client, database_at, short_database_timeout, db):
    database_at()
    response = client.get("/health/", **AS_JSON, **BEARER)

    assert response.status_code == 503
    body = _json(response)
    assert body["status"] == "down"
    database = body["checks"]["database"]
    assert database["state"] == "down"
    # SQLite refuses at once; PostgreSQL's pool keeps trying until the check gives up.
    assert database["summary"] in {"cannot query the database (OperationalError)", "no answer within 1 s"}
    assert database["last_failure"]["state"] == "down"
    # The cache still works: "degraded" only if slow (over 50 ms) on a busy machine, never down.
    assert body["checks"]["cache"]["state"] in {"ok", "degraded"}

    advanced = client.get("/api/health/advanced", **BEARER)
    assert advanced.status_code == 503
    assert _json(advanced)["database"] == {"state": "down", "latency_ms": None, "vendor": None}


def test_liveness_with_the_database_and_redis_down(client, database_at, redis_down, db):
    database_at()
    assert client.get("/health/live").status_code == 200


# --- A hung dependency ---------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_hung_database_is_bounded_by_the_check_timeout(
    client, database_at, silent_server, short_database_timeout, db
):
    database_at(port=silent_server.port)
    started = time.perf_counter()
    response = client.get("/health/ready")
    elapsed = time.perf_counter() - started

    assert response.status_code == 503
    assert _json(response) == {"status": "down", "checks": {"database": "down", "cache": "ok"}}
    assert silent_server.accepted  # it really was connected to, and said nothing
    assert short_database_timeout <= elapsed < short_database_timeout + 1.0

    for path, headers in (("/health/", {**AS_JSON, **BEARER}), ("/api/health", {}), ("/api/health/advanced", BEARER)):
        started = time.perf_counter()
        response = client.get(path, **headers)
        assert time.perf_counter() - started < short_database_timeout + 1.0, path
        assert response.status_code == 503, path
        assert _json(response)["status"] == "down"
    body = _json(client.get("/health/", **AS_JSON, **BEARER))
    # Still hung (the check's own 1 s), or given up by the pool (DATABASE_POOL_TIMEOUT, 2 s),
    # depending on how long the requests above took: never longer.
    assert body["checks"]["database"]["summary"] in {
        "no answer within 1 s",
        "cannot query the database (OperationalError)",
    }
    # The cache still works: "degraded" only if slow (over 50 ms) on a busy machine, never down.
    assert body["checks"]["cache"]["state"] in {"ok", "degraded"}
    assert _json(client.get("/api/health"))["checks"]["database"] == "down"


def test_a_hung_redis_is_bounded_by_its_socket_timeout(client, settings, silent_server, db):
    settings.CACHES = {"default": _redis_cache(f"redis://127.0.0.1:{silent_server.port}/0")}
    started = time.perf_counter()
    response = client.get("/health/ready")
    elapsed = time.perf_counter() - started

    assert response.status_code == 200
    assert _json(response) == {"status": "degraded", "checks": {"database": "ok", "cache": "down"}}
    assert elapsed < checks.Cache.timeout.total_seconds()


@pytest.fixture
def hung_stripe(monkeypatch: pytest.MonkeyPatch, silent_server: SilentServer) -> SilentServer:
    """Stripe's status read waiting on a server that never answers, without a timeout of its own."""

    def wait_forever() -> reads.StripeSyncStatus:
        with socket.create_connection(("127.0.0.1", silent_server.port)) as conversation:
            conversation.recv(1)  # returns only when the server closes the connection
        return _stripe_status()

    monkeypatch.setattr(reads, "stripe_sync_status", wait_forever)
    monkeypatch.setattr(checks.Stripe, "timeout", datetime.timedelta(seconds=0.5))
    return silent_server


def test_a_hung_check_is_bounded_by_its_timeout_and_is_not_started_twice(client, hung_stripe, db):
    for _ in range(3):
        started = time.perf_counter()
        response = client.get("/health/", **AS_JSON, **BEARER)
        elapsed = time.perf_counter() - started

        assert response.status_code == 200  # Stripe does not decide whether members are served
        body = _json(response)
        assert body["status"] == "degraded"
        assert body["checks"]["stripe"]["state"] == "down"
        assert body["checks"]["stripe"]["summary"] == "no answer within 0.5 s"
        assert body["checks"]["database"]["state"] == "ok"
        assert elapsed < 2.0
    # Three probes, one hung thread: the later probes waited on the first one's.
    assert len(hung_stripe.accepted) == 1
    assert [thread.name for thread in threading.enumerate()].count("health-check-stripe") == 1


# --- The checks themselves -----------------------------------------------------------------------


def test_the_database_check_runs_one_query(django_assert_num_queries, db):
    check = checks.Database()
    with django_assert_num_queries(1):
        check.run()
    assert isinstance(check.measurements["latency_ms"], float)
    assert check.measurements["latency_ms"] > 0


def test_a_slow_database_is_degraded(monkeypatch, client, db):
    monkeypatch.setattr(checks.Database, "slow_ms", 0.0)
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert _json(response) == {"status": "degraded", "checks": {"database": "degraded", "cache": "ok"}}


def test_an_unapplied_migration_is_degraded(db, django_assert_num_queries):
    latest = MigrationRecorder.Migration.objects.filter(app="members").order_by("-name").first()
    assert latest is not None
    latest.delete()  # as if the deploy had not run `migrate` (rolled back with the test)
    check = checks.Migrations()
    with pytest.raises(ServiceWarning, match=rf"1 not applied: members\.{latest.name}"):
        check.run()
    assert check.measurements == {"unapplied": 1}


def test_the_migrations_check_costs_two_queries(django_assert_num_queries, db):
    with django_assert_num_queries(2):  # does the table exist; the applied migrations
        checks.Migrations().run()


@pytest.mark.parametrize(
    ("status", "problem"),
    [
        (_stripe_status(failed_events=2), "2 webhook event(s) failed"),
        (_stripe_status(last_event_processed_at=None), "no webhook event processed yet"),
        (
            _stripe_status(last_event_processed_at=datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=3)),
            "no webhook event processed for 3 days",
        ),
        (_stripe_status(drifted=4), "4 subscription(s) differ from Stripe"),
        (
            _stripe_status(reconciled_at=datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=5)),
            "last reconciled 5 days ago",
        ),
    ],
)
def test_stripe_problems_are_degraded(monkeypatch, client, db, status, problem):
    monkeypatch.setattr(reads, "stripe_sync_status", lambda: status)
    body = _json(client.get("/health/", **AS_JSON, **BEARER))
    assert body["status"] == "degraded"
    assert body["checks"]["stripe"]["state"] == "degraded"
    assert body["checks"]["stripe"]["summary"] == problem


def test_stripe_in_step_is_ok(monkeypatch, client, db):
    monkeypatch.setattr(reads, "stripe_sync_status", lambda: _stripe_status())
    body = _json(client.get("/health/", **AS_JSON, **BEARER))
    assert body["checks"]["stripe"]["state"] == "ok"
    assert body["checks"]["stripe"]["summary"] == "last event 5 min ago, no drift"
    assert body["checks"]["stripe"]["measurements"]["failed_events"] == 0


def test_the_stripe_check_reads_the_real_webhook_log(settings, db, django_assert_num_queries):
    settings.STRIPE_WEBHOOK_SECRETS = ["whsec_test"]
    check = checks.Stripe()
    with pytest.raises(ServiceWarning, match="no webhook event processed yet"):
        check.run()
    assert check.measurements["failed_events"] == 0
    assert check.measurements["drifted"] is None


@pytest.mark.parametrize(
    ("kind", "attribute"), [(checks.Disk, "degraded_percent"), (checks.Memory, "degraded_percent")]
)
def test_disk_and_memory_past_their_threshold_are_degraded(monkeypatch, kind, attribute):
    monkeypatch.setattr(kind, attribute, 0.0)
    with pytest.raises(ServiceWarning, match="% "):
        kind().run()


@pytest.mark.parametrize(("kind", "attribute"), [(checks.Disk, "down_percent"), (checks.Memory, "down_percent")])
def test_disk_and_memory_nearly_full_are_down_but_not_critical(monkeypatch, client, db, kind, attribute):
    monkeypatch.setattr(kind, attribute, 0.0)
    response = client.get("/health/", **AS_JSON, **BEARER)
    assert response.status_code == 200
    body = _json(response)
    assert body["status"] == "degraded"
    assert body["checks"][kind.name]["state"] == "down"


def test_the_public_report_is_shared_for_a_few_seconds(client, monkeypatch, db):
    assert _json(client.get("/api/health"))["checks"]["stripe"] == "ok"
    monkeypatch.setattr(reads, "stripe_sync_status", lambda: _stripe_status(failed_events=1))
    assert _json(client.get("/api/health"))["checks"]["stripe"] == "ok"  # the same report

    monkeypatch.setattr(health, "PUBLIC_MAX_AGE", 0.0)
    assert _json(client.get("/api/health"))["checks"]["stripe"] == "degraded"
