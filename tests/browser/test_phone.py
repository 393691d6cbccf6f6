"""The member pages on a phone-sized screen: nothing runs off the side of the page, and each
still passes axe-core."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from allauth.account.models import EmailAddress
from playwright.sync_api import Page, ViewportSize, expect

from members.models import Member
from members.services import create_api_token
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser

PHONE: ViewportSize = {"width": 375, "height": 740}


def test_member_pages_fit_a_phone_screen(page: Page, checkpoint: Callable[[str], None], alice: Member) -> None:
    EmailAddress.objects.create(user=alice, email=alice.email, verified=True, primary=True)
    # A token, so the widest table (the tokens list) has a row to lay out.
    create_api_token(member=alice, name="phone script", scopes=[], expires_at=None)
    page.set_viewport_size(PHONE)
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(alice.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    expect(page).to_have_url(re.compile(r"/dashboard/$"))

    for path in ["/dashboard/", "/profile/", "/tokens/", "/subscription/", "/activity/", "/accounts/email/"]:
        page.goto(path)
        step = "phone-" + (path.strip("/").replace("/", "-") or "landing")
        checkpoint(step)
        # Wide tables scroll inside their own box; the page itself never scrolls sideways.
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is {overflow}px wider than a {PHONE['width']}px screen"
