"""The portal under gunicorn (deploy/gunicorn.conf.py), started as production starts it, for the
tests that need real worker processes or a real Prometheus to scrape it."""

from __future__ import annotations

import os
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
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "scrape-token-for-tests"
# Variables of the test run that must not reach the server: it gets its own database and cache.
NOT_INHERITED = (
    "DATABASE_URL",
    "DATABASE_REPLICA_URL",
    "REDIS_URL",
    "SENTRY_DSN",
    "PROMETHEUS_MULTIPROC_DIR",
    "DJANGO_SETTINGS_MODULE",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def database_url(database: Path | str) -> str:
    """A SQLite file, or a database URL as it is."""
    return f"sqlite:///{database}" if isinstance(database, Path) else database


def production_env(database: Path | str, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in NOT_INHERITED}
    env.update(
        DEBUG="false",
        SECRET_KEY="a-long-random-secret-key-for-the-gunicorn-tests-only-0123456789",
        ALLOWED_HOSTS="127.0.0.1",
        METRICS_TOKEN=TOKEN,
        EMAIL_URL="consolemail://",  # mail printed to the server's log, as intended here
        DATABASE_URL=database_url(database),
    )
    env.update(extra)
    return env


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
class Portal:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
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

    def worker_pids(self) -> set[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return {int(pid) for pid in children}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # graceful: workers finish their requests
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_portal(tmp_path: Path, database: Path | str, *, workers: int = 2, **extra: str) -> Portal:
    """gunicorn with deploy/gunicorn.conf.py on a free loopback port, once it answers. Its files
    (metrics, log) are in `tmp_path`; `extra` is more environment, such as REDIS_URL."""
    port = free_port()
    multiproc_dir = tmp_path / "prometheus"
    multiproc_dir.mkdir(parents=True)
    (multiproc_dir / "counter_999999.db").write_bytes(b"left over by an earlier run")  # must be wiped
    log = tmp_path / "gunicorn.log"
    env = production_env(
        database,
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKERS=str(workers),
        PROMETHEUS_MULTIPROC_DIR=str(multiproc_dir),
        **extra,
    )
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    portal = Portal(f"http://127.0.0.1:{port}", port, process, log, multiproc_dir)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{log.read_text()}")
        try:
            if portal.get("/health/live")[0] == 200 and len(portal.worker_pids()) == workers:
                return portal
        except OSError:
            pass
        time.sleep(0.2)
    portal.stop()
    raise RuntimeError(f"gunicorn did not answer within 60 s:\n{log.read_text()}")


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
            for header in response.headers.get_all("Set-Cookie") or []:
                for name, morsel in SimpleCookie(header).items():
                    if morsel["max-age"] == "0":
                        self.cookies.pop(name, None)
                    else:
                        self.cookies[name] = morsel.value
            return response.status, dict(response.headers.items()), response.read().decode()

    def get(self, portal: Portal, path: str) -> tuple[int, dict[str, str], str]:
        return self.request(portal, "GET", path)

    def post(self, portal: Portal, path: str, data: dict[str, str]) -> tuple[int, dict[str, str], str]:
        return self.request(portal, "POST", path, data)
