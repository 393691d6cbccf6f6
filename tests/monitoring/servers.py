"""The portal under gunicorn (deploy/gunicorn.conf.py), started as production starts it, for the
tests that need real worker processes or a real Prometheus to scrape it. The launcher is
tools/servers.py, shared with the benchmark, the drills and Lighthouse; here is what the tests
add: their settings, Prometheus's view of /metrics, scratch databases and a browser's HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from tools import servers
from tools.servers import NOT_INHERITED, ROOT, free_port, keep_cookies

__all__ = [
    "NOT_INHERITED",
    "ROOT",
    "TOKEN",
    "Portal",
    "Visitor",
    "database_url",
    "free_port",
    "manage",
    "migrate",
    "production_env",
    "scratch_database",
    "start_portal",
]

TOKEN = "scrape-token-for-tests"
SECRET_KEY = "a-long-random-secret-key-for-the-gunicorn-tests-only-0123456789"


def database_url(database: Path | str) -> str:
    """A SQLite file, or a database URL as it is."""
    return f"sqlite:///{database}" if isinstance(database, Path) else database


def production_env(database: Path | str, **extra: str) -> dict[str, str]:
    return servers.production_env(
        database_url=database_url(database), secret_key=SECRET_KEY, METRICS_TOKEN=TOKEN, **extra
    )


def manage(database: Path | str, *args: str, **extra: str) -> str:
    """Run a management command against the server's database, as production would; its output."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=production_env(database, **extra),
        check=True,
        timeout=300,
        capture_output=True,
        text=True,
    )
    return result.stdout


def migrate(database: Path | str) -> None:
    manage(database, "migrate", "--no-input", "-v", "0")


@dataclass
class Portal(servers.Gunicorn):
    multiproc_dir: Path

    def get(self, path: str, token: str | None = None, *, via_proxy: bool = True) -> tuple[int, bytes]:
        """GET `path`. Members come through the TLS proxy, which says so in X-Forwarded-Proto;
        Prometheus comes straight to the instance over plain HTTP (`via_proxy=False`)."""
        request = urllib.request.Request(self.url + path)  # noqa: S310 (our own loopback URL)
        if via_proxy:
            request.add_header("X-Forwarded-Proto", "https")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (our loopback URL)
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        status, body = self.get("/metrics", token=TOKEN, via_proxy=False)
        assert status == 200, body
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples
        }


def start_portal(tmp_path: Path, database: Path | str, *, workers: int = 2, **extra: str) -> Portal:
    """gunicorn with deploy/gunicorn.conf.py on a free loopback port, once it answers. Its files
    (metrics, log) are in `tmp_path`; `extra` is more environment, such as REDIS_URL."""
    multiproc_dir = tmp_path / "prometheus"
    multiproc_dir.mkdir(parents=True)
    (multiproc_dir / "counter_999999.db").write_bytes(b"left over by an earlier run")  # must be wiped
    env = production_env(database, PROMETHEUS_MULTIPROC_DIR=str(multiproc_dir), **extra)
    return Portal.start(
        env, port=free_port(), workers=workers, log=tmp_path / "gunicorn.log", multiproc_dir=multiproc_dir
    )


@contextmanager
def scratch_database(name: str, *, copy_of: str | None = None) -> Iterator[str]:
    """A PostgreSQL database `name` on the test run's server, for instances started outside the
    test's own transaction: empty, or a copy of database `copy_of` (which nothing may be
    connected to). Dropped afterwards. Yields its URL."""
    server = urlsplit(os.environ["DATABASE_URL"])
    admin_url = urlunsplit(server._replace(path="/postgres"))

    def run(statement: str) -> None:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(statement)

    run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    run(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{copy_of}"' if copy_of else ""))
    try:
        yield urlunsplit(server._replace(path=f"/{name}"))
    finally:
        run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class Visitor:
    """A browser's part of HTTP, by hand: cookies kept (Secure ones too, since the TLS proxy is
    played by the X-Forwarded-Proto header), CSRF token sent back, redirects not followed. One
    visitor can go from one instance to another, as behind a load balancer."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}

    def request(
        self, portal: Portal, method: str, path: str, data: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(portal.url + path, data=body, method=method)  # noqa: S310 (loopback)
        request.add_header("X-Forwarded-Proto", "https")
        if self.cookies:
            request.add_header("Cookie", "; ".join(f"{name}={value}" for name, value in self.cookies.items()))
        if method == "POST":
            # Django checks a secure request's Origin against its own host.
            request.add_header("Origin", f"https://127.0.0.1:{portal.port}")
            # The CSRF cookie: `__Host-csrftoken` in production.
            token = next((value for name, value in self.cookies.items() if name.endswith("csrftoken")), None)
            if token:
                request.add_header("X-CSRFToken", token)
        opener = urllib.request.build_opener(_NoRedirects)
        try:
            response = opener.open(request, timeout=20)
        except urllib.error.HTTPError as error:
            response = error
        with response:
            keep_cookies(self.cookies, response.headers.get_all("Set-Cookie") or [])
            return response.status, dict(response.headers.items()), response.read().decode()

    def get(self, portal: Portal, path: str) -> tuple[int, dict[str, str], str]:
        return self.request(portal, "GET", path)

    def post(self, portal: Portal, path: str, data: dict[str, str]) -> tuple[int, dict[str, str], str]:
        return self.request(portal, "POST", path, data)
