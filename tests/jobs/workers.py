"""Real Celery workers for the tests, and a mail server for them to send to.

`Worker.start` runs `celery -A portal worker` as production does (production settings, but
tests.jobs.worker_settings' quicker sweep for dead workers' tasks), in a process group of its
own, on the test run's broker (settings' CELERY_BROKER_URL: REDIS_URL's next database) and
database: pytest-django's test database when on PostgreSQL (the test must be
`transaction=True` so the worker sees its rows), else a SQLite file of its own. It imports
tests/jobs/tasks.py. `SmtpSink` is a small SMTP server in a thread that can refuse its first
connections with 421, as a busy mail server does.
"""

from __future__ import annotations

import email
import os
import signal
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from django.conf import settings
from django.db import connection

from tools.servers import HOST, ROOT, production_env

SECRET_KEY = "a-long-random-secret-key-for-the-worker-tests-only-0123456789abcdef"
LOG_TAIL = 4000


def broker() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL, decode_responses=True)


def empty_broker() -> None:
    """Nothing queued, held or bookkept from an earlier test: the broker's database is the test
    run's own (REDIS_URL's next one)."""
    client = broker()
    keys = [*client.scan_iter("celery*"), *client.scan_iter("unacked*"), *client.scan_iter("jobs-test:*")]
    if keys:
        client.delete(*keys)


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def worker_database_url(tmp_path: Path) -> str:
    if connection.vendor == "postgresql":
        server = urlsplit(os.environ["DATABASE_URL"])
        return urlunsplit(server._replace(path=f"/{connection.settings_dict['NAME']}"))
    return f"sqlite:///{tmp_path / 'worker.sqlite3'}"


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    hostname: str = field(default="")

    @classmethod
    def start(cls, tmp_path: Path, name: str, **extra: str) -> Worker:
        """One worker with one pool process, back once it is consuming."""
        env = production_env(
            database_url=worker_database_url(tmp_path),
            secret_key=SECRET_KEY,
            REDIS_URL=os.environ.get("REDIS_URL", ""),
            CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
            CELERY_TASK_ALWAYS_EAGER="false",
            DJANGO_SETTINGS_MODULE="tests.jobs.worker_settings",
            **extra,
        )
        log = tmp_path / f"worker-{name}.log"
        command = [
            sys.executable, "-m", "celery", "-A", "portal", "worker", "--hostname", f"{name}@%h",
            "--concurrency", "1", "--loglevel", "INFO", "--include", "tests.jobs.tasks",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        with log.open("wb") as output:
            process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        worker = cls(name, process, log)
        try:
            wait_for(worker.ready, timeout=60, what=f"worker {name} to be ready")
        except BaseException:
            worker.kill()
            raise
        return worker

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"worker {self.name} exited with {self.process.returncode}:\n{self.tail()}")
        for line in self.log_text().splitlines():
            if line.rstrip().endswith(" ready.") and f"{self.name}@" in line:
                self.hostname = line.split()[-2]
                return True
        return False

    def kill(self) -> None:
        """SIGKILL to the worker and its pool: no warm shutdown, nothing handed back."""
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def stop(self, grace: float = 30) -> None:
        """SIGTERM (warm shutdown: the running task finishes), then SIGKILL after `grace` seconds."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace)
        self.kill()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self) -> str:
        return self.log_text()[-LOG_TAIL:]


@contextmanager
def running_workers(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """A starter of workers, every one stopped at the end; tasks queued by the test go to them."""
    from portal.celery import app

    started: list[Worker] = []

    def start(name: str, **extra: str) -> Worker:
        worker = Worker.start(tmp_path, name, **extra)
        started.append(worker)
        return worker

    empty_broker()
    app.conf.task_always_eager = False
    try:
        yield start
    finally:
        app.conf.task_always_eager = True
        for worker in started:
            worker.stop()
        empty_broker()


# --- A mail server -------------------------------------------------------------------------------


class _SmtpHandler(socketserver.StreamRequestHandler):
    server: _SmtpServer

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        sink = self.server.sink
        with sink.lock:
            sink.connections += 1
            refuse = sink.connections <= sink.refuse_first
        if refuse:
            self.reply("421 4.3.2 Service not available, try again later")
            return
        self.reply("220 sink ESMTP")
        recipients: list[str] = []
        while line := self.rfile.readline():
            command = line.decode(errors="replace").strip()
            verb = command[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250 sink")
            elif verb == "MAIL":
                recipients = []
                self.reply("250 OK")
            elif verb == "RCPT":
                recipients.append(command.split(":", 1)[1].strip(" <>"))
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                lines = []
                while (data := self.rfile.readline()) not in (b".\r\n", b""):
                    lines.append(data[1:] if data.startswith(b"..") else data)
                with sink.lock:
                    sink.messages.append(email.message_from_bytes(b"".join(lines)))
                    sink.recipients.append(recipients)
                self.reply("250 OK queued")
            elif verb == "QUIT":
                self.reply("221 Bye")
                return
            else:
                self.reply("250 OK")


class _SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    sink: SmtpSink


@dataclass
class SmtpSink:
    """Accepts every mail on a free loopback port, after refusing its first `refuse_first`
    connections with 421."""

    refuse_first: int = 0
    connections: int = 0
    messages: list[Message] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def serving(self) -> Iterator[str]:
        """Yields its EMAIL_URL."""
        server = _SmtpServer((HOST, 0), _SmtpHandler)
        server.sink = self
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"smtp://{HOST}:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
