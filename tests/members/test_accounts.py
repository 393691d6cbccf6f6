"""Accounts through django-allauth: sign-up with verification, login, the password policy,
answers that do not reveal whether an account exists, rate limits, and the activity recorded
for each account event."""

from __future__ import annotations

import re

import pytest
import time_machine
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value, yield_hotp_counters_from_time
from django.core import mail
from django.test import Client

from members.models import Action, ActivityLog, Member
from tests.conftest import PASSWORD

NEW_PASSWORD = "a long and unusual passphrase"


def log_in(client: Client, email: str, password: str = PASSWORD):
    return client.post("/accounts/login/", {"login": email, "password": password})


def actions_of(member: Member) -> list[str]:
    return list(ActivityLog.objects.for_member(member).order_by("id").values_list("action", flat=True))


def verify_email_address(member: Member) -> None:
    from allauth.account.models import EmailAddress

    EmailAddress.objects.update_or_create(user=member, email=member.email, defaults={"verified": True, "primary": True})


@pytest.fixture
def verified_alice(alice: Member) -> Member:
    verify_email_address(alice)
    return alice


def test_sign_up_sends_a_verification_mail_and_logs_in_only_after_it(client, db):
    response = client.post(
        "/accounts/signup/", {"email": "Dora@Example.com", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    dora = Member.objects.with_email("dora@example.com").get()
    assert dora.email == "dora@example.com"
    assert dora.profile.display_name == ""  # the adapter gave her a profile
    assert dora.password.startswith("argon2")

    # Not verified yet: logging in leads to the verification page, not the dashboard.
    response = log_in(client, "dora@example.com", NEW_PASSWORD)
    assert response["Location"] == "/accounts/confirm-email/"
    assert client.get("/dashboard/").status_code == 302

    link = re.search(r"http://testserver(/accounts/confirm-email/\S+/)", str(mail.outbox[-1].body))
    assert link is not None
    assert client.get(link.group(1)).status_code == 200
    response = client.post(link.group(1))
    assert response["Location"] == "/dashboard/"
    assert client.get("/dashboard/").status_code == 200
    assert Action.SIGNUP in actions_of(dora)
    assert Action.LOGIN in actions_of(dora)


@pytest.mark.parametrize(
    ("password", "error"),
    [
        ("short pass", "at least 12 characters"),
        ("password1234", "too common"),
        ("12345678901234", "entirely numeric"),
    ],
)
def test_weak_passwords_are_refused_with_the_reason(client, db, password, error):
    response = client.post(
        "/accounts/signup/", {"email": "erin@example.com", "password1": password, "password2": password}
    )
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not Member.objects.with_email("erin@example.com").exists()


def test_a_long_passphrase_is_accepted(client, db):
    passphrase = "my cat likes to sleep on the warm laptop keyboard"
    response = client.post(
        "/accounts/signup/", {"email": "finn@example.com", "password1": passphrase, "password2": passphrase}
    )
    assert response.status_code == 302
    assert Member.objects.with_email("finn@example.com").exists()


def test_signing_up_with_a_taken_email_answers_like_a_new_one(client, alice):
    taken = client.post(
        "/accounts/signup/", {"email": "ALICE@example.com", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    fresh = client.post(
        "/accounts/signup/", {"email": "gina@example.com", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    assert taken.status_code == fresh.status_code == 302
    assert taken["Location"] == fresh["Location"]
    assert Member.objects.with_email("alice@example.com").count() == 1
    # The owner of the address hears about it by mail; the visitor learns nothing.
    assert any(message.to == ["alice@example.com"] for message in mail.outbox)


def test_a_wrong_password_and_an_unknown_account_get_the_same_answer(client, verified_alice):
    wrong = log_in(client, "alice@example.com", "not the password at all")
    unknown = log_in(client, "nobody@example.com", "not the password at all")
    assert wrong.status_code == unknown.status_code == 200
    error = "The email address and/or password you specified are not correct."
    assert error in wrong.content.decode()
    assert error in unknown.content.decode()
    assert actions_of(verified_alice) == [Action.LOGIN_FAILED]


def test_password_reset_answers_the_same_for_known_and_unknown_addresses(client, verified_alice):
    known = client.post("/accounts/password/reset/", {"email": "alice@example.com"})
    unknown = client.post("/accounts/password/reset/", {"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 302
    assert known["Location"] == unknown["Location"]


def test_repeated_failed_logins_for_one_account_are_rate_limited(client, verified_alice):
    for _ in range(5):
        assert log_in(client, "alice@example.com", "wrong password, again").status_code == 200
    # Even the right password is refused while the limit holds.
    response = log_in(client, "alice@example.com")
    assert "Too many failed login attempts. Try again later." in response.content.decode()
    assert client.get("/dashboard/").status_code == 302


def test_failed_logins_from_one_address_are_limited_across_accounts(client, verified_alice):
    """Ten wrong passwords a minute from one address, whatever the accounts: then even a right
    password from there waits. The admin logs in through the same form (tests/portal/test_admin_access.py)."""
    for n in range(10):
        assert log_in(client, f"guess{n}@example.com", "not the password").status_code == 200
    response = log_in(client, "alice@example.com")
    assert "Too many failed login attempts. Try again later." in response.content.decode()
    assert client.get("/dashboard/").status_code == 302
    # Another address is not held back.
    elsewhere = Client(REMOTE_ADDR="198.51.100.23")
    assert log_in(elsewhere, "alice@example.com")["Location"] == "/dashboard/"


def test_password_reset_mails_are_limited_per_address_and_per_account(client, verified_alice):
    for _ in range(5):
        assert client.post("/accounts/password/reset/", {"email": "alice@example.com"}).status_code == 302
    assert len(mail.outbox) == 5
    refused = client.post("/accounts/password/reset/", {"email": "ALICE@example.com"})
    assert refused.status_code == 429
    assert len(mail.outbox) == 5  # no sixth mail to the account this minute, from any address
    from_elsewhere = Client(REMOTE_ADDR="198.51.100.23").post(
        "/accounts/password/reset/", {"email": "alice@example.com"}
    )
    assert from_elsewhere.status_code == 429
    assert len(mail.outbox) == 5


def test_login_logout_and_password_change_are_recorded_with_ip_and_user_agent(verified_alice):
    client = Client(HTTP_USER_AGENT="Firefox/140", REMOTE_ADDR="203.0.113.9")
    assert log_in(client, "alice@example.com")["Location"] == "/dashboard/"
    response = client.post(
        "/accounts/password/change/",
        {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert response.status_code == 302
    client.post("/accounts/logout/")
    assert actions_of(verified_alice) == [Action.LOGIN, Action.PASSWORD_CHANGED, Action.LOGOUT]
    entry = ActivityLog.objects.for_member(verified_alice).recent().first()
    assert entry is not None
    assert entry.ip == "203.0.113.9"
    assert entry.user_agent == "Firefox/140"


def test_turning_two_factor_on_and_off_is_recorded_and_login_then_asks_for_a_code(
    client, verified_alice, django_capture_on_commit_callbacks
):
    with time_machine.travel("2026-11-28 12:00:00 +0000", tick=False) as clock:
        log_in(client, "alice@example.com")
        # Changing the second factor asks for the password again, even right after login.
        assert client.get("/accounts/2fa/totp/activate/")["Location"].startswith("/accounts/reauthenticate/")
        client.post("/accounts/reauthenticate/", {"password": PASSWORD})
        client.get("/accounts/2fa/totp/activate/")
        secret = client.session["mfa.totp.secret"]

        def code() -> str:
            return format_hotp_value(hotp_value(secret, next(yield_hotp_counters_from_time())))

        # allauth announces the new authenticator once the transaction commits.
        with django_capture_on_commit_callbacks(execute=True):
            assert client.post("/accounts/2fa/totp/activate/", {"code": code()}).status_code == 302
        client.post("/accounts/logout/")

        clock.shift(60)  # a fresh code: one already used is not accepted twice
        assert log_in(client, "alice@example.com")["Location"] == "/accounts/2fa/authenticate/"
        assert client.get("/dashboard/").status_code == 302  # no second factor yet, no dashboard
        assert client.post("/accounts/2fa/authenticate/", {"code": "000000"}).status_code == 200
        assert client.post("/accounts/2fa/authenticate/", {"code": code()})["Location"] == "/dashboard/"

        client.post("/accounts/reauthenticate/", {"password": PASSWORD})
        assert client.post("/accounts/2fa/totp/deactivate/").status_code == 302
    actions = actions_of(verified_alice)
    assert actions.index(Action.MFA_ENABLED) < actions.index(Action.MFA_DISABLED)


def test_changing_the_email_address_is_recorded(client, verified_alice):
    from allauth.account.models import EmailAddress

    log_in(client, "alice@example.com")
    client.post("/accounts/email/", {"action_add": "", "email": "alice.new@example.com"})
    new_address = EmailAddress.objects.get(email="alice.new@example.com")
    link = re.search(r"http://testserver(/accounts/confirm-email/\S+/)", str(mail.outbox[-1].body))
    assert link is not None
    client.post(link.group(1))
    new_address.refresh_from_db()
    assert new_address.verified
    verified_alice.refresh_from_db()
    assert verified_alice.email == "alice.new@example.com"
    assert Action.EMAIL_CHANGED in actions_of(verified_alice)
