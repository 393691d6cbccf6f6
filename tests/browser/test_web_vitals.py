"""Web Vitals in a real browser: a sampled member page loads the web-vitals library under the
strict CSP and its beacon lands in the Prometheus histograms; the pages outside the member
journey (the admin, allauth's two-factor pages, the API docs) keep to the CSP too; and the
portal works the same with JavaScript off."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from playwright.sync_api import Browser, Page, expect
from prometheus_client import REGISTRY

from members.models import Member
from tests.browser.conftest import _REPORT_CSP_VIOLATIONS as REPORT_CSP_VIOLATIONS
from tests.browser.conftest import _Problems as Problems
from tests.browser.conftest import _problems as problems_key
from tests.browser.conftest import assert_no_csp_violations
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser

METRIC_FAMILIES = {
    "FCP": "portal_web_vitals_fcp_seconds",
    "LCP": "portal_web_vitals_lcp_seconds",
    "CLS": "portal_web_vitals_cls",
    "INP": "portal_web_vitals_inp_seconds",
    "TTFB": "portal_web_vitals_ttfb_seconds",
}


def recorded(name: str, page: str, tier: str) -> float:
    return REGISTRY.get_sample_value(f"{METRIC_FAMILIES[name]}_count", {"page": page, "member_tier": tier}) or 0.0


def wait_for(condition: Callable[[], bool], timeout: float = 5) -> None:
    """The beacon is handled by the live server's thread: give it a moment."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def log_in(page: Page, member: Member) -> None:
    EmailAddress.objects.get_or_create(user=member, email=member.email, defaults={"verified": True, "primary": True})
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(member.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    expect(page).to_have_url(re.compile(r"/dashboard/$"))


def test_a_sampled_member_page_sends_its_web_vitals_to_the_histograms(
    page: Page, checkpoint: Callable[[str], None], alice: Member
) -> None:
    # The histograms are this process's, shared with the other tests: counts are compared.
    loading = ("FCP", "LCP", "CLS", "TTFB")  # what a page view reports without an interaction
    earlier = {name: recorded(name, "dashboard", "free") for name in loading}
    log_in(page, alice)
    page.goto("/profile/")
    # The beacon of the dashboard that the login led to, out of the way first.
    wait_for(lambda: all(recorded(name, "dashboard", "free") > earlier[name] for name in loading))
    before = {name: recorded(name, "dashboard", "free") for name in METRIC_FAMILIES}
    page.goto("/dashboard/")
    checkpoint("dashboard")
    # The library arrived (loaded by vitals.js with the page's nonce) and is measuring.
    page.wait_for_function("() => window.webVitals !== undefined")
    page.get_by_role("heading", level=1).click()  # an interaction, for INP
    # Leaving hides the page: the beacon goes. (Playwright does not report a beacon sent by a
    # page being left, so the test reads what the server recorded: it runs in this process.)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Profile").click()
    expect(page).to_have_url(re.compile(r"/profile/$"))

    wait_for(lambda: all(recorded(name, "dashboard", "free") > before[name] for name in METRIC_FAMILIES))
    # One value of each metric for the one view of the dashboard, under alice's page and tier.
    for name in METRIC_FAMILIES:
        assert recorded(name, "dashboard", "free") == before[name] + 1, name
    assert REGISTRY.get_sample_value("portal_web_vitals_fcp_seconds_sum", {"page": "dashboard", "member_tier": "free"})
    checkpoint("profile")


def test_a_page_view_not_drawn_loads_nothing_more(page: Page, settings: Any, alice: Member) -> None:
    settings.WEB_VITALS_SAMPLE_RATE = 0.0
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    log_in(page, alice)
    assert not [url for url in requests if "vitals" in url]
    settings.WEB_VITALS_SAMPLE_RATE = 0.000001  # rendered, but the draw (almost surely) misses
    page.goto("/tokens/")
    page.goto("/activity/")
    assert [url for url in requests if "web-vitals" in url or url.endswith("/vitals/")] == []
    assert page.evaluate("() => window.webVitals === undefined")


def test_the_admin_the_authenticator_qr_code_and_the_api_docs_keep_to_the_csp(
    page: Page, checkpoint: Callable[[str], None], carol: Member, request: pytest.FixtureRequest
) -> None:
    problems = request.node.stash[problems_key]
    log_in(page, carol)
    # Django's admin (its own markup, so CSP only: axe's verdict on it is Django's to act on).
    page.goto("/admin/")
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()
    page.goto("/admin/members/member/")
    page.get_by_role("checkbox", name="Select all objects on this page for an action").check()  # admin's JS ran
    expect(page.get_by_text("1 of 1 selected")).to_be_visible()
    page.goto(f"/admin/members/member/{carol.pk}/change/")
    page.wait_for_load_state("load")
    assert_no_csp_violations(problems, "the admin")

    # The authenticator's QR code is a data: image (tests/browser/test_login.py checks the rest).
    page.goto("/accounts/2fa/totp/activate/")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("img")).to_be_visible()
    assert page.get_by_role("img").evaluate("img => img.complete && img.naturalWidth > 0")
    # Its size is declared (templates/allauth/elements/img.html), so nothing shifts when it arrives.
    assert (page.get_by_role("img").get_attribute("width"), page.get_by_role("img").get_attribute("height")) == (
        "200",
        "200",
    )
    checkpoint("totp-activate")

    # django-ninja's Swagger UI: its own static files, its settings in a JSON data block (not
    # run as script), and no inline script; CSP only, for the same reason as the admin.
    page.goto("/api/v1/docs")
    expect(page.locator(".opblock").first).to_be_visible()  # Swagger UI ran and read the schema
    page.locator(".opblock-summary").first.click()
    page.get_by_role("button", name="Try it out").click()
    expect(page.get_by_role("button", name="Execute")).to_be_visible()
    assert_no_csp_violations(problems, "the API docs")


def test_a_csp_violation_fails_the_checks(browser: Browser, live_server: Any, db: None) -> None:
    # The checks themselves: an inline script, which the policy forbids, is reported and fails.
    context = browser.new_context(base_url=live_server.url)
    context.add_init_script(REPORT_CSP_VIOLATIONS)
    page = context.new_page()
    problems = Problems()
    page.on("console", problems.listen)
    try:
        page.goto("/accounts/login/")
        page.evaluate(
            "() => { const s = document.createElement('script'); s.textContent = 'window.x = 1';"
            " document.body.append(s); }"
        )
        page.wait_for_timeout(200)
        assert page.evaluate("() => window.x") is None  # blocked
    finally:
        context.close()
    assert any("script-src" in violation for violation in problems.csp_violations), problems.csp_violations
    with pytest.raises(pytest.fail.Exception, match="Content-Security-Policy violations"):
        assert_no_csp_violations(problems, "the test page")


def test_the_portal_works_the_same_with_javascript_off(browser: Browser, live_server: Any, alice: Member) -> None:
    context = browser.new_context(base_url=live_server.url, java_script_enabled=False)
    page = context.new_page()
    try:
        log_in(page, alice)
        expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Alice")
        page.goto("/tokens/")
        page.get_by_label(re.compile(r"^Name:?$")).fill("no-js script")
        page.get_by_label("Read").check()
        page.get_by_role("button", name="Create token").click()
        expect(page.get_by_role("textbox", name="Token")).to_have_value(re.compile(r"^mpt_[0-9A-Za-z]{36}$"))
    finally:
        context.close()
