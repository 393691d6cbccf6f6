"""A real browser for the member pages: Debian's Chromium driven by Playwright's sync API.

One Chromium process serves every browser test (package scope); each test gets a fresh
context (cookies, storage) pointed at pytest-django's `live_server`. The server runs in a
thread of this process, so mail sent by the pages lands in `django.core.mail.outbox`.

`checkpoint(step)` is what a test calls on every page it visits: it saves a full-page
screenshot to `test-artifacts/screenshots/<test>-<NN>-<step>.png` and fails the test on any
serious or critical axe-core violation, on a server error or a broken stylesheet behind the
page, or on any Content-Security-Policy violation seen since the test began. The browser
enforces the portal's real policy (Playwright's `bypass_csp` stays off), and every test that
ends with a violation fails even without a checkpoint after it.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, ConsoleMessage, Page, Response, sync_playwright

from tests.conftest import CHROMIUM

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
# Chromium as root, in a container with no network and no GPU: no sandbox (it needs user
# namespaces), software rendering, /tmp instead of a small /dev/shm, and none of the
# background fetches that would wait on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
BLOCKING_IMPACTS = {"serious", "critical"}
_AXE = Axe()
_reports = pytest.StashKey[dict[str, pytest.TestReport]]()
_problems = pytest.StashKey["_Problems"]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the test, so `page` can screenshot a failed test."""
    report: pytest.TestReport = yield
    item.stash.setdefault(_reports, {})[report.when] = report
    return report


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    # Playwright's sync API keeps an asyncio loop running in this thread, so Django's
    # async-safety check would refuse every ORM call the tests (and pytest-django's flush
    # between tests) make here. It is lifted only while the browser is up: the package scope
    # ends it before the rest of the suite runs.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


# Runs in every document before its own scripts (Playwright's init scripts are not subject to
# the page's CSP) and reports each violation through the console, where `_Problems` hears it.
_REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`CSP violation: ${event.effectiveDirective} blocked ${event.blockedURI || "inline"}`
    + ` at ${event.sourceFile || event.documentURI}:${event.lineNumber} (${event.sample || "no sample"})`);
});
"""


@pytest.fixture(autouse=True)
def _every_page_view_reports_web_vitals(settings: Any) -> None:
    """Each page loads the web-vitals library and sends its beacon (static/js/vitals.js), so every
    browser test also runs them under the CSP."""
    settings.WEB_VITALS_SAMPLE_RATE = 1.0


@dataclass
class _Problems:
    """Responses behind the pages that a person would see as broken, and CSP violations."""

    seen: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)

    def watch(self, response: Response) -> None:
        request = response.request
        if response.status >= 500 or (response.status >= 400 and request.resource_type != "document"):
            self.seen.append(f"{response.status} {request.method} {response.url} ({request.resource_type})")

    def listen(self, message: ConsoleMessage) -> None:
        # Chromium's own report ("Refused to ... because it violates the following Content Security
        # Policy directive") and the init script's, so nothing slips past either.
        text = message.text
        if message.type == "error" and ("CSP violation" in text or "Content Security Policy" in text):
            self.csp_violations.append(f"{text} ({message.location.get('url', '')})")


def assert_no_csp_violations(problems: _Problems, where: str) -> None:
    if problems.csp_violations:
        pytest.fail(
            f"Content-Security-Policy violations by {where}:\n" + "\n".join(problems.csp_violations), pytrace=False
        )


@pytest.fixture
def page(browser: Browser, live_server: Any, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context on the live server: no cookies, a desktop viewport, UTC."""
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 1280, "height": 800}, locale="en-US", timezone_id="UTC"
    )
    context.set_default_timeout(5_000)
    context.add_init_script(_REPORT_CSP_VIOLATIONS)
    page = context.new_page()
    problems = _Problems()
    page.on("response", problems.watch)
    page.on("console", problems.listen)
    request.node.stash[_problems] = problems
    yield page
    reports = request.node.stash.get(_reports, {})
    if "call" in reports and reports["call"].failed:
        _screenshot(page, f"{_test_name(request)}-failed")
    context.close()
    # Closing the pages sends their Web Vitals beacons, which the live server answers on threads
    # of its own; let them finish before the test database is emptied (SQLite refuses to flush
    # tables another connection is reading).
    time.sleep(0.5)
    if "call" in reports and reports["call"].passed:
        assert_no_csp_violations(problems, request.node.name)


def _test_name(request: pytest.FixtureRequest) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")


def _screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    return path


def assert_accessible(page: Page, step: str) -> None:
    """Run axe-core in the page; fail on serious or critical violations, naming each rule, its
    help text and the elements that fail it. Lesser ones are printed (shown with -s or -rA)."""
    violations: list[dict[str, Any]] = _AXE.run(page).response["violations"]
    blocking = [v for v in violations if v.get("impact") in BLOCKING_IMPACTS]
    for violation in violations:
        if violation not in blocking:
            print(f"axe ({violation['impact']}) on {step} {page.url}: {violation['id']}: {violation['help']}")
    if not blocking:
        return
    lines = [f"axe found {len(blocking)} serious or critical violation(s) on {step} ({page.url}):"]
    for violation in blocking:
        lines.append(f"- {violation['id']} ({violation['impact']}): {violation['help']} <{violation['helpUrl']}>")
        for node in violation["nodes"]:
            lines.append(f"    at {' '.join(map(str, node['target']))}: {node['html']}")
            summary = node.get("failureSummary") or ""
            lines.extend(f"      {line}" for line in summary.splitlines())
    pytest.fail("\n".join(lines), pytrace=False)


@pytest.fixture
def checkpoint(page: Page, request: pytest.FixtureRequest) -> Callable[[str], None]:
    """`checkpoint("dashboard")`: screenshot the page as it is now, then check it."""
    name = _test_name(request)
    for stale in SCREENSHOTS.glob(f"{name}-*.png"):
        stale.unlink()
    problems = request.node.stash[_problems]
    steps = 0

    def check(step: str) -> None:
        nonlocal steps
        steps += 1
        page.wait_for_load_state("load")
        _screenshot(page, f"{name}-{steps:02d}-{step}")
        if problems.seen:
            pytest.fail(f"broken responses behind {step} ({page.url}):\n" + "\n".join(problems.seen), pytrace=False)
        assert_no_csp_violations(problems, f"{step} ({page.url}) or a page before it")
        assert_accessible(page, step)

    return check
