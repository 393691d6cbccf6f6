"""Lighthouse against the member pages of a seeded portal, with budgets: `make lighthouse`.

Starts the portal as production runs it (gunicorn with deploy/gunicorn.conf.py, DEBUG off, the
static files collected, hashed and compressed by whitenoise) on a free loopback port, on a fresh
SQLite database in var/lighthouse/ loaded by `seed_demo`, logs in as a demo member over HTTP (the
login form, with its CSRF token), and runs Lighthouse (node_modules, pinned in package.json)
once per page in Debian's Chromium. Every page is judged against BUDGETS; any page over budget
makes the run exit 1, naming the page and the metric.

The browser reaches the portal as members do through the TLS proxy: every request carries
`X-Forwarded-Proto: https` (Lighthouse's --extra-headers), and pages behind the login carry the
session cookie the same way. Sampling of Web Vitals is 1.0, so each page pays for the web-vitals
library as a sampled page view does.

Desktop preset, on purpose: Lighthouse's mobile preset simulates a slow 4G network and a CPU
four times slower, against which an LCP under 1.0 s measures the simulation's round trips more
than the page; the desktop preset (40 ms RTT, 10 Mbit/s, no CPU slowdown) keeps the budget about
the pages. What members get on phones is measured in the field (the portal_web_vitals_* metrics).

Reports: var/lighthouse/<page>.report.html and .report.json, and summary.json.
"""

from __future__ import annotations

import argparse
import http.cookies
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "var" / "lighthouse"
LIGHTHOUSE = ROOT / "node_modules" / ".bin" / "lighthouse"
CHROME = os.environ.get("CHROME_PATH", "/usr/bin/chromium")
# The demo member of `seed_demo` (a basic member with tokens and activity) and its published
# password (portal/management/commands/seed_demo.py; tests/portal/test_seed_demo.py checks both).
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


@dataclass(frozen=True)
class Result:
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


def read_report(page: Page, url: str, report: dict[str, Any]) -> Result:
    categories = report["categories"]
    audits = report["audits"]
    for name in ("performance", "accessibility", "best-practices"):
        if categories[name]["score"] is None:  # Lighthouse could not score it: a broken run
            raise SystemExit(f"lighthouse: {page.name}: no {name} score ({report.get('runtimeError')})")
    return Result(
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def portal_env(database: Path, port: int) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"DATABASE_URL", "DATABASE_REPLICA_URL", "REDIS_URL", "SENTRY_DSN", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(
        DEBUG="false",
        SECRET_KEY="lighthouse-only-" + "x" * 50,
        ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=f"sqlite:///{database}",
        WEB_VITALS_SAMPLE_RATE="1.0",
        EMAIL_URL="consolemail://",
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKERS="2",
        PROMETHEUS_MULTIPROC_DIR=str(OUT / "prometheus"),
    )
    return env


def manage(env: dict[str, str], *args: str) -> None:
    command = [sys.executable, "manage.py", *args]
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)  # noqa: S603 (our own command)


@contextmanager
def serve(env: dict[str, str], url: str) -> Iterator[None]:
    log = (OUT / "gunicorn.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise SystemExit(f"lighthouse: gunicorn exited with {server.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(url + "/health/live", timeout=2):  # noqa: S310 (our loopback URL)
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"lighthouse: gunicorn did not answer within 60 s; see {log.name}") from None
                time.sleep(0.2)
        yield
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


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
            for header in response.headers.get_all("Set-Cookie") or []:
                for name, morsel in http.cookies.SimpleCookie(header).items():
                    cookies[name] = morsel.value
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


# --- Lighthouse -----------------------------------------------------------------------------------


ATTEMPTS = 3


def run_lighthouse(page: Page, url: str, session: str) -> Result:
    headers = {"X-Forwarded-Proto": "https"}
    if page.logged_in:
        headers["Cookie"] = session
    output = OUT / page.name
    command = [
        str(LIGHTHOUSE),
        url,
        "--preset=desktop",
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
        print(f"lighthouse: {page.name}: Lighthouse failed (attempt {attempt} of {ATTEMPTS})", file=sys.stderr)
    else:
        raise SystemExit(f"lighthouse: {page.name} ({url}) failed:\n{result.stdout}{result.stderr}")
    report = json.loads(Path(f"{output}.report.json").read_text())
    final = report.get("finalDisplayedUrl", url)
    if urllib.parse.urlsplit(final).path != page.path:
        raise SystemExit(f"lighthouse: {page.name} ended at {final}, not {page.path}: the login did not hold")
    return read_report(page, url, report)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", nargs="*", choices=[page.name for page in PAGES], help="default: all")
    args = parser.parse_args()
    pages = [page for page in PAGES if not args.pages or page.name in args.pages]
    if not LIGHTHOUSE.exists():
        raise SystemExit("lighthouse: node_modules has no Lighthouse: run `npm ci` (make lighthouse does)")
    if not Path(CHROME).exists():
        raise SystemExit(f"lighthouse: no Chromium at {CHROME} (apt-get install chromium, or set CHROME_PATH)")

    started = time.monotonic()
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "prometheus").mkdir(parents=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = portal_env(OUT / "db.sqlite3", port)
    manage(env, "migrate", "--no-input", "-v", "0")
    manage(env, "seed_demo", "--force")
    manage(env, "collectstatic", "--no-input", "-v", "0")
    results = []
    with serve(env, url):
        session = log_in(url)
        for page in pages:
            results.append(run_lighthouse(page, url + page.path, session))

    print(f"\nLighthouse {lighthouse_version()}, desktop preset, one run per page ({time.monotonic() - started:.0f} s)")
    print(f"{'page':<10} {'perf':>4} {'a11y':>4} {'b.p.':>4} {'LCP ms':>7} {'CLS':>6} {'weight KB':>9}")
    for r in results:
        print(
            f"{r.page:<10} {r.performance * 100:>4.0f} {r.accessibility * 100:>4.0f} {r.best_practices * 100:>4.0f} "
            f"{r.lcp_ms:>7.0f} {r.cls:>6.3f} {r.weight_bytes / 1000:>9.1f}"
        )
    (OUT / "summary.json").write_text(
        json.dumps({"budget": asdict(BUDGET), "pages": [asdict(r) for r in results]}, indent=2) + "\n"
    )
    misses = [f"{r.page} ({r.url}): {miss}" for r in results for miss in r.over_budget(BUDGET)]
    print(f"Reports: {OUT.relative_to(ROOT)}/<page>.report.html")
    if misses:
        print("\nOver budget:\n" + "\n".join(f"  {miss}" for miss in misses), file=sys.stderr)
        return 1
    print("Every page is within budget.")
    return 0


def lighthouse_version() -> str:
    package = json.loads((ROOT / "node_modules" / "lighthouse" / "package.json").read_text())
    return str(package["version"])


if __name__ == "__main__":
    sys.exit(main())
