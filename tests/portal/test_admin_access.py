"""Who reaches /admin/, and how: staff only, logged in through the accounts flow (with its rate
limits), and with a second factor in this session whenever ADMIN_REQUIRE_MFA is on."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
import time_machine
from allauth.account.models import EmailAddress
from allauth.mfa.totp.internal.auth import (
    TOTP,
    format_hotp_value,
    generate_totp_secret,
    hotp_value,
    yield_hotp_counters_from_time,
)
from django.core.management import call_command
from django.test import Client
from django.test.utils import override_settings

from members.models import Member
from portal.demo_data import ADMIN_EMAIL, DEMO_PASSWORD
from tests.conftest import PASSWORD
from tests.portal.test_settings import run_python

MEMBERS = "/admin/members/member/"


def verified(member: Member) -> Member:
    EmailAddress.objects.update_or_create(user=member, email=member.email, defaults={"verified": True, "primary": True})
    return member


def with_totp(member: Member) -> str:
    """Give `member` a TOTP authenticator; returns its secret."""
    secret = generate_totp_secret()
    TOTP.activate(member, secret)
    return secret


def code(secret: str) -> str:
    return format_hotp_value(hotp_value(secret, next(yield_hotp_counters_from_time())))


# --- Login goes through the accounts flow --------------------------------------------------------


def test_the_admin_login_page_sends_visitors_to_the_accounts_login(client: Client, db: None) -> None:
    first = client.get("/admin/")
    login = client.get(first["Location"])

    assert first["Location"] == "/admin/login/?next=/admin/"
    assert login.status_code == 302
    assert login["Location"] == "/accounts/login/?next=%2Fadmin%2F"


def test_the_admin_login_form_accepts_no_password(client: Client, carol: Member) -> None:
    # Posting credentials to Django's own admin login form would skip the accounts flow's rate
    # limits and second factor: it logs nobody in.
    response = client.post("/admin/login/?next=/admin/", {"username": carol.email, "password": PASSWORD})

    assert response["Location"] == "/accounts/login/?next=%2Fadmin%2F"
    assert client.get("/admin/").status_code == 302


def test_an_outside_next_address_is_not_followed(client: Client, carol: Member) -> None:
    client.force_login(carol)

    response = client.get("/admin/login/", {"next": "https://evil.example/"})

    assert response["Location"] == "/admin/"


@override_settings(ADMIN_REQUIRE_MFA=False)
def test_staff_log_in_through_the_accounts_flow_and_come_back_to_the_admin(client: Client, carol: Member) -> None:
    verified(carol)

    response = client.post("/accounts/login/?next=/admin/", {"login": carol.email, "password": PASSWORD})

    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_failed_admin_logins_are_rate_limited_like_every_login(client: Client, carol: Member) -> None:
    verified(carol)
    for _ in range(5):
        client.post("/accounts/login/?next=/admin/", {"login": carol.email, "password": "not the password"})

    response = client.post("/accounts/login/?next=/admin/", {"login": carol.email, "password": PASSWORD})

    assert "Too many failed login attempts" in response.content.decode()
    assert client.get("/admin/").status_code == 302


# --- Only staff ----------------------------------------------------------------------------------


def test_members_without_staff_status_are_refused_not_sent_round_in_circles(client: Client, alice: Member) -> None:
    client.force_login(alice)

    page = client.get(MEMBERS)
    login = client.get(page["Location"])

    assert page["Location"].startswith("/admin/login/")
    assert login.status_code == 403


def test_deactivated_staff_are_out(client: Client, carol: Member) -> None:
    client.force_login(carol)
    Member.objects.filter(pk=carol.pk).update(status="suspended")

    assert client.get(MEMBERS)["Location"].startswith("/admin/login/")


# --- The second factor ---------------------------------------------------------------------------


@override_settings(ADMIN_REQUIRE_MFA=True)
def test_staff_without_a_second_factor_are_sent_to_set_one_up(client: Client, carol: Member) -> None:
    client.force_login(carol)

    page = client.get(MEMBERS)
    login = client.get(page["Location"], follow=True)

    assert page.status_code == 302
    assert login.redirect_chain[0] == ("/accounts/2fa/", 302)
    assert "Set up two-factor authentication to use the admin." in login.content.decode()


@override_settings(ADMIN_REQUIRE_MFA=True)
def test_staff_with_a_second_factor_must_have_used_it_in_this_session(client: Client, carol: Member) -> None:
    secret = with_totp(carol)
    client.force_login(carol)  # a session without the second factor (a login from before TOTP was set up)

    page = client.get(MEMBERS)
    login = client.get(page["Location"])
    client.post(login["Location"], {"code": code(secret)})

    assert page.status_code == 302
    assert login["Location"] == "/accounts/2fa/reauthenticate/?next=%2Fadmin%2Fmembers%2Fmember%2F"
    assert client.get(MEMBERS).status_code == 200


@override_settings(ADMIN_REQUIRE_MFA=True)
def test_staff_who_log_in_with_their_code_go_straight_in(client: Client, carol: Member) -> None:
    verified(carol)
    secret = with_totp(carol)

    with time_machine.travel("2026-11-28 12:00:00 +0000", tick=False):
        client.post("/accounts/login/?next=/admin/", {"login": carol.email, "password": PASSWORD})
        response = client.post("/accounts/2fa/authenticate/", {"code": code(secret)})

        assert response["Location"] == "/admin/"
        assert client.get("/admin/").status_code == 200
        assert client.get(MEMBERS).status_code == 200


@override_settings(ADMIN_REQUIRE_MFA=False)
def test_with_the_setting_off_staff_enter_without_a_second_factor(client: Client, carol: Member) -> None:
    client.force_login(carol)

    assert client.get(MEMBERS).status_code == 200


def admin_require_mfa(**env: str) -> bool:
    """ADMIN_REQUIRE_MFA as a fresh process reads it from this environment (empty: the default)."""
    env.setdefault("ADMIN_REQUIRE_MFA", "")
    result = run_python("import django; from django.conf import settings; print(settings.ADMIN_REQUIRE_MFA)", **env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip() == "True"


PRODUCTION = {"DEBUG": "false", "SECRET_KEY": "k" * 50, "ALLOWED_HOSTS": "portal.example"}


@pytest.mark.parametrize(
    ("env", "required"),
    [
        (PRODUCTION, True),
        ({**PRODUCTION, "ADMIN_REQUIRE_MFA": "false"}, False),
        ({"DEBUG": "true"}, False),  # the local demo, `make run`
        ({"DEBUG": "true", "ADMIN_REQUIRE_MFA": "on"}, True),
    ],
)
def test_the_second_factor_is_required_by_default_only_with_debug_off(env: dict[str, str], required: bool) -> None:
    assert admin_require_mfa(**env) is required


@override_settings(ADMIN_REQUIRE_MFA=False)
def test_the_demo_admin_logs_into_the_admin_through_the_accounts_login(client: Client, db: None, settings: Any) -> None:
    settings.DEBUG = True  # seed_demo refuses to run without it (pytest-django turns it off)
    call_command("seed_demo", stdout=StringIO(), stderr=StringIO())

    response = client.post("/accounts/login/?next=/admin/", {"login": ADMIN_EMAIL, "password": DEMO_PASSWORD})

    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
