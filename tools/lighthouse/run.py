"""Lighthouse against the member pages of a seeded portal, with budgets: `make lighthouse`.

Starts the portal as production runs it (gunicorn with deploy/gunicorn.conf.py, DEBUG off, the
static files collected, hashed and compressed by whitenoise) on a free loopback port, on a fresh
SQLite database in var/lighthouse/ loaded by `seed_demo`, logs in as a demo member over HTTP (the
login form, with its CSRF token), and runs Lighthouse (node_modules, pinned in package.json)
once per page and preset in Debian's Chromium. Every page is judged against its preset's budget;
any page over budget makes the run exit 1, naming the preset, the page and the metric.

The browser reaches the portal as members do through the TLS proxy: every request carries
`X-Forwarded-Proto: https` (Lighthouse's --extra-headers), and pages behind the login carry the
session cookie the same way. Sampling of Web Vitals is 1.0, so each page pays for the web-vitals
library as a sampled page view does.

Two presets, each page under both. Mobile is Lighthouse's default (no --preset flag): a
Moto G-sized screen, a simulated slow 4G link (150 ms round trips, 1.6 Mbit/s) and a CPU four
times slower; desktop is --preset=desktop (40 ms RTT, 10 Mbit/s, no CPU slowdown). Both hold
the same budget, LCP under 1.0 s included, but for the member pages on mobile, whose LCP budget
is 1.5 s (`MEMBER_MOBILE_BUDGET`: their HTML takes one more simulated round trip).

Reports: var/lighthouse/<page>.<preset>.report.html and .report.json, and summary.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script: the shared launcher is tools/servers.py

from tools.servers import Gunicorn, free_port, keep_cookies, production_env  # noqa: E402

OUT = ROOT / "var" / "lighthouse"
LIGHTHOUSE = ROOT / "node_modules" / ".bin" / "lighthouse"
CHROME = os.environ.get("CHROME_PATH", "/usr/bin/chromium")
# The demo member of `seed_demo` (a basic member with tokens and activity) and its published
# password (portal/demo_data.py; tests/portal/test_seed_demo.py checks both).
MEMBER = "alice@example.com"
DEMO_PASSWORD = "portal-demo-2026"  # noqa: S105 (published on purpose, see seed_demo)


@dataclass(frozen=True)
class Page:
    name: str
    path: str
    logged_in: bool


PAGES = (
    Page("landing", "/", logged_in=False),
    Page("login", "/accounts/login/", logged_in=False),
    Page("dashboard", "/dashboard/", logged_in=True),
    Page("tokens", "/tokens/", logged_in=True),
    Page("activity", "/activity/", logged_in=True),
)


@dataclass(frozen=True)
class Budget:
    """What every page must do. Scores are Lighthouse's 0 to 1; weight in bytes transferred."""

    performance: float = 0.95
    accessibility: float = 0.95
    best_practices: float = 0.95
    lcp_ms: float = 1000.0
    cls: float = 0.05
    weight_bytes: int = 150_000


BUDGET = Budget()


# A member page's HTML (16 to 28 KB, its stylesheet inlined) is past the first TCP congestion
# window that Lighthouse's mobile throttling simulates (about 14.6 KB at 150 ms a round trip):
# one more round trip than the landing and login pages, which hold the 1.0 s.
MEMBER_MOBILE_BUDGET = Budget(lcp_ms=1500.0)


@dataclass(frozen=True)
class Preset:
    """How Lighthouse emulates the device: `flags` on its command line, `budget` what each page
    must do under it, `member_budget` what a logged-in page must (the same unless given)."""

    name: str
    flags: tuple[str, ...]
    budget: Budget
    member_budget: Budget | None = None

    def budget_for(self, page: Page) -> Budget:
        return (self.member_budget or self.budget) if page.logged_in else self.budget


PRESETS = (
    Preset("mobile", (), BUDGET, MEMBER_MOBILE_BUDGET),  # Lighthouse's default emulation
    Preset("desktop", ("--preset=desktop",), BUDGET),
)


@dataclass(frozen=True)
class Result:
    preset: str
    page: str
    url: str
    performance: float
    accessibility: float
    best_practices: float
    lcp_ms: float
    cls: float
    weight_bytes: int

    def over_budget(self, budget: Budget) -> list[str]:
        """One line per metric that misses its budget."""
        misses = []
        for label, score, floor in (
            ("performance", self.performance, budget.performance),
            ("accessibility", self.accessibility, budget.accessibility),
            ("best practices", self.best_practices, budget.best_practices),
        ):
            if score < floor:
                misses.append(f"{label} score {score * 100:.0f} is under {floor * 100:.0f}")
        if self.lcp_ms >= budget.lcp_ms:
            misses.append(f"LCP {self.lcp_ms:.0f} ms is not under {budget.lcp_ms:.0f} ms")
        if self.cls >= budget.cls:
            misses.append(f"CLS {self.cls:.3f} is not under {budget.cls}")
        if self.weight_bytes >= budget.weight_bytes:
            misses.append(
                f"total weight {self.weight_bytes / 1000:.1f} KB is not under {budget.weight_bytes / 1000:.0f} KB"
            )
        return misses


