"""The second factor at login (members/mfa.py): wrong codes are limited per login and per
account, recorded in the member's activity, and a TOTP code works once, with Redis or without."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import time_machine
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import (
    TOTP,
    format_hotp_value,
    generate_totp_secret,
    hotp_value,
    yield_hotp_counters_from_time,
)
from django.test import Client
from django.test.utils import override_settings
from django_redis import get_redis_connection

from core import redis_breaker
from members.mfa import MFA_CODES_PER_ACCOUNT
from members.models import Action, ActivityLog, Member
from portal.settings import _redis_cache
from tests.conftest import PASSWORD
from tests.monitoring.servers import Portal, Visitor, manage, migrate, scratch_database, start_portal
from tests.portal.test_cache_outage import RedisServer

AUTHENTICATE = "/accounts/2fa/authenticate/"
INCORRECT = "Incorrect code."
REFUSED = re.compile(r"Too many wrong codes: log in again in \d+ minutes?\.")


def with_totp(member: Member) -> str:
    """`member`, verified, with a TOTP authenticator; returns its secret."""
    EmailAddress.objects.update_or_create(user=member, email=member.email, defaults={"verified": True, "primary": True})
    secret = generate_totp_secret()
    TOTP.activate(member, secret)
    return secret


def code(secret: str) -> str:
    return format_hotp_value(hotp_value(secret, next(yield_hotp_counters_from_time())))


def wrong_codes(secret: str) -> Iterator[str]:
    """Six-digit codes that are not the right one now (nor one step either side)."""
    now = next(yield_hotp_counters_from_time())
    right = {format_hotp_value(hotp_value(secret, step)) for step in (now - 1, now, now + 1)}
    return (f"{n:06d}" for n in range(100_000, 1_000_000, 7919) if f"{n:06d}" not in right)


def log_in(client: Client, member: Member, next_url: str = "") -> Any:
    response = client.post(f"/accounts/login/{next_url}", {"login": member.email, "password": PASSWORD})
    assert response["Location"] == AUTHENTICATE
    return response


def enter(client: Client, member: Member, entered: str) -> Any:
    """Enter a code at the two-factor step, as someone who knows the password would: logging
    in with it again whenever the portal sends them back to the login page."""
    response = client.post(AUTHENTICATE, {"code": entered})
    if response.status_code == 302 and response["Location"].startswith("/accounts/login/"):
        log_in(client, member)
        response = client.post(AUTHENTICATE, {"code": entered})
    return response


def wrong_code_entries(member: Member) -> int:
    return ActivityLog.objects.for_member(member).filter(action=Action.MFA_CODE_WRONG).count()


def test_three_wrong_codes_send_the_member_back_to_the_password(client: Client, alice: Member) -> None:
    secret = with_totp(alice)
    guesses = wrong_codes(secret)
    log_in(client, alice)

    answers = [client.post(AUTHENTICATE, {"code": next(guesses)}) for _ in range(3)]
    after = client.post(AUTHENTICATE, {"code": code(secret)})  # even the right code: log in first

    assert [a.status_code for a in answers] == [200, 200, 200]
    assert "Too many wrong codes: log in again." in answers[2].content.decode()
    assert (after.status_code, after["Location"]) == (302, "/accounts/login/")
    assert client.get("/dashboard/").status_code == 302
    log_in(client, alice)
    assert client.post(AUTHENTICATE, {"code": code(secret)})["Location"] == "/dashboard/"


def test_wrong_codes_lock_the_account_until_the_window_passes_and_are_recorded(client: Client, alice: Member) -> None:
    secret = with_totp(alice)
    with time_machine.travel("2026-12-01 12:00:10 +0000", tick=False) as clock:
        guesses = wrong_codes(secret)
        log_in(client, alice)
        pages = [enter(client, alice, next(guesses)).content.decode() for _ in range(30)]

        checked = [page for page in pages if INCORRECT in page]
        assert len(checked) == MFA_CODES_PER_ACCOUNT.quota  # five codes checked, not thirty
        assert all(INCORRECT in page for page in pages[:5])
        assert all(REFUSED.search(page) and INCORRECT not in page for page in pages[5:])
        assert wrong_code_entries(alice) == 5
        assert ActivityLog.objects.for_member(alice).recent()[0].get_action_display() == "Wrong two-factor code"

        right = enter(client, alice, code(secret))
        assert right.status_code == 200
        assert REFUSED.search(right.content.decode())
        assert client.get("/dashboard/").status_code == 302

        clock.shift(2 * MFA_CODES_PER_ACCOUNT.window)  # the sliding window has passed
        log_in(client, alice)
        assert client.post(AUTHENTICATE, {"code": code(secret)})["Location"] == "/dashboard/"
    assert wrong_code_entries(alice) == 5  # refused codes were never checked, so not recorded


def test_recovery_codes_count_against_the_same_limit(client: Client, alice: Member) -> None:
    secret = with_totp(alice)
    recovery = RecoveryCodes.activate(alice).get_unused_codes()
    with time_machine.travel("2026-12-01 12:00:10 +0000", tick=False):
        log_in(client, alice)
        # Two wrong recovery codes and three wrong TOTP codes: the account's five.
        for guess in ["11111111", "22222222", *list(wrong_codes(secret))[:3]]:
            assert INCORRECT in enter(client, alice, guess).content.decode()

        refused = enter(client, alice, recovery[0])

        assert REFUSED.search(refused.content.decode())
        assert client.get("/dashboard/").status_code == 302
        assert wrong_code_entries(alice) == 5
        unused = RecoveryCodes(Authenticator.objects.get(user=alice, type=Authenticator.Type.RECOVERY_CODES))
        assert unused.get_unused_codes() == recovery  # the right code was not even checked


def test_a_right_code_does_not_use_up_the_accounts_limit(client: Client, alice: Member) -> None:
    secret = with_totp(alice)
    recovery = RecoveryCodes.activate(alice).get_unused_codes()
    with time_machine.travel("2026-12-01 12:00:10 +0000", tick=False):
        log_in(client, alice)
        assert client.post(AUTHENTICATE, {"code": recovery[0]})["Location"] == "/dashboard/"
        client.post("/accounts/logout/")
        log_in(client, alice)
        for guess in list(wrong_codes(secret))[:4]:
            assert INCORRECT in enter(client, alice, guess).content.decode()

        # Four wrong codes and one right one in five minutes: the right one is still let in.
        assert enter(client, alice, recovery[1])["Location"] == "/dashboard/"


# --- TOTP without the cache ---------------------------------------------------------------------


@pytest.fixture
def own_redis(settings: object) -> Iterator[RedisServer]:
    """The cache on a redis-server of this test's own, which it may stop (tests/portal/test_cache_outage.py)."""
    server = RedisServer()
    try:
        server.start()
        settings.CACHES = {"default": _redis_cache(server.url)}  # type: ignore[attr-defined]
        assert get_redis_connection("default").connection_pool.connection_kwargs["port"] == server.port
        yield server
    finally:
        server.kill()
        redis_breaker.reset()


