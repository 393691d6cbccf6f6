"""When the latency histogram starts a request's clock: a trusted proxy's X-Request-Start, read in
each format proxies send and ignored when it is not sane, else gunicorn's hand-over to a thread.
That the wait for a thread is counted under a real gunicorn is in test_gunicorn.py."""

from __future__ import annotations

import time

import pytest
from prometheus_client import REGISTRY

from monitoring.gunicorn_worker import REQUEST_START
from monitoring.request_start import MAX_AGE, MAX_SKEW, parse_request_start, request_started_at

NOW = 1_764_740_000.25  # 2025-12-03, in seconds since the epoch
PROXY = "10.0.0.7"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("t=1764739999.5", 1_764_739_999.5),  # nginx: t=${msec}, seconds with milliseconds
        ("t=1764739999", 1_764_739_999.0),  # seconds
        ("1764739999500", 1_764_739_999.5),  # Heroku: bare milliseconds
        ("t=1764739999500", 1_764_739_999.5),  # milliseconds
        ("t=1764739999500000", 1_764_739_999.5),  # Apache t=%t: microseconds
        (" t=1764739999.5 ", 1_764_739_999.5),
    ],
)
def test_each_format_of_x_request_start_is_read(header, expected):
    assert parse_request_start(header, now=NOW) == pytest.approx(expected)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "t=",
        "soon",
        "t=-1764739999.5",
        "t=inf",
        "t=nan",
        "t=1e9",
        "t=1764739999.5, t=1764739998.5",  # sent twice (a client's and a proxy's)
        "t=0x6930",
        f"t={NOW - MAX_AGE - 1:.3f}",  # older than a request can be
        f"t={NOW + MAX_SKEW + 1:.3f}",  # from the future, beyond a clock's skew
        f"t={(NOW - 3600) * 1000:.0f}",  # an hour old, in milliseconds
        "t=42",  # neither seconds, milliseconds nor microseconds of today
    ],
)
def test_a_value_that_is_not_a_sane_request_start_is_ignored(header):
    assert parse_request_start(header, now=NOW) is None


def test_a_proxys_start_is_used_when_the_proxy_is_trusted(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    environ = {"REMOTE_ADDR": PROXY, "HTTP_X_REQUEST_START": "t=1764739999.5", REQUEST_START: NOW - 0.1}
    assert request_started_at(environ, now=NOW) == pytest.approx(1_764_739_999.5)


def test_a_clients_own_x_request_start_is_ignored(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    environ = {"REMOTE_ADDR": "203.0.113.9", "HTTP_X_REQUEST_START": "t=1764739990.5", REQUEST_START: NOW - 0.1}
    assert request_started_at(environ, now=NOW) == pytest.approx(NOW - 0.1)
    settings.TRUSTED_PROXIES = []
    assert request_started_at({**environ, "REMOTE_ADDR": PROXY}, now=NOW) == pytest.approx(NOW - 0.1)


def test_a_proxy_clock_ahead_of_ours_cannot_start_the_request_after_gunicorn_had_it(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    environ = {"REMOTE_ADDR": PROXY, "HTTP_X_REQUEST_START": f"t={NOW + 1:.3f}", REQUEST_START: NOW - 0.1}
    assert request_started_at(environ, now=NOW) == pytest.approx(NOW - 0.1)
    del environ[REQUEST_START]
    assert request_started_at(environ, now=NOW) == pytest.approx(NOW)


def test_without_gunicorn_or_a_proxy_the_middleware_starts_the_clock(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert request_started_at({"REMOTE_ADDR": "127.0.0.1"}, now=NOW) is None
    assert request_started_at({"REMOTE_ADDR": PROXY, "HTTP_X_REQUEST_START": "garbled"}, now=NOW) is None


def _latency() -> tuple[float, float]:
    labels = {"member_tier": "anonymous"}
    return (
        REGISTRY.get_sample_value("portal_request_duration_seconds_count", labels) or 0.0,
        REGISTRY.get_sample_value("portal_request_duration_seconds_sum", labels) or 0.0,
    )


def test_the_histogram_counts_the_time_since_the_proxy_received_the_request(client, db, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    count, total = _latency()
    proxy_received = f"t={time.time() - 5:.3f}"  # the request waited 5 s before it reached Django
    assert client.get("/api/health", HTTP_X_REQUEST_START=proxy_received, REMOTE_ADDR=PROXY).status_code == 200
    after_count, after_total = _latency()
    assert after_count - count == 1
    assert 5 <= after_total - total < 10


def test_the_histogram_ignores_a_start_sent_by_a_client(client, db, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    count, total = _latency()
    claimed = f"t={time.time() - 5:.3f}"
    assert client.get("/api/health", HTTP_X_REQUEST_START=claimed, REMOTE_ADDR="203.0.113.9").status_code == 200
    after_count, after_total = _latency()
    assert after_count - count == 1
    assert after_total - total < 5
