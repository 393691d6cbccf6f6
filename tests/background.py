"""Real Celery processes for the tests of background work: workers and beats started with
`celery -A portal …` against the real Redis (a broker database of their own) and the test
database, and the in-process app switched from eager to queueing for the test's duration."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from django.conf import settings
from django.db import connection

from portal.celery import app

ROOT = Path(__file__).resolve().parent.parent
CELERY = str(Path(sys.executable).with_name("celery"))


def broker_url() -> str:
    """The tests' broker: TEST_CELERY_BROKER_URL, else the Redis of REDIS_URL one database up
    (REDIS_URL=redis://…/9 gives redis://…/10), so the cache the test clears is not the queue."""
    if explicit := os.environ.get("TEST_CELERY_BROKER_URL"):
        return explicit
    parts = urlsplit(os.environ["REDIS_URL"])
    number = int(parts.path.strip("/") or 0) + 1
    return urlunsplit(parts._replace(path=f"/{number}"))


def database_url() -> str:
    """The test database (test_<name>) as a URL, for processes outside this one."""
    db = connection.settings_dict
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    return f"postgres://{quote(db['USER'])}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def environment(**extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": os.environ["REDIS_URL"],
        "CELERY_BROKER_URL": broker_url(),
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(extra)
    return env


@contextmanager
def queueing() -> Iterator[str]:
    """This process sends tasks to the broker instead of running them: as the web process does
    in production. The broker's queue starts empty."""
    url = broker_url()
    saved = (app.conf.broker_url, app.conf.task_always_eager, settings.CELERY_TASK_ALWAYS_EAGER)
    app.conf.broker_url = url
    app.conf.task_always_eager = False
    settings.CELERY_TASK_ALWAYS_EAGER = False
    _forget_connections()
    app.control.purge()
    try:
        yield url
    finally:
        app.control.purge()
        app.conf.broker_url, app.conf.task_always_eager, settings.CELERY_TASK_ALWAYS_EAGER = saved
        _forget_connections()


def _forget_connections() -> None:
    """Forget the app's broker connection pools, made for whatever broker it had before (kombu
    keeps one pool per broker URL, reused when the app asks again)."""
    app._pool = None
    app.amqp._producer_pool = None


class Process:
    """A `celery -A portal …` process, its output in a file."""

    def __init__(self, log: Path, *args: str, **env: Any) -> None:
        self.log = log
        self._file = log.open("wb")
        self.popen = subprocess.Popen(
            [CELERY, "-A", "portal", *args],
            cwd=ROOT,
            env=environment(**env),
            stdout=self._file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 20) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._file.close()
        return self.popen.returncode


def start_worker(log: Path, *, concurrency: int = 4, **env: Any) -> Process:
    """A worker (threads: light on a 2-core machine, and concurrent enough to race), ready once
    it answers a ping."""
    name = f"test-{uuid.uuid4().hex[:8]}@localhost"
    worker = Process(
        log,
        "worker",
        "--pool=threads",
        f"--concurrency={concurrency}",
        "--loglevel=INFO",
        f"--hostname={name}",
        "--without-gossip",
        "--without-mingle",
        **env,
    )
    try:
        wait_for(lambda: bool(app.control.ping(destination=[name], timeout=0.5)), timeout=30, what=f"{name} to start")
    except BaseException:
        worker.stop()
        raise
    return worker


def start_beat(log: Path, schedule_file: Path, **env: Any) -> Process:
    return Process(log, "beat", "--loglevel=INFO", f"--schedule={schedule_file}", "--pidfile=", **env)


def wait_for(predicate: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what}")
        time.sleep(interval)