def log_in_with_code(client: Client, member: Member, entered: str, next_url: str = "") -> Any:
    log_in(client, member, next_url)
    return client.post(AUTHENTICATE, {"code": entered})


@pytest.mark.redis
def test_totp_logins_work_while_redis_is_down_and_a_code_still_works_once(
    own_redis: RedisServer, client: Client, alice: Member
) -> None:
    secret = with_totp(alice)
    own_redis.kill()
    with time_machine.travel("2026-12-01 12:00:10 +0000", tick=False) as clock:
        first = log_in_with_code(client, alice, code(secret))
        assert first["Location"] == "/dashboard/"
        assert client.get("/dashboard/").status_code == 200
        client.post("/accounts/logout/")

        again = log_in_with_code(client, alice, code(secret))
        assert again.status_code == 200
        assert INCORRECT in again.content.decode()

        clock.shift(30)  # the next time step: a new code
        assert client.post(AUTHENTICATE, {"code": code(secret)})["Location"] == "/dashboard/"


@pytest.mark.redis
@override_settings(ADMIN_REQUIRE_MFA=True)
def test_staff_reach_the_admin_with_their_code_while_redis_is_down(
    own_redis: RedisServer, client: Client, carol: Member
) -> None:
    secret = with_totp(carol)
    own_redis.kill()

    response = log_in_with_code(client, carol, code(secret), next_url="?next=/admin/")

    assert response["Location"] == "/admin/"
    assert client.get("/admin/members/member/").status_code == 200


