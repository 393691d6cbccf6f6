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
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "scrape-token-for-tests"
# Variables of the test run that must not reach the server: it gets its own database and cache.
_NOT_INHERITED = ("DATABASE_URL", "REDIS_URL", "SENTRY_DSN", "PROMETHEUS_MULTIPROC_DIR", "DJANGO_SETTINGS_MODULE")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def production_env(database: Path, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in _NOT_INHERITED}
    env.update(
        DEBUG="false",
        SECRET_KEY="a-long-random-secret-key-for-the-gunicorn-tests-only-0123456789",
        ALLOWED_HOSTS="127.0.0.1",
        METRICS_TOKEN=TOKEN,
        DATABASE_URL=f"sqlite:///{database}",
        **extra,
    )
    return env


def migrate(database: Path) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=ROOT,
        env=production_env(database),
        check=True,
        timeout=300,
    )


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


def start_portal(tmp_path: Path, database: Path, *, workers: int = 2) -> Portal:
    """gunicorn with deploy/gunicorn.conf.py on a free loopback port, once it answers."""
    port = free_port()
    multiproc_dir = tmp_path / "prometheus"
    multiproc_dir.mkdir()
    (multiproc_dir / "counter_999999.db").write_bytes(b"left over by an earlier run")  # must be wiped
    log = tmp_path / "gunicorn.log"
    env = production_env(
        database,
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKERS=str(workers),
        PROMETHEUS_MULTIPROC_DIR=str(multiproc_dir),
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
