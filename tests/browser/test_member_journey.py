"""A new member's first visit, end to end, in a real browser: sign up, verify the address from
the mail, land on the dashboard, create an API token and see it once, revoke it, edit the
profile, page through the activity log and log out. Every page is screenshotted and checked
with axe-core on the way (see `checkpoint` in conftest.py)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.core.mail import EmailMessage
from playwright.sync_api import Locator, Page, expect

from members.models import Action, Member
from members.services import record_activity

pytestmark = pytest.mark.browser

EMAIL = "dora@example.com"
PASSWORD = "a long and unusual passphrase"
TOKEN = re.compile(r"mpt_[0-9A-Za-z]{36}")
# More than two pages of 50, so the walk goes past the first "older" link.
SEEDED_ACTIVITY = 120


def field(page: Page, label: str) -> Locator:
    """The form field labelled exactly `label` (Django adds a colon to its labels)."""
    return page.get_by_label(re.compile(rf"^{re.escape(label)}:?$"))


def test_a_new_member_signs_up_and_uses_every_page(
    page: Page, checkpoint: Callable[[str], None], mailoutbox: list[EmailMessage], live_server: Any
) -> None:
    main_nav = page.get_by_role("navigation", name="Main")

    # Landing page, then sign-up.
    page.goto("/")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    checkpoint("landing")
    main_nav.get_by_role("link", name="Sign up").click()
    expect(page).to_have_url(re.compile(r"/accounts/signup/$"))
    checkpoint("signup")
    field(page, "Email").fill(EMAIL)
    field(page, "Password").fill(PASSWORD)
    field(page, "Password (again)").fill(PASSWORD)
    page.get_by_role("button", name="Sign Up").click()
    expect(page).to_have_url(re.compile(r"/accounts/confirm-email/$"))
    checkpoint("verification-sent")

    # The verification mail, and its link.
    assert [message.to for message in mailoutbox] == [[EMAIL]]
    assert mailoutbox[0].subject.startswith("[Member Portal] ")
    body = str(mailoutbox[0].body)
    found = re.search(r"https?://\S+/accounts/confirm-email/\S+/", body)
    assert found is not None, body
    link = found.group(0)
    assert link.startswith(live_server.url)
    page.goto(link)
    checkpoint("confirm-email")
    page.get_by_role("button", name="Confirm").click()

    # Confirming in the browser that signed up logs the member in.
    expect(page).to_have_url(re.compile(r"/dashboard/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Welcome, {EMAIL}")
    checkpoint("dashboard")

    # Older history, written the way every page writes it, so the activity log has pages.
    dora = Member.objects.get(email=EMAIL)
    for n in range(SEEDED_ACTIVITY):
        record_activity(member=dora, action=Action.LOGIN, ip="192.0.2.7", user_agent=f"seeded browser {n:03d}")

    # An API token: the plain text appears once, on the page that created it.
    main_nav.get_by_role("link", name="API tokens").click()
    expect(page).to_have_url(re.compile(r"/tokens/$"))
    expect(page.get_by_text("You have no tokens yet.")).to_be_visible()
    checkpoint("tokens")
    field(page, "Name").fill("backup script")
    page.get_by_label("Read", exact=True).check()
    page.get_by_label("30 days").check()
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_role("alert")).to_contain_text("won't be shown again")
    token = field(page, "Token").input_value()
    assert TOKEN.fullmatch(token), token
    shown_as = f"{token[:8]}…{token[-4:]}"
    expect(page.get_by_role("row", name="backup script")).to_contain_text(shown_as)
    checkpoint("token-created")

    # Coming back shows only its first and last characters.
    page.goto("/tokens/")
    row = page.get_by_role("row", name="backup script")
    expect(row).to_contain_text(shown_as)
    expect(row).to_contain_text("Live")
    assert token not in page.content()
    expect(field(page, "Token")).to_have_count(0)
    checkpoint("tokens-after-reload")

    # Revoking asks first.
    row.get_by_role("link", name="Revoke backup script").click()
    expect(page).to_have_url(re.compile(r"/tokens/\d+/revoke/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Revoke “backup script”?")
    checkpoint("revoke-confirm")
    page.get_by_role("button", name="Revoke token").click()
    expect(page).to_have_url(re.compile(r"/tokens/$"))
    expect(page.get_by_role("status")).to_contain_text("Revoked “backup script”")
    expect(row).to_contain_text("Revoked")
    expect(row.get_by_role("link", name="Revoke backup script")).to_have_count(0)
    checkpoint("token-revoked")

    # Profile: the new values are saved and shown again.
    main_nav.get_by_role("link", name="Profile").click()
    expect(page).to_have_url(re.compile(r"/profile/$"))
    checkpoint("profile")
    field(page, "Display name").fill("Dora Explorer")
    field(page, "Time zone").select_option("Europe/Paris")
    page.get_by_role("button", name="Save profile").click()
    expect(page.get_by_role("status")).to_contain_text("Your profile is saved.")
    expect(field(page, "Display name")).to_have_value("Dora Explorer")
    expect(field(page, "Time zone")).to_have_value("Europe/Paris")
    checkpoint("profile-saved")
    main_nav.get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Dora Explorer")
    expect(page.get_by_text("Time zone: Europe/Paris")).to_be_visible()
    checkpoint("dashboard-after-edits")

    main_nav.get_by_role("link", name="Subscription").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Subscription")
    checkpoint("subscription")

    # Activity: newest first, 50 to a page, older pages behind a link.
    main_nav.get_by_role("link", name="Activity").click()
    expect(page).to_have_url(re.compile(r"/activity/$"))
    expect(page.get_by_text("Times are in Europe/Paris")).to_be_visible()
    rows = page.get_by_role("table").locator("tbody tr")
    expect(rows).to_have_count(50)
    expect(rows.nth(0)).to_contain_text("Updated profile")
    expect(rows.nth(1)).to_contain_text("Revoked an API token")
    expect(rows.nth(2)).to_contain_text("Created an API token")
    checkpoint("activity")
    pages = [rows.all_inner_texts()]
    actions = rows.locator("td:first-child").all_inner_texts()
    older = page.get_by_role("navigation", name="Activity pages").get_by_role("link", name="Older")
    while older.count():
        previous = page.url
        older.click()
        expect(page).not_to_have_url(previous)
        page.wait_for_load_state()
        pages.append(rows.all_inner_texts())
        actions += rows.locator("td:first-child").all_inner_texts()
        checkpoint(f"activity-page-{len(pages)}")
    # Every entry exactly once across the pages, and nothing the member did not do.
    assert Counter(actions) == {
        "Updated profile": 1,
        "Revoked an API token": 1,
        "Created an API token": 1,
        "Logged in": SEEDED_ACTIVITY + 1,
        "Signed up": 1,
    }
    assert [len(texts) for texts in pages] == [50, 50, 25]
    rows_seen = [text for texts in pages for text in texts]
    assert len(set(rows_seen)) == len(rows_seen)
    assert actions[-2:] == ["Logged in", "Signed up"]

    # Logging out leads back to the public pages.
    page.get_by_role("button", name="Log out").click()
    expect(main_nav.get_by_role("link", name="Log in")).to_be_visible()
    checkpoint("logged-out")
    page.goto("/dashboard/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/dashboard/$"))
