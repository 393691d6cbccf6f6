"""While PostgreSQL cannot be reached, pages and the API answer 503 with Retry-After and a short
page or a JSON error, and Sentry is not sent an error for each refused request."""

from __future__ import annotations

import sqlite3
import time
import urllib.request

import psycopg
import pytest
from django.db import OperationalError

from bench.sentry_stub import SentryStub
from core.unavailable import database_unavailable
from members import tokens
from tests.monitoring.servers import Visitor, free_port, start_portal


def _wrapped(cause: BaseException) -> OperationalError:
    error = OperationalError(str(cause))
    error.__cause__ = cause
    return error


def test_connection_failures_count_as_the_database_being_unavailable():
    assert database_unavailable(_wrapped(psycopg.OperationalError("connection refused")))
    assert database_unavailable(_wrapped(psycopg.errors.AdminShutdown()))
    assert database_unavailable(_wrapped(psycopg.errors.CannotConnectNow()))


def test_real_errors_are_still_errors():
    assert not database_unavailable(_wrapped(psycopg.errors.DeadlockDetected()))
    assert not database_unavailable(_wrapped(psycopg.errors.QueryCanceled()))
    assert not database_unavailable(_wrapped(sqlite3.OperationalError("database is locked")))
    assert not database_unavailable(ValueError("not a database error"))


def test_with_postgres_unreachable_pages_and_the_api_answer_503_and_sentry_gets_no_errors(tmp_path):
    unreachable = f"postgres://portal@127.0.0.1:{free_port()}/portal"
    with SentryStub() as sentry:
        portal = start_portal(tmp_path, unreachable, workers=1, SENTRY_DSN=sentry.dsn, SENTRY_TRACES_SAMPLE_RATE="1.0")
        try:
            visitor = Visitor()
            visitor.cookies["__Host-sessionid"] = "a" * 32  # a session to load: the database is asked
            status, headers, body = visitor.get(portal, "/dashboard/")
            assert status == 503
            assert headers["Retry-After"] == "30"
            assert "cannot reach its database" in body
            assert "Traceback" not in body

            request = urllib.request.Request(portal.url + "/api/v1/me")  # noqa: S310 (loopback)
            request.add_header("X-Forwarded-Proto", "https")
            request.add_header("Authorization", f"Bearer {tokens.generate().plain}")
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=20)  # noqa: S310
            assert refused.value.code == 503
            assert refused.value.headers["Retry-After"] == "30"
            assert b'"code": "service_unavailable"' in refused.value.read()

            # The control: the SDK does reach the stub, with the trace of a request that needs no
            # database (the API's schema).
            assert Visitor().get(portal, "/api/v1/openapi.json")[0] == 200
            deadline = time.monotonic() + 10
            while "transaction" not in sentry.items and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            portal.stop()
    assert sentry.items.get("transaction", 0) >= 1
    assert sentry.items.get("event", 0) == 0