def read_report(preset: Preset, page: Page, url: str, report: dict[str, Any]) -> Result:
    categories = report["categories"]
    audits = report["audits"]
    for name in ("performance", "accessibility", "best-practices"):
        if categories[name]["score"] is None:  # Lighthouse could not score it: a broken run
            raise SystemExit(f"lighthouse: {page.name} ({preset.name}): no {name} score ({report.get('runtimeError')})")
    return Result(
        preset=preset.name,
        page=page.name,
        url=url,
        performance=float(categories["performance"]["score"]),
        accessibility=float(categories["accessibility"]["score"]),
        best_practices=float(categories["best-practices"]["score"]),
        lcp_ms=float(audits["largest-contentful-paint"]["numericValue"]),
        cls=float(audits["cumulative-layout-shift"]["numericValue"]),
        weight_bytes=int(audits["total-byte-weight"]["numericValue"]),
    )


# --- The portal -----------------------------------------------------------------------------------


def portal_env(database: Path) -> dict[str, str]:
    return production_env(
        database_url=f"sqlite:///{database}",
        secret_key="lighthouse-only-" + "x" * 50,
        WEB_VITALS_SAMPLE_RATE="1.0",
        PROMETHEUS_MULTIPROC_DIR=str(OUT / "prometheus"),
    )


def manage(env: dict[str, str], *args: str) -> None:
    command = [sys.executable, "manage.py", *args]
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)  # noqa: S603 (our own command)


