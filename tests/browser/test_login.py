"""Logging in, in a real browser: a wrong password gets the same answer as an unknown address,
and a member who turned on an authenticator app is asked for its code at the next login."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct
import time
from collections.abc import Callable

import pytest
from allauth.account.models import EmailAddress
from playwright.sync_api import Page, expect

from members.models import Member
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser

GENERIC_ERROR = "The email address and/or password you specified are not correct."


@pytest.fixture
def verified_alice(alice: Member) -> Member:
    EmailAddress.objects.create(user=alice, email=alice.email, verified=True, primary=True)
    return alice


def log_in(page: Page, email: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign In").click()


def totp_code(secret: str) -> str:
    """The code an authenticator app shows now (RFC 6238: SHA-1, 30 s, 6 digits), written
    out here rather than taken from allauth, so the test checks the standard, not itself."""
    if 30 - time.time() % 30 < 2:
        time.sleep(2)  # too close to the next period: the server could already be past it
    key = base64.b32decode(secret + "=" * (-len(secret) % 8), casefold=True)
    digest = hmac.new(key, struct.pack(">Q", int(time.time() // 30)), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def test_a_wrong_password_and_an_unknown_address_get_the_same_generic_error(
    page: Page, checkpoint: Callable[[str], None], verified_alice: Member
) -> None:
    log_in(page, verified_alice.email, "not the right passphrase")
    expect(page.get_by_text(GENERIC_ERROR)).to_be_visible()
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))
    checkpoint("wrong-password")

    log_in(page, "nobody@example.com", "not the right passphrase")
    expect(page.get_by_text(GENERIC_ERROR)).to_be_visible()
    checkpoint("unknown-address")


def test_after_turning_on_an_authenticator_app_login_asks_for_its_code(
    page: Page, checkpoint: Callable[[str], None], verified_alice: Member
) -> None:
    log_in(page, verified_alice.email, PASSWORD)
    expect(page).to_have_url(re.compile(r"/dashboard/$"))

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Account").click()
    page.get_by_role("navigation", name="Account").get_by_role("link", name="Two-factor authentication").click()
    checkpoint("two-factor")
    page.get_by_role("link", name="Activate").click()
    # Changing the second factor asks for the password again, even right after logging in.
    expect(page.get_by_role("heading", name="Confirm Access")).to_be_visible()
    checkpoint("confirm-access")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Confirm").click()
    checkpoint("activate-authenticator")
    secret = page.get_by_label("Authenticator secret").input_value()
    page.get_by_label("Authenticator code").fill(totp_code(secret))
    page.get_by_role("button", name="Activate").click()
    # Turning it on hands out recovery codes, shown once.
    expect(page.get_by_role("heading", name="Recovery Codes")).to_be_visible()
    checkpoint("recovery-codes")

    page.get_by_role("button", name="Log out").click()
    log_in(page, verified_alice.email, PASSWORD)
    expect(page).to_have_url(re.compile(r"/accounts/2fa/authenticate/$"))
    checkpoint("asks-for-code")
    page.get_by_label("Code").fill("000000" if totp_code(secret) != "000000" else "111111")
    page.get_by_role("button", name="Sign In").click()
    expect(page.get_by_text("Incorrect code.")).to_be_visible()
    checkpoint("wrong-code")

    page.get_by_label("Code").fill(totp_code(secret))
    page.get_by_role("button", name="Sign In").click()
    expect(page).to_have_url(re.compile(r"/dashboard/$"))
