"""A real browser for the member pages: Debian's Chromium driven by Playwright's sync API.

One Chromium process serves every browser test (package scope); each test gets a fresh
context (cookies, storage) pointed at pytest-django's `live_server`. The server runs in a
thread of this process, so mail sent by the pages lands in `django.core.mail.outbox`.

`checkpoint(step)` is what a test calls on every page it visits: it saves a full-page
screenshot to `test-artifacts/screenshots/<test>-<NN>-<step>.png` and fails the test on any
serious or critical axe-core violation, or on a server error or a broken stylesheet behind
the page.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, Response, sync_playwright

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


@dataclass
class _Problems:
    """Responses behind the pages that a person would see as broken."""

    seen: list[str] = field(default_factory=list)

    def watch(self, response: Response) -> None:
        request = response.request
        if response.status >= 500 or (response.status >= 400 and request.resource_type != "document"):
            self.seen.append(f"{response.status} {request.method} {response.url} ({request.resource_type})")


@pytest.fixture
def page(browser: Browser, live_server: Any, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context on the live server: no cookies, a desktop viewport, UTC."""
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 1280, "height": 800}, locale="en-US", timezone_id="UTC"
    )
    context.set_default_timeout(5_000)
    page = context.new_page()
    problems = _Problems()
    page.on("response", problems.watch)
    request.node.stash[_problems] = problems
    yield page
    reports = request.node.stash.get(_reports, {})
    if "call" in reports and reports["call"].failed:
        _screenshot(page, f"{_test_name(request)}-failed")
    context.close()


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
        assert_accessible(page, step)

    return check