@pytest.mark.redis
def test_a_code_used_once_is_refused_after_redis_restarts_empty(
    own_redis: RedisServer, client: Client, alice: Member
) -> None:
    secret = with_totp(alice)
    with time_machine.travel("2026-12-01 12:00:10 +0000", tick=False):
        assert log_in_with_code(client, alice, code(secret))["Location"] == "/dashboard/"
        client.post("/accounts/logout/")
        own_redis.kill()
        own_redis.start()  # same port, nothing remembered
        redis_breaker.reset()

        replay = log_in_with_code(Client(), alice, code(secret))

        assert replay.status_code == 200
        assert INCORRECT in replay.content.decode()


# --- Across gunicorn workers ------------------------------------------------------------------------

EMAIL = "ada@example.com"
SERVER_PASSWORD = "a-long-password-for-the-mfa-limits"
SETUP = f"""
from allauth.account.models import EmailAddress
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from members.services import create_member
member = create_member(email={EMAIL!r}, password={SERVER_PASSWORD!r}, display_name="Ada")
EmailAddress.objects.create(user=member, email=member.email, primary=True, verified=True)
secret = generate_totp_secret()
TOTP.activate(member, secret)
print(secret)
"""
COUNT_WRONG = f"""
from members.models import Action, ActivityLog
print(ActivityLog.objects.filter(member__email={EMAIL!r}, action=Action.MFA_CODE_WRONG).count())
"""


@pytest.mark.postgres
@pytest.mark.redis
def test_wrong_codes_are_counted_across_two_gunicorn_workers(tmp_path: Path) -> None:
    """Two workers (one gunicorn each, so that requests alternate between them for certain)."""
    redis_url = os.environ["REDIS_URL"]
    name = urlsplit(os.environ["DATABASE_URL"]).path.lstrip("/") + "_mfa_limits"
    with scratch_database(name) as database:
        migrate(database)
        manage(database, "collectstatic", "--no-input", "-v", "0")  # as `make serve` does
        secret = manage(database, "shell", "-c", SETUP).split()[-1]
        workers = [start_portal(tmp_path / "a", database, workers=1, REDIS_URL=redis_url)]
        try:
            workers.append(start_portal(tmp_path / "b", database, workers=1, REDIS_URL=redis_url))
            visitor = Visitor()
            turn = iter(range(1_000))

            def post(path: str, data: dict[str, str]) -> tuple[Portal, int, dict[str, str], str]:
                portal = workers[next(turn) % 2]
                return portal, *visitor.post(portal, path, data)

            def log_in_on_server() -> None:
                _, status, headers, _ = post("/accounts/login/", {"login": EMAIL, "password": SERVER_PASSWORD})
                assert (status, headers.get("Location")) == (302, AUTHENTICATE)

            def enter_on_server(entered: str) -> tuple[Portal, str]:
                portal, status, headers, page = post(AUTHENTICATE, {"code": entered})
                if status == 302 and headers["Location"].startswith("/accounts/login/"):
                    log_in_on_server()
                    portal, status, headers, page = post(AUTHENTICATE, {"code": entered})
                assert status == 200, (status, headers)
                return portal, page

            visitor.get(workers[0], "/accounts/login/")  # the CSRF cookie
            log_in_on_server()
            guesses = wrong_codes(secret)
            answers = [enter_on_server(next(guesses)) for _ in range(30)]
            checked = [portal for portal, page in answers if INCORRECT in page]
            right = enter_on_server(code(secret))[1]
        finally:
            for portal in workers:
                portal.stop()
        recorded = int(manage(database, "shell", "-c", COUNT_WRONG).split()[-1])

    # Each worker alone would have checked all its fifteen; together they checked five.
    assert len(checked) <= MFA_CODES_PER_ACCOUNT.quota + 1, len(checked)  # +1: a window turning over
    assert {portal.port for portal in checked} == {portal.port for portal in workers}
    assert all(REFUSED.search(page) for _, page in answers[len(checked) :])
    assert REFUSED.search(right)
    assert recorded == len(checked)
