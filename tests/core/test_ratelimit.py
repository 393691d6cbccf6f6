"""API rate limits (core/ratelimit.py) and the client address they count by."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.test import Client, RequestFactory

from core.proxies import client_ip
from core.ratelimit import Limit, address_subject, headers_for, hit
from members.models import TokenScope
from members.services import create_api_token, create_member

START = dt.datetime(2026, 11, 28, 12, 0, 0, tzinfo=dt.UTC)  # on a window boundary


@pytest.mark.parametrize(
    ("trusted", "remote", "forwarded", "expected"),
    [
        ([], "203.0.113.7", "198.51.100.1", "203.0.113.7"),  # no proxy configured: header ignored
        (["10.0.0.0/8"], "203.0.113.7", "198.51.100.1", "203.0.113.7"),  # not from our proxy: ignored
        (["10.0.0.0/8"], "10.0.0.2", "198.51.100.1", "198.51.100.1"),
        (["10.0.0.0/8"], "10.0.0.2", "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # forged left part
        (["10.0.0.0/8"], "10.0.0.2", "198.51.100.1, 10.0.0.9", "198.51.100.1"),  # two proxies
        (["10.0.0.0/8"], "10.0.0.2", "198.51.100.1, not-an-ip", "10.0.0.2"),  # garbled: stop
        (["10.0.0.0/8"], "10.0.0.2", "", "10.0.0.2"),
        (["10.0.0.2", "2001:db8::/32"], "2001:db8::1", "198.51.100.1", "198.51.100.1"),
    ],
)
def test_the_client_address_comes_from_our_own_proxies_only(settings, trusted, remote, forwarded, expected):
    settings.TRUSTED_PROXIES = trusted
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected


def test_a_limit_refuses_the_request_over_its_quota_until_the_window_slides():
    limit = Limit("test", 5, 60)
    with time_machine.travel(START, tick=False) as clock:
        decisions = [hit(limit, "alice") for _ in range(6)]
        assert [d.allowed for d in decisions if d] == [True] * 5 + [False]
        refused = decisions[-1]
        assert refused is not None
        assert refused.remaining == 0
        assert refused.headers() == {
            "RateLimit-Policy": '"test";q=5;w=60',
            "RateLimit": '"test";r=0;t=60',
            "Retry-After": "60",
        }
        # Another subject has its own count.
        assert hit(limit, "bob").allowed  # type: ignore[union-attr]

        # Half-way into the next window, half of the previous window's 6 still count: 3 + 1 used.
        clock.move_to(START + dt.timedelta(seconds=90))
        decision = hit(limit, "alice")
        assert decision is not None and decision.allowed and decision.remaining == 1
        decision = hit(limit, "alice")
        assert decision is not None and decision.allowed and decision.remaining == 0
        decision = hit(limit, "alice")
        assert decision is not None and not decision.allowed
        assert 0 < decision.retry_after <= 30

        # Two full windows later, the slate is clean.
        clock.move_to(START + dt.timedelta(seconds=180))
        decision = hit(limit, "alice")
        assert decision is not None and decision.allowed and decision.remaining == 4


def test_headers_list_every_limit_that_applied():
    with time_machine.travel(START, tick=False):
        ip = hit(Limit("ip", 300, 60), "203.0.113.7")
        token = hit(Limit("token", 2, 60), "17")
    assert ip is not None and token is not None
    assert headers_for([ip, token]) == {
        "RateLimit-Policy": '"ip";q=300;w=60, "token";q=2;w=60',
        "RateLimit": '"ip";r=299;t=60, "token";r=1;t=60',
    }


def test_the_api_limits_each_client_address(client, db, settings):
    settings.API_RATE_LIMIT_PER_IP = 3
    with time_machine.travel(START, tick=False):
        answers = [client.get("/api/v1/me", REMOTE_ADDR="203.0.113.7") for _ in range(4)]
        other = client.get("/api/v1/me", REMOTE_ADDR="203.0.113.8")
    assert [a.status_code for a in answers[:3]] != [429] * 3
    assert answers[2]["RateLimit"] == '"ip";r=0;t=60'
    refused = answers[3]
    assert refused.status_code == 429
    assert refused.json() == {
        "code": "rate_limited",
        "message": "Too many requests: try again in 60 seconds.",
        "details": {"limit": "ip", "retry_after": 60},
    }
    assert refused["Retry-After"] == "60"
    assert refused["RateLimit-Policy"] == '"ip";q=3;w=60'
    assert other.status_code != 429


def test_the_api_counts_an_ipv6_client_by_its_64_network(client, db, settings):
    settings.API_RATE_LIMIT_PER_IP = 3
    with time_machine.travel(START, tick=False):
        answers = [client.get("/api/v1/me", REMOTE_ADDR=f"2001:db8:7:8::{n + 1:x}") for n in range(4)]
        next_network = client.get("/api/v1/me", REMOTE_ADDR="2001:db8:7:9::1")
    assert [a.status_code == 429 for a in answers] == [False, False, False, True]
    assert next_network.status_code != 429


@pytest.mark.parametrize(
    ("prefix", "address", "subject"),
    [
        (64, "203.0.113.7", "203.0.113.7"),
        (64, "2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        (64, "2001:DB8:1:2::1", "2001:db8:1:2::/64"),
        (48, "2001:db8:1:2::1", "2001:db8:1::/48"),
        (128, "2001:db8::1", "2001:db8::1/128"),
        (64, "::ffff:203.0.113.7", "203.0.113.7"),  # an IPv4 client, written IPv4-mapped
        (64, None, "unknown"),
    ],
)
def test_per_address_limits_count_ipv6_by_its_network(settings, prefix, address, subject):
    settings.RATE_LIMIT_IPV6_PREFIX = prefix
    assert address_subject(address) == subject


def test_pages_outside_the_api_are_not_counted(client, db, settings):
    settings.API_RATE_LIMIT_PER_IP = 1
    for _ in range(3):
        response = client.get("/health/live")
        assert response.status_code == 200
        assert "RateLimit" not in response


@pytest.mark.redis
def test_processes_share_one_count():
    """Counted in Redis: requests counted by another process use up this process's quota."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    limit = Limit("shared", 4, 3600)
    code = (
        "import django; django.setup()\n"
        "from core.ratelimit import Limit, hit\n"
        "for _ in range(3): hit(Limit('shared', 4, 3600), 'carol')\n"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings"},
        check=True,
        timeout=60,
    )
    first = hit(limit, "carol")
    second = hit(limit, "carol")
    assert first is not None and first.allowed and first.remaining == 0
    assert second is not None and not second.allowed


# --- Guessing tokens ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_address_that_keeps_failing_token_checks_is_refused_even_with_a_valid_token(settings):
    settings.API_AUTH_FAILURES_PER_IP = 3
    member = create_member(email="dora@example.com", password=None)
    _, valid = create_api_token(member=member, name="script", scopes=[TokenScope.READ], expires_at=None)
    guesser = Client(REMOTE_ADDR="203.0.113.66")
    with time_machine.travel(START, tick=False) as clock:
        answers = [
            guesser.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer mpt_guess{n:040d}").status_code for n in range(3)
        ]
        assert answers == [401, 401, 401]
        refused = guesser.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {valid}")
        assert refused.status_code == 429
        assert refused.json()["code"] == "rate_limited"
        assert refused.json()["details"]["limit"] == "auth_failures"
        assert refused["Retry-After"] == "300"
        # Other addresses are not affected.
        assert (
            Client(REMOTE_ADDR="198.51.100.5").get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {valid}").status_code
            == 200
        )
        # Once the failures have slid out of the five-minute window, the address is let in again.
        clock.move_to(START + dt.timedelta(minutes=10))
        assert guesser.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {valid}").status_code == 200
