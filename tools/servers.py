"""The portal under gunicorn, started as production starts it, for everything that needs a real
instance on loopback: the benchmark (bench/run.py), the fault drills (bench/drills/), the tests
that need worker processes or a real Prometheus (tests/monitoring/servers.py) and Lighthouse
(tools/lighthouse/run.py).

One way to do it: production settings (`production_env`: DEBUG off, none of the caller's own
database, cache or Sentry), a free loopback port, `deploy/gunicorn.conf.py`, gunicorn's output in
a log file; ready once its probe answers and every worker is up; stopped with SIGTERM so that
workers finish their requests. When it does not come up, the error carries the end of its log.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
# Variables of the calling process that must not reach an instance: it gets its own database,
# cache, metrics directory and settings, or none.
NOT_INHERITED = (
    "DATABASE_URL",
    "DATABASE_REPLICA_URL",
    "REDIS_URL",
    "SENTRY_DSN",
    "PROMETHEUS_MULTIPROC_DIR",
    "DJANGO_SETTINGS_MODULE",
)
# How much of gunicorn's log an error shows.
LOG_TAIL = 4000


def free_port(first: int = 0, last: int = 0) -> int:
    """A loopback port that nothing listens on: one the kernel picks, or the first free one in
    [first, last] when a range is given."""
    for port in range(first, last + 1) if first else [0]:
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
            chosen: int = probe.getsockname()[1]
            return chosen
    raise RuntimeError(f"no free loopback port between {first} and {last}")


def keep_cookies(jar: dict[str, str], set_cookie: Iterable[str]) -> None:
    """What a browser does with a response's Set-Cookie headers: keeps each cookie in `jar`, or
    forgets it when it is expired (Max-Age=0, as a logout sends)."""
    for header in set_cookie:
        for name, morsel in SimpleCookie(header).items():
            if morsel["max-age"] == "0":
                jar.pop(name, None)
            else:
                jar[name] = morsel.value


def production_env(*, database_url: str, secret_key: str, drop: Iterable[str] = (), **settings: str) -> dict[str, str]:
    """This process's environment without `NOT_INHERITED` and `drop`, with production settings on
    `database_url`; `settings` are more variables, such as REDIS_URL."""
    dropped = {*NOT_INHERITED, *drop}
    env = {name: value for name, value in os.environ.items() if name not in dropped}
    env.update(DEBUG="false", SECRET_KEY=secret_key, ALLOWED_HOSTS=HOST, DATABASE_URL=database_url)
    # Production refuses to start without EMAIL_URL (portal/checks.py): mail goes to the server's
    # log here, as intended, unless `settings` says otherwise.
    env["EMAIL_URL"] = "consolemail://"
    env.update(settings)
    return env


@dataclass
class Gunicorn:
    """One gunicorn master on `port`, its output in `log`. `own_group`: started in a process group
    of its own, which `stop` ends as a whole (the master and any worker it left behind)."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path
    own_group: bool = field(default=False, kw_only=True)
    grace: float = field(default=30, kw_only=True)  # seconds the workers get to finish at `stop`

    @classmethod
    def start(
        cls,
        env: Mapping[str, str],
        *,
        port: int,
        workers: int,
        log: Path,
        cwd: Path = ROOT,
        probe: str = "/health/live",
        timeout: float = 60,
        own_group: bool = False,
        **fields: Any,
    ) -> Self:
        """gunicorn with deploy/gunicorn.conf.py (of `cwd`) on `port` with `workers` workers, back
        once `probe` answers 200 and every worker is up. `fields`: those of a subclass."""
        env = {**env, "GUNICORN_BIND": f"{HOST}:{port}", "GUNICORN_WORKERS": str(workers)}
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"],
                cwd=cwd,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=own_group,  # then a Ctrl-C on the terminal is ours to handle
            )
        server = cls(port, process, log, own_group=own_group, **fields)
        server.wait_until_up(workers, probe=probe, timeout=timeout)
        return server

    @property
    def host(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def worker_pids(self) -> set[int]:
        try:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        except OSError:
            return set()
        return {int(pid) for pid in children}

    def answers(self, path: str = "/health/live") -> bool:
        """Whether `path` answers 200, straight to the instance over plain HTTP as a probe does."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as response:  # noqa: S310 (our loopback URL)
                return bool(response.status == 200)
        except OSError:
            return False

    def wait_until_up(self, workers: int, *, probe: str = "/health/live", timeout: float = 60) -> None:
        """Back once `probe` answers and all `workers` are up. If gunicorn exits, does not answer
        within `timeout` seconds, or the wait is interrupted, it is stopped and the error says why."""
        deadline = time.monotonic() + timeout
        try:
            while not (self.answers(probe) and len(self.worker_pids()) == workers):
                if self.process.poll() is not None:
                    raise RuntimeError(f"gunicorn ({self.log}) exited with {self.process.returncode}:\n{self.tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn ({self.log}) did not answer within {timeout:g} s:\n{self.tail()}")
                time.sleep(0.2)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Graceful (SIGTERM: workers finish their requests), then SIGKILL after `grace` seconds;
        safe to call twice."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=self.grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.own_group:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)  # the group we started: master and workers
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self) -> str:
        return self.log_text()[-LOG_TAIL:]

    def log_once(self, pattern: str, count: int = 1, timeout: float = 10) -> str:
        """The log once the regular expression `pattern` matches `count` times in it (or at the
        deadline): gunicorn writes an access line after the response has gone out, so a client
        can hold the response before its line is in the file."""
        deadline = time.monotonic() + timeout
        while len(re.findall(pattern, text := self.log_text())) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return text