def serve(env: dict[str, str]) -> Gunicorn:
    try:
        return Gunicorn.start(env, port=free_port(), workers=2, log=OUT / "gunicorn.log")
    except RuntimeError as error:
        raise SystemExit(f"lighthouse: {error}") from None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def log_in(url: str) -> str:
    """The session cookie of MEMBER (`name=value`), logged in through the login form as a browser
    would. Its name is the settings' (`__Host-sessionid` in production)."""
    cookies: dict[str, str] = {}
    opener = urllib.request.build_opener(_NoRedirects)

    def send(method: str, path: str, data: dict[str, str] | None = None) -> tuple[int, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(url + path, data=body, method=method)  # noqa: S310 (loopback)
        request.add_header("X-Forwarded-Proto", "https")
        request.add_header("Origin", url.replace("http://", "https://"))
        request.add_header("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()))
        try:
            response = opener.open(request, timeout=20)
        except urllib.error.HTTPError as error:
            response = error
        with response:
            keep_cookies(cookies, response.headers.get_all("Set-Cookie") or [])
            return response.status, response.read().decode()

    status, form = send("GET", "/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    if status != 200 or token is None:
        raise SystemExit(f"lighthouse: the login page answered {status} without a form")
    status, _ = send(
        "POST", "/accounts/login/", {"csrfmiddlewaretoken": token.group(1), "login": MEMBER, "password": DEMO_PASSWORD}
    )
    session = [f"{name}={value}" for name, value in cookies.items() if name.endswith("sessionid")]
    if status != 302 or not session:
        raise SystemExit(f"lighthouse: logging in as {MEMBER} answered {status}, not a redirect with a session")
    return session[0]


# Requests per page before Lighthouse sees it: with 2 workers, 8 requests reach both with odds
# of 127 in 128 (each picks a worker by chance).
WARM_UP_REQUESTS = 8


def warm_up(url: str, session: str, pages: list[Page]) -> None:
    """Serve each page a few times before it is measured, as a server in production has. A
    worker's first request of a page compiles its templates and imports what the page's code
    imports lazily, and took up to 0.8 s on a busy machine: Lighthouse reads the server's
    response time as the page's, and on the mobile preset that one request was its LCP over
    budget. (The member pages are then served from the page cache, as on a member's next visit.)"""
    opener = urllib.request.build_opener(_NoRedirects)
    for page in pages:
        for _ in range(WARM_UP_REQUESTS):
            request = urllib.request.Request(url + page.path)  # noqa: S310 (loopback)
            request.add_header("X-Forwarded-Proto", "https")
            if page.logged_in:
                request.add_header("Cookie", session)
            with opener.open(request, timeout=20) as response:
                if response.status != 200:
                    raise SystemExit(f"lighthouse: warming {page.path} answered {response.status}, not 200")
                response.read()


# --- Lighthouse -----------------------------------------------------------------------------------


ATTEMPTS = 3


def run_lighthouse(preset: Preset, page: Page, url: str, session: str) -> Result:
    headers = {"X-Forwarded-Proto": "https"}
    if page.logged_in:
        headers["Cookie"] = session
    output = OUT / f"{page.name}.{preset.name}"
    command = [
        str(LIGHTHOUSE),
        url,
        *preset.flags,
        "--only-categories=performance,accessibility,best-practices",
        "--output=json",
        "--output=html",
        f"--output-path={output}",
        f"--extra-headers={json.dumps(headers)}",
        # As root in a container: no sandbox; a small /dev/shm; no GPU.
        "--chrome-flags=--headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage",
        "--quiet",
    ]
    env = {**os.environ, "CHROME_PATH": CHROME}
    # Lighthouse itself sometimes fails to record a trace ("NO_NAVSTART ... Please run Lighthouse
    # again"), more often on a busy machine: such a run measured nothing, so it is run again, up to
    # ATTEMPTS times. A page over budget is never retried.
    for attempt in range(1, ATTEMPTS + 1):
        result = subprocess.run(  # noqa: S603 (our own command, no shell)
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False
        )
        if result.returncode == 0:
            break
        print(
            f"lighthouse: {page.name} ({preset.name}): Lighthouse failed (attempt {attempt} of {ATTEMPTS})",
            file=sys.stderr,
        )
    else:
        raise SystemExit(f"lighthouse: {page.name} ({preset.name}, {url}) failed:\n{result.stdout}{result.stderr}")
    report = json.loads(Path(f"{output}.report.json").read_text())
    final = report.get("finalDisplayedUrl", url)
    if urllib.parse.urlsplit(final).path != page.path:
        raise SystemExit(f"lighthouse: {page.name} ended at {final}, not {page.path}: the login did not hold")
    return read_report(preset, page, url, report)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", nargs="*", choices=[page.name for page in PAGES], help="default: all")
    parser.add_argument("--presets", nargs="*", choices=[preset.name for preset in PRESETS], help="default: both")
    args = parser.parse_args()
    pages = [page for page in PAGES if not args.pages or page.name in args.pages]
    presets = [preset for preset in PRESETS if not args.presets or preset.name in args.presets]
    if not LIGHTHOUSE.exists():
        raise SystemExit("lighthouse: node_modules has no Lighthouse: run `npm ci` (make lighthouse does)")
    if not Path(CHROME).exists():
        raise SystemExit(f"lighthouse: no Chromium at {CHROME} (apt-get install chromium, or set CHROME_PATH)")

    started = time.monotonic()
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "prometheus").mkdir(parents=True)
    env = portal_env(OUT / "db.sqlite3")
    manage(env, "migrate", "--no-input", "-v", "0")
    manage(env, "seed_demo", "--force")
    manage(env, "collectstatic", "--no-input", "-v", "0")
    results = []
    server = serve(env)
    try:
        session = log_in(server.url)
        warm_up(server.url, session, pages)
        for preset in presets:
            for page in pages:
                results.append(run_lighthouse(preset, page, server.url + page.path, session))
    finally:
        server.stop()

    print(f"\nLighthouse {lighthouse_version()}, one run per page and preset ({time.monotonic() - started:.0f} s)")
    print(table(results))
    budgets = {(preset.name, page.name): preset.budget_for(page) for preset in presets for page in pages}
    (OUT / "summary.json").write_text(
        json.dumps(
            {
                "budgets": {f"{name}:{page}": asdict(b) for (name, page), b in budgets.items()},
                "pages": [asdict(r) for r in results],
            },
            indent=2,
        )
        + "\n"
    )
    misses = [
        f"{r.page} ({r.preset}, {r.url}): {miss}" for r in results for miss in r.over_budget(budgets[r.preset, r.page])
    ]
    print(f"Reports: {OUT.relative_to(ROOT)}/<page>.<preset>.report.html")
    if misses:
        print("\nOver budget:\n" + "\n".join(f"  {miss}" for miss in misses), file=sys.stderr)
        return 1
    print("Every page is within budget.")
    return 0


def table(results: list[Result]) -> str:
    lines = [
        f"{'preset':<8} {'page':<10} {'perf':>4} {'a11y':>4} {'b.p.':>4} {'LCP ms':>7} {'CLS':>6} {'weight KB':>9}"
    ]
    for r in results:
        lines.append(
            f"{r.preset:<8} {r.page:<10} {r.performance * 100:>4.0f} {r.accessibility * 100:>4.0f} "
            f"{r.best_practices * 100:>4.0f} {r.lcp_ms:>7.0f} {r.cls:>6.3f} {r.weight_bytes / 1000:>9.1f}"
        )
    return "\n".join(lines)


def lighthouse_version() -> str:
    package = json.loads((ROOT / "node_modules" / "lighthouse" / "package.json").read_text())
    return str(package["version"])


if __name__ == "__main__":
    sys.exit(main())
