"""The drills' private world on loopback: a snapshot of the code, a PostgreSQL cluster and a Redis
server of their own, and the portal under gunicorn with production settings.

Nothing shared is touched: the PostgreSQL on 5432 and the Redis on 6379 serve other people's
tests, so the drills stop, restart and freeze only servers they started themselves, on ports of
their own. The portal runs from a copy of the working tree taken when the drills start (its own
`var/` for static files and metrics), so edits made meanwhile cannot change a run halfway.

Everything started here is stopped, and the temporary directory removed, by `Lab.close()`, which
the runner calls on success, failure and Ctrl-C alike.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench.drills.load import Account
from tools.servers import HOST, Gunicorn, free_port, production_env

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
SECRET_KEY = "drill-only-secret-key-never-used-anywhere-else-0123456789abcdef"  # noqa: S105
METRICS_TOKEN = "drill-metrics-token"  # noqa: S105
WEBHOOK_SECRET = "whsec_drill_only_webhook_signing_secret"  # noqa: S105
PASSWORD = "a-long-password-for-the-drills"  # noqa: S105
# The API limits are per minute; the drills' readers would meet them within seconds.
UNLIMITED = "1000000000"
READERS = 5
LOGIN_ACCOUNTS = 3
SEED_DATABASE = "drill_seed"

# Not copied into the snapshot: dependencies, local state, caches and outputs, by path from the root.
_NOT_COPIED = {
    ".git", ".venv", "node_modules", "var", ".env", "test-artifacts", ".mypy_cache", ".ruff_cache",
    ".pytest_cache", ".hypothesis", "docs/images", "bench/results", "bench/drills/results",
}  # fmt: skip


def _not_copied(directory: str, names: list[str]) -> set[str]:
    relative = Path(directory).relative_to(ROOT)
    return {name for name in names if name == "__pycache__" or (relative / name).as_posix() in _NOT_COPIED}


def _run(
    command: list[str], *, timeout: float = 120, env: dict[str, str] | None = None, cwd: Path | None = None
) -> str:
    done = subprocess.run(  # noqa: S603 (fixed commands on our own files)
        command, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])}… exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


# --- Redis --------------------------------------------------------------------------------------


class PrivateRedis:
    """redis-server on a port of its own, in memory only. `stop()`/`start()` take it away and
    bring it back empty on the same port; `freeze()`/`thaw()` stop and continue the process,
    which leaves its listening socket accepting connections in the kernel while nothing answers."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port(6380, 6399)
        self.process: subprocess.Popen[bytes] | None = None
        self.frozen = False

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        log = (self.directory / "redis.log").open("ab")
        command = ["redis-server", "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no"]
        command += ["--daemonize", "no", "--dir", str(self.directory)]
        self.process = subprocess.Popen(  # noqa: S603
            command,  # redis-server from the PATH, as installed by the distribution
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C on the terminal is ours to handle, not Redis's
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.command("PING") == "+PONG":
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            if self.frozen:
                self.thaw()
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def freeze(self) -> None:
        if self.process is None:
            raise RuntimeError("Redis is not running")
        self.process.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        if self.process is None:
            raise RuntimeError("Redis is not running")
        self.process.send_signal(signal.SIGCONT)
        self.frozen = False

    def command(self, *words: str) -> str:
        """One command over a bare socket; its first reply line, or "" when Redis does not answer."""
        request = f"*{len(words)}\r\n" + "".join(f"${len(word)}\r\n{word}\r\n" for word in words)
        try:
            with socket.create_connection((HOST, self.port), timeout=1) as connection:
                connection.sendall(request.encode())
                return connection.recv(1024).decode().split("\r\n")[0]
        except OSError:
            return ""


# --- PostgreSQL ---------------------------------------------------------------------------------


class PrivatePostgres:
    """A PostgreSQL 15 cluster of its own (Debian's binaries), run as the `postgres` user since
    PostgreSQL refuses to run as root; trust authentication, loopback only."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.log = directory / "postgres.log"
        self.port = free_port(5440, 5499)
        directory.mkdir()
        shutil.chown(directory, "postgres", "postgres")

    def _as_postgres(self, *command: str, timeout: float = 120) -> str:
        return _run(["runuser", "-u", "postgres", "--", *command], timeout=timeout)

    def init(self) -> None:
        self._as_postgres(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--locale=C", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses={HOST} -k {self.directory} -c max_connections=200"
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def kill(self) -> None:
        """Last resort at clean-up: the postmaster we started, if `stop` could not end it."""
        with suppress(OSError, ValueError):
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)

    def url(self, database: str) -> str:
        return f"postgres://postgres@{HOST}:{self.port}/{database}"

    def execute(self, statement: str, database: str = "postgres") -> None:
        with psycopg.connect(self.url(database), autocommit=True) as connection:
            connection.execute(statement.encode())

    def query(self, statement: str, database: str) -> list[tuple[object, ...]]:
        with psycopg.connect(self.url(database), autocommit=True) as connection:
            return connection.execute(statement.encode()).fetchall()


# --- The portal -----------------------------------------------------------------------------------


def _documented_variables(snapshot: Path) -> set[str]:
    text = (snapshot / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))


def portal_env(snapshot: Path, *, database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """Production settings pointing at the private servers. Every variable the portal reads
    (those of `.env.example`) is dropped from the inherited environment first."""
    return production_env(
        database_url=database_url,
        secret_key=SECRET_KEY,
        drop=_documented_variables(snapshot) | {"CI"},
        REDIS_URL=redis_url,
        METRICS_TOKEN=METRICS_TOKEN,
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        API_RATE_LIMIT_PER_TOKEN=UNLIMITED,
        API_RATE_LIMIT_PER_IP=UNLIMITED,
        EMAIL_URL="dummymail://",
        **extra,
    )


# Gunicorn's access log (deploy/gunicorn.conf.py): client, time, request, status, bytes, ms, pid.
_ACCESS = re.compile(
    r'\[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<path>\S+) [^"]*" '
    r"(?P<status>\d{3}) \S+ (?P<ms>\d+)ms pid=<?(?P<pid>\d+)"
)


@dataclass(frozen=True)
class Served:
    """One line of the access log: what the worker measured, from the request to its answer."""

    finished: float  # wall clock, whole seconds
    method: str
    path: str
    status: int
    ms: int
    pid: int


def access_log(text: str) -> list[Served]:
    served = []
    for match in _ACCESS.finditer(text):
        when = dt.datetime.strptime(match["time"], "%d/%b/%Y:%H:%M:%S %z").timestamp()
        served.append(
            Served(when, match["method"], match["path"], int(match["status"]), int(match["ms"]), int(match["pid"]))
        )
    return served


def server_kind(line: Served) -> str:
    kinds = {
        "/dashboard/": "dashboard",
        "/profile/": "profile",
        "/api/v1/me": "api_me",
        "/api/v1/activity": "api_activity",
        "/health/ready": "ready",
        "/health/live": "live",
        "/tokens/": "tokens",
        "/webhooks/stripe/": "webhook",
    }
    if line.path == "/accounts/login/":
        return "login" if line.method == "POST" else "login_page"
    if line.path == "/api/v1/me" and line.method == "PATCH":
        return "api_patch_me"
    return kinds.get(line.path, "other")


# --- Seed data ------------------------------------------------------------------------------------

_SEED = """
import json
from allauth.account.models import EmailAddress
from members.models import TokenScope
from members.services import create_api_token, create_member, record_activity
from members.models import Action
from subscriptions.models import Plan

def member(email, scopes):
    m = create_member(email=email, password=PASSWORD, display_name=email.split("@")[0])
    EmailAddress.objects.create(user=m, email=m.email, primary=True, verified=True)
    for _ in range(30):
        record_activity(member=m, action=Action.LOGIN, ip="127.0.0.1", user_agent="seed")
    if not scopes:
        return ""
    return create_api_token(member=m, name="drill", scopes=scopes, expires_at=None)[1]

out = {
    "readers": [member(f"reader{i}@drill.example", [TokenScope.READ]) for i in range(READERS)],
    "logins": [member(f"login{i}@drill.example", []) or f"login{i}@drill.example" for i in range(LOGIN_ACCOUNTS)],
    "writer": member("writer@drill.example", [TokenScope.READ, TokenScope.WRITE]),
}
Plan.objects.filter(code="basic").update(stripe_price_id="price_drill_basic")
print("SEED " + json.dumps(out))
"""


@dataclass(frozen=True)
class Accounts:
    readers: list[Account]
    logins: list[Account]
    writer: Account


# --- The lab --------------------------------------------------------------------------------------


class Lab:
    """The snapshot and the private servers, shared by the drills of one run; each drill gets a
    fresh copy of the seeded database, an emptied Redis and a gunicorn of its own."""

    def __init__(
        self,
        *,
        log: bool = True,
        keep_logs: Path | None = None,
        suffix: str = "",
        settings: str = "",
        gunicorn_args: str = "",
    ) -> None:
        """`settings`: Python run after `from portal.settings import *` (a module of the snapshot
        then serves as the settings), and `gunicorn_args`: extra command-line arguments for
        gunicorn (GUNICORN_CMD_ARGS). Both to try a fix without editing the tree."""
        self.verbose = log
        self.settings = settings
        self.gunicorn_args = gunicorn_args
        self.keep_logs = keep_logs  # where each drill's gunicorn log is copied, as <drill><suffix>.gunicorn.log
        self.suffix = suffix
        self.directory = Path(tempfile.mkdtemp(prefix="portal-drills-"))
        self.directory.chmod(0o711)  # the postgres user must reach its own directory inside
        self.snapshot = self.directory / "portal"
        self.redis = PrivateRedis(self.directory)
        self.postgres = PrivatePostgres(self.directory / "pg")
        self.portals: list[Gunicorn] = []
        self.accounts: Accounts | None = None

    def say(self, message: str) -> None:
        if self.verbose:
            print(f"  [{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def open(self) -> Accounts:
        self.say(f"snapshot of {ROOT} in {self.snapshot}")
        shutil.copytree(ROOT, self.snapshot, ignore=_not_copied, symlinks=True)
        if self.settings:
            (self.snapshot / "drill_settings.py").write_text(
                f"from portal.settings import *  # noqa: F403\n\n{self.settings}\n"
            )
        self.say(f"PostgreSQL on {HOST}:{self.postgres.port}, Redis on {HOST}:{self.redis.port}")
        self.postgres.init()
        self.postgres.start()
        self.redis.start()
        self.postgres.execute(f'CREATE DATABASE "{SEED_DATABASE}"')
        env = self.env(SEED_DATABASE)
        self.say("migrate, collectstatic, seed")
        self.manage(env, "migrate", "--no-input", "-v", "0")
        self.manage(env, "collectstatic", "--no-input", "-v", "0")
        script = f"PASSWORD = {PASSWORD!r}\nREADERS = {READERS}\nLOGIN_ACCOUNTS = {LOGIN_ACCOUNTS}\n{_SEED}"
        output = self.manage(env, "shell", "-c", script)
        seeded = json.loads(output.split("SEED ", 1)[1])
        self.accounts = Accounts(
            readers=[Account(f"reader{i}@drill.example", PASSWORD, token) for i, token in enumerate(seeded["readers"])],
            logins=[Account(email, PASSWORD) for email in seeded["logins"]],
            writer=Account("writer@drill.example", PASSWORD, seeded["writer"]),
        )
        return self.accounts

    @property
    def seeded(self) -> Accounts:
        if self.accounts is None:
            raise RuntimeError("Lab.open() has not run")
        return self.accounts

    def env(self, database: str, **extra: str) -> dict[str, str]:
        if self.settings:
            extra.setdefault("DJANGO_SETTINGS_MODULE", "drill_settings")
        if self.gunicorn_args:
            extra.setdefault("GUNICORN_CMD_ARGS", self.gunicorn_args)
        return portal_env(self.snapshot, database_url=self.postgres.url(database), redis_url=self.redis.url, **extra)

    def manage(self, env: dict[str, str], *args: str) -> str:
        return _run([sys.executable, "manage.py", *args], env=env, cwd=self.snapshot, timeout=300)

    @contextmanager
    def portal(self, drill: str, *, workers: int = 2) -> Iterator[tuple[Gunicorn, str]]:
        """A fresh database for `drill` (a copy of the seeded one), Redis emptied, and gunicorn
        with deploy/gunicorn.conf.py on it. Yields the portal and the database's name."""
        database = f"drill_{drill}"
        self.postgres.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        self.postgres.execute(f'CREATE DATABASE "{database}" TEMPLATE "{SEED_DATABASE}"')
        self.redis.command("FLUSHALL")
        run_dir = self.directory / drill
        run_dir.mkdir()
        log = run_dir / "gunicorn.log"
        env = self.env(database, PROMETHEUS_MULTIPROC_DIR=str(run_dir / "prometheus"))
        portal = None
        try:
            portal = Gunicorn.start(
                env,
                port=free_port(18400, 18499),
                workers=workers,
                log=log,
                cwd=self.snapshot,
                timeout=90,
                own_group=True,  # its own process group, stopped as one at the end
                grace=40,
            )
            self.portals.append(portal)
            self.say(f"gunicorn on {portal.host}, workers {sorted(portal.worker_pids())}")
            yield portal, database
        finally:
            if portal is not None:
                portal.stop()
                self.portals.remove(portal)
            if self.keep_logs is not None:
                self.keep_logs.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(log, self.keep_logs / f"{drill}{self.suffix}.gunicorn.log")

    def heal(self) -> None:
        """Both servers up and answering, whatever an earlier drill left behind."""
        if self.redis.frozen:
            self.redis.thaw()
        if self.redis.process is None or self.redis.process.poll() is not None:
            self.redis.start()
        if not (self.postgres.data / "postmaster.pid").exists():
            self.postgres.start()

    def close(self) -> None:
        """Stop everything this lab started and remove its directory; safe to call twice."""
        for portal in list(self.portals):
            with suppress(Exception):
                portal.stop()
        with suppress(Exception):
            self.redis.stop()
        try:
            self.postgres.stop("immediate")
        except Exception:
            self.postgres.kill()
        shutil.rmtree(self.directory, ignore_errors=True)
