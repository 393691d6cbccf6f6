"""`make bench`: the portal's hot paths under load, each beside a bare-Django baseline measured in
the same run, and the effect of the cache, the activity index and the monitoring stack.

    python bench/run.py [--members 100000] [--activity 10000000] [--duration 15] [--connections 8]

1. Data: the PostgreSQL database `bench_m<members>_a<activity>` is created, migrated and loaded
   with `seed_demo --force` unless it already holds that many bench members and activity rows,
   so a second run reuses it. Redis database 5 (`--redis-url`) is emptied first.
2. Servers: gunicorn with deploy/gunicorn.conf.py and production settings (DEBUG off, Redis, the
   Sentry SDK sending to a stub on loopback), and the baseline (bench/baseline/) under the same
   configuration and worker count. The API rate limits are raised through the environment and
   the admin's second-factor requirement is turned off (ADMIN_REQUIRE_MFA=false); the login POST
   path runs on a server whose login rate limits are lifted (bench/settings_login.py).
3. Load: wrk (bench/wrk.lua) from its own process on loopback, at a fixed number of connections,
   after a short warm-up, each path right after a short run of the baseline. Per path: requests
   per second and its ratio to that baseline's, p50,
   p95 and p99 latency, responses that were not 2xx/3xx and socket errors, per request the SQL
   queries of the view (what the tests pin), the SQL statements the process sent and the cache
   hit rate (the Prometheus counters that /metrics serves, before and after), and the peak RSS
   of the largest gunicorn worker (read from /proc while the path runs).
4. Effects, one thing turned off at a time, the two sides alternated `--rounds` times: the cache
   (bench/settings_nocache.py) and the monitoring stack (bench/settings_nomonitoring.py); and the
   activity composite index, dropped on the bench database (and always rebuilt afterwards), for
   the busiest member's pages and a deep page of a member with a thousandth of the rows, with the
   page's query also timed alone (EXPLAIN ANALYZE).
5. Output: Markdown tables on stdout, JSON and a PNG chart of latency percentiles in
   bench/results/ (timestamped, and `<name>.json`/`<name>.png`, `latest` by default).

The machine is shared and noisy: read the ratios, not the absolute numbers (docs/performance.md).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gzip
import http.client
import http.server
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
WRK_SCRIPT = ROOT / "bench" / "wrk.lua"
HOST = "127.0.0.1"
SECRET_KEY = "bench-only-secret-key-never-used-anywhere-else-0123456789abcdef"  # noqa: S105
METRICS_TOKEN = "bench-metrics-token"  # noqa: S105
# High enough that no API request of a run is refused (the limits are per minute).
UNLIMITED = "1000000000"
COMPOSITE_INDEX = "activity_member_recent_idx"
BENCH_TOKEN_NAME = "bench run"  # noqa: S105 (a token's name, not a secret)
# A demo member (its address is verified), used only by the login POST path: each login writes
# to the member's activity, which would keep invalidating the cache of a member other paths read.
LOGIN_EMAIL = "alice@example.com"
# Where deep pages start: this far down the busiest member's log, in rows.
DEEP_FRACTION = 0.9
# Fresh members per member page for the cold query counts (`cold_queries`).
COLD_PROBES = 20
PROXY = {"X-Forwarded-Proto": "https"}  # what the TLS proxy in front of the portal adds


# --- Options -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    members: int
    activity: int
    duration: int
    warmup: int
    baseline_seconds: int
    connections: int
    threads: int
    workers: int
    rounds: int
    pool: int
    traces_sample_rate: float
    postgres: str
    redis_url: str
    name: str
    profile: tuple[str, ...]

    @property
    def database(self) -> str:
        return f"bench_m{self.members}_a{self.activity}"

    @property
    def database_url(self) -> str:
        return f"{self.postgres.rstrip('/')}/{self.database}"


def parse_options(argv: Sequence[str] | None = None) -> Options:
    cpus = len(os.sched_getaffinity(0))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=100_000, help="bench members in the database")
    parser.add_argument("--activity", type=int, default=10_000_000, help="bench activity rows in the database")
    parser.add_argument("--duration", type=int, default=15, help="seconds of load per path (and per round)")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of unmeasured load before each path")
    parser.add_argument(
        "--baseline-seconds", type=int, default=5, help="seconds of baseline measured just before each path"
    )
    parser.add_argument("--connections", type=int, default=8, help="concurrent connections (wrk -c)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (wrk -t)")
    parser.add_argument(
        "--workers", type=int, default=2 * cpus + 1, help="gunicorn workers per server (deploy default: 2 x CPUs + 1)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternations of each effect's on and off sides")
    parser.add_argument("--pool", type=int, default=6000, help="members logged in for the cold dashboard")
    parser.add_argument(
        "--traces-sample-rate",
        type=float,
        default=float(os.environ.get("SENTRY_TRACES_SAMPLE_RATE") or 0.1),
        help="SENTRY_TRACES_SAMPLE_RATE of the servers with monitoring (default: the environment's, else 0.1)",
    )
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/5", help="Redis database the bench may empty")
    parser.add_argument("--name", default="latest", help="results are also written to bench/results/<name>.json|png")
    parser.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="PATH",
        help="sample the portal's workers with py-spy while this path (a key such as dashboard_warm) runs on "
        "its production server; the stacks go to bench/results/profile-PATH.txt and a summary to stdout",
    )
    args = parser.parse_args(argv)
    return Options(**{**vars(args), "profile": tuple(args.profile)})


# --- Database and data -------------------------------------------------------------------------


def base_env(options: Options) -> dict[str, str]:
    """Production settings on the bench database and Redis, for the servers and `manage.py`.

    Variables a developer's environment or `.env` may hold are set explicitly, so none leaks in."""
    env = {name: value for name, value in os.environ.items() if name != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DEBUG="false",
        SECRET_KEY=SECRET_KEY,
        ALLOWED_HOSTS=HOST,
        DATABASE_URL=options.database_url,
        DATABASE_REPLICA_URL="",
        REDIS_URL=options.redis_url,
        METRICS_TOKEN=METRICS_TOKEN,
        HEALTH_TOKEN="",
        SENTRY_DSN="",
        STRIPE_SECRET_KEY="",
        STRIPE_WEBHOOK_SECRET="",
        EMAIL_URL="dummymail://",
        API_RATE_LIMIT_PER_TOKEN=UNLIMITED,
        API_RATE_LIMIT_PER_IP=UNLIMITED,
        ADMIN_REQUIRE_MFA="false",
        # A sync worker needs one connection per request, plus one per health-check thread:
        # small pools keep three servers' idle connections well under max_connections.
        DATABASE_POOL_MIN="2",
        DATABASE_POOL_MAX="10",
    )
    return env


def manage(options: Options, *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=base_env(options), check=True)  # noqa: S603


def prepare_database(options: Options) -> None:
    """Create, migrate and load the bench database, unless it already holds the requested data."""
    import psycopg

    with psycopg.connect(f"{options.postgres.rstrip('/')}/postgres", autocommit=True) as server:
        exists = server.execute("SELECT 1 FROM pg_database WHERE datname = %s", [options.database]).fetchone()
        if not exists:
            print(f"Creating database {options.database}")
            server.execute(f'CREATE DATABASE "{options.database}"')
    manage(options, "migrate", "--no-input", "-v", "0")
    with psycopg.connect(options.database_url) as bench:
        (members,) = bench.execute(
            "SELECT count(*) FROM members_member WHERE email LIKE %s", ["%@bench.example"]
        ).fetchone() or (0,)
        (activity,) = bench.execute(
            "SELECT count(*) FROM members_activitylog a JOIN members_member m ON m.id = a.member_id "
            "WHERE m.email LIKE %s",
            ["%@bench.example"],
        ).fetchone() or (0,)
    # `>=` for activity: the login POST path adds rows to a demo member's log, never a bench one's,
    # but an interrupted earlier run may have left a few.
    if members == options.members and activity >= options.activity:
        print(f"Reusing {options.database}: {members:,} bench members, {activity:,} activity rows")
    else:
        print(f"Loading {options.database}: {members:,} -> {options.members:,} members, {options.activity:,} rows")
        started = time.monotonic()
        manage(options, "seed_demo", "--force", "--members", str(options.members), "--activity", str(options.activity))
        print(f"Loaded in {time.monotonic() - started:.0f} s")
    manage(options, "collectstatic", "--no-input", "-v", "0")


def setup_django(options: Options) -> None:
    """Django in this process, on the bench database, to prepare members, sessions and tokens."""
    os.environ.update(base_env(options))
    os.environ["DATABASE_POOL_MIN"] = "1"
    import django

    django.setup()


@dataclass
class Log:
    """A member's activity log: how many rows, and the cursor of a page DEEP_FRACTION down it."""

    member_id: int
    rows: int
    deep_offset: int
    deep_cursor: str


@dataclass
class Subject:
    """Who the member pages and the API are measured as: the busiest active member (the deepest
    log). The index effect is also measured on a member with a thousandth of the rows (`sparse`):
    without the index, how long a page takes depends on how dense the member's rows are."""

    member_id: int
    email: str
    log: Log
    sparse: Log
    api_token: str = ""


def prepare_data(options: Options) -> Subject:
    """Empty the bench's Redis database and sessions, make sure the composite index exists
    (an earlier run killed outright may have left it dropped), and pick the subject member."""
    from allauth.account.models import EmailAddress
    from django.contrib.sessions.models import Session
    from django.db import connection
    from django_redis import get_redis_connection

    from members.models import ActivityLog, ApiToken, Member, MemberStatus, TokenScope
    from members.pagination import cursor_at
    from members.services import create_api_token

    get_redis_connection("default").flushdb()
    Session.objects.all().delete()
    restore_index()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.member_id, count(*) FROM members_activitylog a JOIN members_member m ON m.id = a.member_id "
            "WHERE m.status = %s AND m.email LIKE %s GROUP BY a.member_id",
            [MemberStatus.ACTIVE, "%@bench.example"],
        )
        counts: list[tuple[int, int]] = cursor.fetchall()
    if not counts:
        raise SystemExit("No active bench member has activity: is the bench database loaded?")
    busiest = max(counts, key=lambda row: (row[1], -row[0]))
    sparse = min(counts, key=lambda row: (abs(row[1] - options.activity / 1000), row[0]))

    def log(member_id: int, rows: int) -> Log:
        offset = int(rows * DEEP_FRACTION)
        created_at, pk = (
            ActivityLog.objects.filter(member_id=member_id).recent().values_list("created_at", "id")[offset]
        )
        return Log(member_id, rows, offset, cursor_at(created_at, pk))

    member = Member.objects.get(pk=busiest[0])
    # Bench members have no EmailAddress row; allauth's mandatory verification would stop the login.
    EmailAddress.objects.update_or_create(user=member, email=member.email, defaults={"verified": True, "primary": True})
    ApiToken.objects.filter(member=member, name=BENCH_TOKEN_NAME).delete()
    _, plain = create_api_token(member=member, name=BENCH_TOKEN_NAME, scopes=[TokenScope.READ], expires_at=None)
    return Subject(member.pk, member.email, log(*busiest), log(*sparse), plain)


def log_in_pool(exclude: Sequence[int], count: int, skip: int = 0) -> list[str]:
    """Session cookies of `count` active bench members (after the first `skip`), none of whom
    has anything cached."""
    from members.models import Member, MemberStatus

    members = (
        Member.objects.filter(status=MemberStatus.ACTIVE, email__endswith="@bench.example")
        .exclude(pk__in=exclude)
        .order_by("pk")[skip : skip + count]
    )
    return log_in_members(members)


def log_in_members(members: Iterable[Any]) -> list[str]:
    """Session cookies of these members: the sessions that Django's login would make, written in
    bulk to the database and the cache as the `cached_db` engine keeps them, without a password
    hash each."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.base import VALID_KEY_CHARS
    from django.contrib.sessions.backends.cached_db import SessionStore
    from django.contrib.sessions.models import Session
    from django.core.cache import caches
    from django.utils import timezone
    from django.utils.crypto import get_random_string

    from members.middleware import AUTHENTICATED_AT, LAST_SEEN_AT

    now = timezone.now()
    expires = now + dt.timedelta(seconds=settings.SESSION_COOKIE_AGE)
    rows, cached = [], {}
    for member in members:
        data = {
            SESSION_KEY: str(member.pk),
            BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
            HASH_SESSION_KEY: member.get_session_auth_hash(),
            # As SessionTimeoutMiddleware would set them, so that no request has to save the session.
            AUTHENTICATED_AT: now.timestamp(),
            LAST_SEEN_AT: now.timestamp(),
        }
        key = get_random_string(32, VALID_KEY_CHARS)
        rows.append(Session(session_key=key, session_data=SessionStore().encode(data), expire_date=expires))
        cached[SessionStore.cache_key_prefix + key] = data
    Session.objects.bulk_create(rows, batch_size=1000)
    caches[settings.SESSION_CACHE_ALIAS].set_many(cached, timeout=settings.SESSION_COOKIE_AGE)
    return [f"{settings.SESSION_COOKIE_NAME}={row.session_key}" for row in rows]


def index_present() -> bool:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", [COMPOSITE_INDEX])
        return cursor.fetchone() is not None


def _composite_index() -> Any:
    from members.models import ActivityLog

    return next(index for index in ActivityLog._meta.indexes if index.name == COMPOSITE_INDEX)


def restore_index() -> None:
    """Build the composite index as the model declares it, if it is missing. Ctrl-C is held off
    meanwhile, so the bench database is never left without it."""
    from django.db import connection

    from members.models import ActivityLog

    if index_present():
        return
    print(f"Building {COMPOSITE_INDEX} ...", flush=True)
    started = time.monotonic()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with connection.schema_editor() as editor:
            editor.execute("SET LOCAL maintenance_work_mem = '512MB'")
            editor.add_index(ActivityLog, _composite_index())
    finally:
        signal.signal(signal.SIGINT, previous)
    print(f"Built {COMPOSITE_INDEX} in {time.monotonic() - started:.0f} s", flush=True)


@contextlib.contextmanager
def index_dropped() -> Iterator[None]:
    from django.db import connection

    from members.models import ActivityLog

    with connection.schema_editor() as editor:
        editor.remove_index(ActivityLog, _composite_index())
    try:
        yield
    finally:
        restore_index()


# --- Sentry stub -------------------------------------------------------------------------------


class SentryStub:
    """An HTTP server on loopback that answers Sentry's envelope endpoint with 200 and counts
    what it receives, so the SDK runs its real transport without reaching Sentry."""

    def __init__(self) -> None:
        from sentry_sdk.envelope import Envelope

        self.items: dict[str, int] = {}
        self._lock = threading.Lock()
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                kinds = [str(item.type) for item in Envelope.deserialize(body).items]
                with stub._lock:
                    for kind in kinds:
                        stub.items[kind] = stub.items.get(kind, 0) + 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def dsn(self) -> str:
        return f"http://bench@{HOST}:{self.server.server_address[1]}/1"

    def __enter__(self) -> SentryStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- Servers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: str

    def cookie(self, name: str) -> str:
        for header, value in self.headers:
            if header.lower() == "set-cookie" and value.startswith(f"{name}="):
                return value.split(";", 1)[0].split("=", 1)[1]
        raise RuntimeError(f"no {name} cookie in the response")


@dataclass
class Server:
    name: str
    settings: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    multiproc: Path
    metrics: bool

    @property
    def host(self) -> str:
        return f"{HOST}:{self.port}"

    def fetch(self, method: str, path: str, headers: dict[str, str] | None = None, body: str = "") -> Response:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=60)
        try:
            connection.request(method, path, body=body or None, headers={"Host": self.host, **(headers or {})})
            response = connection.getresponse()
            return Response(response.status, response.getheaders(), response.read().decode("utf-8", "replace"))
        finally:
            connection.close()

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []

    def counters(self) -> dict[str, float]:
        """The counters the bench reads, summed over their labels and workers.

        Read from the workers' metric files (PROMETHEUS_MULTIPROC_DIR), which is what /metrics
        adds up too: a scrape over HTTP would add its own request, queries and cache reads."""
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, str(self.multiproc))  # type: ignore[no-untyped-call]
        totals = dict.fromkeys(("requests", "responses", "statements", "queries", "counted", "hits", "misses"), 0.0)
        for family in registry.collect():
            for sample in family.samples:
                if sample.name == "django_http_requests_before_middlewares_total":
                    totals["requests"] += sample.value
                elif sample.name == "django_http_responses_before_middlewares_total":
                    totals["responses"] += sample.value
                elif sample.name in ("django_db_execute_total", "django_db_execute_many_total"):
                    totals["statements"] += sample.value
                elif sample.name == "portal_db_queries_per_request_sum":
                    totals["queries"] += sample.value
                elif sample.name == "portal_db_queries_per_request_count":
                    totals["counted"] += sample.value
                elif sample.name == "portal_cache_reads_total":
                    totals["hits" if sample.labels.get("result") == "hit" else "misses"] += sample.value
        return totals

    def settled(self, timeout: float) -> dict[str, float]:
        """The counters once every request the server started has been answered: requests still
        in flight when wrk stops are finished by the server, and counted, after wrk has returned."""
        deadline = time.monotonic() + timeout
        while True:
            totals = self.counters()
            if totals["requests"] == totals["responses"] or time.monotonic() > deadline:
                return totals
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    options: Options, workdir: Path, name: str, settings: str, *, sentry_dsn: str = "", metrics: bool = True
) -> Server:
    """gunicorn with deploy/gunicorn.conf.py on a free loopback port, once every worker is up."""
    port = free_port()
    multiproc = workdir / f"prometheus-{name}"
    multiproc.mkdir()
    env = base_env(options)
    env.update(
        DJANGO_SETTINGS_MODULE=settings,
        GUNICORN_BIND=f"{HOST}:{port}",
        GUNICORN_WORKERS=str(options.workers),
        PROMETHEUS_MULTIPROC_DIR=str(multiproc),
        SENTRY_DSN=sentry_dsn,
        SENTRY_TRACES_SAMPLE_RATE=str(options.traces_sample_rate),
        SENTRY_ENVIRONMENT="bench",
    )
    log = workdir / f"gunicorn-{name}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = Server(name, settings, port, process, log, multiproc, metrics)
    probe = "/" if settings.startswith("bench.baseline") else "/health/live"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn ({name}) exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            if server.fetch("GET", probe).status == 200 and len(server.worker_pids()) == options.workers:
                return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"gunicorn ({name}) did not answer within 90 s:\n{log.read_text()[-3000:]}")


def log_in(server: Server, email: str, password: str) -> tuple[str, Request]:
    """Log in through the accounts login page as a browser would; the session cookie, and the
    login POST itself (with its CSRF cookie and token) for the login path to repeat."""
    from django.conf import settings

    page = server.fetch("GET", "/accounts/login/", PROXY)
    csrf = page.cookie(settings.CSRF_COOKIE_NAME)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
    if page.status != 200 or token is None:
        raise RuntimeError(f"/accounts/login/ answered {page.status} without a CSRF token")
    post = Request(
        "POST",
        "/accounts/login/",
        {
            **PROXY,
            "Cookie": f"{settings.CSRF_COOKIE_NAME}={csrf}",
            # HTTPS requests must name their origin for Django's CSRF check.
            "Origin": f"https://{server.host}",
            "Referer": f"https://{server.host}/accounts/login/",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        urllib.parse.urlencode({"csrfmiddlewaretoken": token[1], "login": email, "password": password}),
    )
    answer = server.fetch(post.method, post.path, post.headers, post.body)
    if answer.status != 302:
        raise RuntimeError(f"logging in {email} answered {answer.status}, not a redirect")
    return f"{settings.SESSION_COOKIE_NAME}={answer.cookie(settings.SESSION_COOKIE_NAME)}", post


# --- Load --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: str = ""

    def line(self, host: str) -> str:
        fields = [self.method, self.path, self.body, f"Host: {host}", *(f"{k}: {v}" for k, v in self.headers.items())]
        if any("\t" in part or "\n" in part for part in fields):
            raise ValueError(f"a tab or newline in a request for {self.path}")
        return "\t".join(fields)


@dataclass(frozen=True)
class Path_:
    """A path to measure: the requests wrk sends in turn (one, or a pool of members), what they
    should answer, and the requests of the warm-up (the same unless given)."""

    key: str
    title: str
    requests: tuple[Request, ...]
    expect: int = 200
    warmup: tuple[Request, ...] = ()
    timeout: int = 10
    duration: int = 0  # seconds of load, if not the run's


@dataclass
class Result:
    key: str
    title: str
    server: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    statuses: dict[str, int]
    laps: int
    statements_per_request: float | None
    queries_per_request: float | None
    cache_hit_rate: float | None
    cache_reads_per_request: float | None
    peak_rss_mb: float | None
    baseline_rps: float | None = None  # the baseline measured just before this path
    ratio: float | None = None  # rps / baseline_rps


class RssSampler:
    """The peak resident memory of each gunicorn worker, read from /proc every 0.2 s."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.server.worker_pids():
                with contextlib.suppress(OSError, ValueError):
                    status = Path(f"/proc/{pid}/status").read_text()
                    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
                    if match:
                        self.peaks[pid] = max(self.peaks.get(pid, 0), int(match[1]))
            self._stop.wait(0.2)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Profiler:
    """py-spy sampling every gunicorn worker while a path runs (`--profile`): the collapsed stacks
    in bench/results/profile-<path>.txt, and where the samples were by library, printed. Only
    samples of threads holding the GIL: time spent waiting on PostgreSQL or Redis is not in them."""

    def __init__(self, server: Server, key: str, seconds: int) -> None:
        self.output = RESULTS / f"profile-{key}.txt"
        py_spy = Path(sys.executable).with_name("py-spy")
        command = [str(py_spy), "record", "--pid", str(server.process.pid), "--subprocesses", "--gil", "--rate", "200"]
        command += ["--duration", str(seconds), "--format", "raw", "--output", str(self.output), "--nonblocking"]
        self.command = command

    def __enter__(self) -> Profiler:
        RESULTS.mkdir(exist_ok=True)
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603
        return self

    def __exit__(self, *exc: object) -> None:
        _, error = self.process.communicate(timeout=120)
        if self.process.returncode != 0 or not self.output.exists():
            print(f"  py-spy failed (it needs ptrace: root or CAP_SYS_PTRACE): {error.decode()[-300:]}")
            return
        print(f"  profile in {self.output.relative_to(ROOT)}; on-CPU samples by library:")
        for share, name in top_frames(self.output.read_text()):
            print(f"    {share:5.1%}  {name}")


# Where a sample's innermost frame is, by the start of its file's path: the libraries that a
# request's CPU time goes to. The first prefix that matches wins.
AREAS = (
    ("django/template", "Django templates"),
    ("django/db", "Django ORM"),
    ("psycopg", "psycopg (PostgreSQL client)"),
    ("redis/", "Redis client"),
    ("django_redis", "Redis client"),
    ("sentry_sdk", "Sentry SDK"),
    ("prometheus_client", "Prometheus client"),
    ("django_prometheus", "Prometheus client"),
    ("django/contrib/sessions", "Django sessions and auth"),
    ("django/contrib/auth", "Django sessions and auth"),
    ("django/", "Django, other"),
    ("allauth", "allauth"),
    ("ninja", "django-ninja and pydantic"),
    ("pydantic", "django-ninja and pydantic"),
    ("gunicorn", "gunicorn"),
    ("portal/", "the portal's own code"),
    ("members/", "the portal's own code"),
    ("monitoring/", "the portal's own code"),
    ("subscriptions/", "the portal's own code"),
)


def top_frames(collapsed: str) -> list[tuple[float, str]]:
    """Where the on-CPU samples were, by library (the innermost frame's), from py-spy's
    collapsed stacks ("frame;frame;... count" a line, each frame "function (path:line)")."""
    areas: dict[str, int] = {}
    total = 0
    for line in collapsed.splitlines():
        stack, _, samples = line.rpartition(" ")
        if not samples.isdigit():
            continue
        leaf = re.search(r"\(([^():]+)(?::\d+)?\)$", stack.rsplit(";", 1)[-1])
        path = leaf[1] if leaf else ""
        area = next((name for prefix, name in AREAS if path.startswith(prefix)), "Python and other libraries")
        areas[area] = areas.get(area, 0) + int(samples)
        total += int(samples)
    return sorted(((count / total, area) for area, count in areas.items()), reverse=True) if total else []


def run_wrk(
    options: Options, server: Server, requests: Sequence[Request], workdir: Path, seconds: int, timeout: int
) -> dict[str, Any]:
    script = workdir / "requests.tsv"
    script.write_text("".join(request.line(server.host) + "\n" for request in requests))
    command = [
        "wrk",
        f"-t{options.threads}",
        f"-c{options.connections}",
        f"-d{seconds}s",
        f"--timeout={timeout}s",
        "-s",
        str(WRK_SCRIPT),
        f"http://{server.host}",
        "--",
        str(script),
        str(options.threads),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + timeout + 60)  # noqa: S603
    for line in done.stdout.splitlines():
        if line.startswith("WRK_RESULT "):
            result: dict[str, Any] = json.loads(line.removeprefix("WRK_RESULT "))
            return result
    raise RuntimeError(f"wrk printed no result:\n{done.stdout}\n{done.stderr}")


def check(server: Server, path: Path_) -> None:
    """One request of the path before the load: a wrong answer fails the run, not the figures."""
    request = path.requests[0]
    response = server.fetch(request.method, request.path, request.headers, request.body)
    location = {name.lower(): value for name, value in response.headers}.get("location", "")
    if response.status != path.expect or "/accounts/login/" in location:
        raise RuntimeError(f"{path.title}: {request.method} {request.path} answered {response.status} {location}")


def measure(options: Options, server: Server, path: Path_, workdir: Path, *, quiet: bool = False) -> Result:
    check(server, path)
    if options.warmup:
        run_wrk(options, server, path.warmup or path.requests, workdir, options.warmup, path.timeout)
    before = server.settled(path.timeout) if server.metrics else None
    seconds = path.duration or options.duration
    profiling = path.key in options.profile and server.name == "portal"
    with RssSampler(server) as rss, Profiler(server, path.key, seconds) if profiling else contextlib.nullcontext():
        wrk = run_wrk(options, server, path.requests, workdir, seconds, path.timeout)
    statements = queries = hit_rate = reads = None
    if before is not None:
        # The server's own count of requests is the divisor: it includes those that wrk left in
        # flight when it stopped, whose queries the counters include too.
        after = server.settled(path.timeout)
        delta = {name: after[name] - before[name] for name in after}
        served = max(delta["requests"], 1)
        statements = delta["statements"] / served
        queries = delta["queries"] / max(delta["counted"], 1)
        cache_reads = delta["hits"] + delta["misses"]
        reads = cache_reads / served
        hit_rate = delta["hits"] / cache_reads if cache_reads else None
    latency = wrk["latency_us"]
    errors = wrk["errors"]
    seconds = wrk["duration_us"] / 1e6  # what wrk measured, a little over the duration asked for
    result = Result(
        key=path.key,
        title=path.title,
        server=server.name,
        requests=wrk["requests"],
        seconds=round(seconds, 2),
        rps=wrk["requests"] / seconds,
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p95_ms=latency["p95"] / 1000,
        p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000,
        # wrk's "status" errors are the responses of 400 and above; the rest are socket errors.
        errors=sum(errors.values()),
        statuses=wrk["status"],
        laps=wrk["laps"],
        statements_per_request=statements,
        queries_per_request=queries,
        cache_hit_rate=hit_rate,
        cache_reads_per_request=reads,
        peak_rss_mb=max(rss.peaks.values()) / 1024 if rss.peaks else None,
    )
    if not quiet:
        print(f"  {_row(result)}", flush=True)
    return result


def cold_queries(server: Server, pages: Sequence[tuple[str, str]], cookies: Sequence[str]) -> dict[str, float]:
    """SQL queries of each member page for members with nothing cached: each page is requested
    once by each of `len(cookies) / len(pages)` fresh members, one at a time."""
    per_page = len(cookies) // len(pages)
    counts = {}
    for index, (key, url) in enumerate(pages):
        before = server.counters()
        for cookie in cookies[index * per_page : (index + 1) * per_page]:
            response = server.fetch("GET", url, {**PROXY, "Cookie": cookie})
            if response.status != 200:
                raise RuntimeError(f"cold {url} answered {response.status}")
        after = server.counters()
        counts[key] = (after["queries"] - before["queries"]) / (after["counted"] - before["counted"])
    return counts


# --- The run -----------------------------------------------------------------------------------


@dataclass
class Effect:
    """One path measured with something on and off. For the index, also the page's query alone
    (EXPLAIN ANALYZE, median of several) and the plan PostgreSQL chose for it."""

    effect: str
    key: str
    title: str
    on: list[Result]
    off: list[Result]
    query_on_ms: float | None = None
    query_off_ms: float | None = None
    plan_on: str = ""
    plan_off: str = ""

    @property
    def on_rps(self) -> float:
        return statistics.fmean(result.rps for result in self.on)

    @property
    def off_rps(self) -> float:
        return statistics.fmean(result.rps for result in self.off)


@dataclass
class Run:
    options: Options
    started_at: str
    machine: dict[str, Any]
    subject: dict[str, Any]
    baseline: list[Result] = field(default_factory=list)
    paths: list[Result] = field(default_factory=list)
    cold_sql: dict[str, float] = field(default_factory=dict)
    effects: list[Effect] = field(default_factory=list)
    sentry: dict[str, int] = field(default_factory=dict)  # items the Sentry stub received, by type
    targets: list[dict[str, Any]] = field(default_factory=list)
    finished_at: str = ""

    @property
    def baseline_rps(self) -> float:
        return statistics.median(result.rps for result in self.baseline)

    def path(self, key: str) -> Result:
        return next(result for result in self.paths if result.key == key)


def cold_dashboard(subject: Subject, pool_size: int, warm: Request) -> Path_:
    """The dashboard with nothing cached: each request from another member of a pool of fresh
    sessions, larger than the requests a run makes (`laps` in the results says if it was not).
    Its warm-up is the warm dashboard's, so that no member of the pool is read before."""
    pool = log_in_pool([subject.member_id, subject.sparse.member_id], pool_size)
    return Path_(
        "dashboard_cold",
        "dashboard, cold cache (a new member each request)",
        tuple(Request("GET", "/dashboard/", {**PROXY, "Cookie": member}) for member in pool),
        warmup=(warm,),
    )


def activity_page(key: str, title: str, cookie: str, cursor: str = "") -> Path_:
    url = f"/activity/?before={cursor}" if cursor else "/activity/"
    # A page without its index may take seconds: wrk waits for it rather than count a timeout.
    return Path_(key, title, (Request("GET", url, {**PROXY, "Cookie": cookie}),), timeout=60)


def member_paths(subject: Subject, cookie: str, admin: str) -> list[Path_]:
    page = {**PROXY, "Cookie": cookie}
    api = {**PROXY, "Authorization": f"Bearer {subject.api_token}"}
    log = subject.log
    return [
        Path_("landing", "landing page (anonymous)", (Request("GET", "/", PROXY),)),
        Path_("dashboard_warm", "dashboard, warm cache", (Request("GET", "/dashboard/", page),)),
        activity_page("activity_first", "activity page one", cookie),
        activity_page("activity_deep", f"activity page {log.deep_offset:,} rows deep", cookie, log.deep_cursor),
        Path_("tokens", "tokens page", (Request("GET", "/tokens/", page),)),
        Path_("profile", "profile page", (Request("GET", "/profile/", page),)),
        Path_("subscription", "subscription page", (Request("GET", "/subscription/", page),)),
        Path_("api_me", "GET /api/v1/me", (Request("GET", "/api/v1/me", api),)),
        Path_("api_activity", "GET /api/v1/activity", (Request("GET", "/api/v1/activity", api),)),
        Path_("health_live", "/health/live", (Request("GET", "/health/live", {}),)),
        Path_("health_ready", "/health/ready", (Request("GET", "/health/ready", {}),)),
        Path_("metrics", "/metrics", (Request("GET", "/metrics", {"Authorization": f"Bearer {METRICS_TOKEN}"}),)),
        Path_("admin_index", "admin index (staff dashboard)", (Request("GET", "/admin/", {**PROXY, "Cookie": admin}),)),
        Path_(
            "admin_activity",
            "admin activity list",
            (Request("GET", "/admin/members/activitylog/", {**PROXY, "Cookie": admin}),),
        ),
    ]


# Member pages whose query counts the targets bound, and their URLs for the cold counts.
MEMBER_PAGES = (
    ("dashboard_warm", "/dashboard/"),
    ("activity_first", "/activity/"),
    ("tokens", "/tokens/"),
    ("profile", "/profile/"),
    ("subscription", "/subscription/"),
)


def page_query(member_id: int, cursor: str) -> tuple[float, str]:
    """The activity page's own query (as `members.views.activity` makes it) run alone: the median
    of five EXPLAIN ANALYZE execution times in ms, and the plan's first scan."""
    from members.models import ActivityLog
    from members.pagination import decode_cursor

    rows = ActivityLog.objects.filter(member_id=member_id).recent()
    position = decode_cursor(cursor) if cursor else None
    if position is not None:
        rows = rows.before(*position)
    times, scan = [], ""
    for _ in range(5):
        plan = rows[:51].explain(analyze=True)
        times.append(float(re.findall(r"Execution Time: ([0-9.]+) ms", plan)[0]))
        scans = re.findall(r"((?:Index Only Scan|Index Scan|Bitmap Heap Scan|Seq Scan)[^(]*)", plan)
        scan = scans[0].strip() if scans else ""
    return statistics.median(times), scan


def alternate(options: Options, workdir: Path, effect: str, path: Path_, on: Server, off: Server, run: Run) -> None:
    """Measure `path` on both servers, `rounds` times, alternating, so drift hits both alike."""
    result = Effect(effect, path.key, path.title, [], [])
    for _ in range(options.rounds):
        result.on.append(measure(options, on, path, workdir))
        result.off.append(measure(options, off, path, workdir))
    run.effects.append(result)


def bench(options: Options, workdir: Path, sentry: SentryStub, servers: list[Server]) -> Run:
    from members.models import Member
    from portal.management.commands.seed_demo import ADMIN_EMAIL, DEMO_PASSWORD

    subject = prepare_data(options)
    run = Run(
        options=options,
        started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        machine=machine(options),
        subject={k: v for k, v in asdict(subject).items() if k != "api_token"},
    )

    def start(name: str, settings: str, **kwargs: Any) -> Server:
        server = start_server(options, workdir, name, settings, **kwargs)
        servers.append(server)
        return server

    def stop(server: Server) -> None:
        server.stop()
        servers.remove(server)

    baseline = start("baseline", "bench.baseline.settings", metrics=False)
    hello = Path_("baseline", "baseline: bare Django hello", (Request("GET", "/", {}),))
    short = replace(options, duration=options.baseline_seconds, warmup=1)

    def beside_baseline(server: Server, path: Path_) -> Result:
        """The path, right after the baseline: its ratio is to that baseline, measured seconds before."""
        reference = measure(short, baseline, hello, workdir, quiet=True)
        run.baseline.append(reference)
        result = measure(options, server, path, workdir, quiet=True)
        result.baseline_rps = reference.rps
        result.ratio = result.rps / reference.rps
        print(f"  {_row(result)}", flush=True)
        return result

    portal = start("portal", "portal.settings", sentry_dsn=sentry.dsn)
    cookie, _ = log_in(portal, subject.email, DEMO_PASSWORD)
    admin, _ = log_in(portal, ADMIN_EMAIL, DEMO_PASSWORD)
    paths = member_paths(subject, cookie, admin)
    print(
        f"Portal paths ({options.members:,} members, {options.activity:,} activity rows; {options.workers} workers, "
        f"{options.connections} connections, {options.duration} s each, after {options.baseline_seconds} s of "
        "baseline):"
    )
    for path in paths:
        run.paths.append(beside_baseline(portal, path))
        if path.key == "dashboard_warm":
            cold = cold_dashboard(subject, options.pool, path.requests[0])
            run.paths.append(beside_baseline(portal, cold))
    # Made just before use, like the pool: a session last seen a minute ago is saved again.
    skip = options.pool
    probes = log_in_pool([subject.member_id, subject.sparse.member_id], COLD_PROBES * len(MEMBER_PAGES), skip)
    run.cold_sql = cold_queries(portal, MEMBER_PAGES, probes)

    login_server = start("login", "bench.settings_login", sentry_dsn=sentry.dsn)
    _, login_post = log_in(login_server, LOGIN_EMAIL, DEMO_PASSWORD)
    # Each login verifies an Argon2 hash (a deliberate ~0.1 s of CPU): give it time for a few hundred.
    login = Path_("login", "login POST (login rate limits lifted)", (login_post,), 302)
    run.paths.insert(1, beside_baseline(login_server, replace(login, duration=max(options.duration, 10))))
    stop(login_server)

    by_key = {path.key: path for path in paths}
    print("Effect of the cache (on: portal, off: DummyCache):")
    uncached = start("nocache", "bench.settings_nocache", sentry_dsn=sentry.dsn)
    for key in ("dashboard_warm", "api_me", "api_activity"):
        alternate(options, workdir, "cache", by_key[key], portal, uncached, run)
    stop(uncached)

    print("Effect of the monitoring stack (on: portal, off: no Prometheus middleware and no Sentry):")
    unobserved = start("nomonitoring", "bench.settings_nomonitoring", metrics=False)
    for key in ("dashboard_warm", "api_me", "landing"):
        alternate(options, workdir, "monitoring", by_key[key], portal, unobserved, run)
    stop(unobserved)

    print(f"Effect of {COMPOSITE_INDEX} (on: present, off: dropped):")
    (sparse_cookie,) = log_in_members(Member.objects.filter(pk=subject.sparse.member_id))
    sparse = subject.sparse
    cases = [
        (by_key["activity_first"], subject.log.member_id, ""),
        (by_key["activity_deep"], subject.log.member_id, subject.log.deep_cursor),
        (
            activity_page(
                "activity_sparse_deep",
                f"activity page {sparse.deep_offset:,} rows deep, member with {sparse.rows:,} rows",
                sparse_cookie,
                sparse.deep_cursor,
            ),
            sparse.member_id,
            sparse.deep_cursor,
        ),
    ]
    index_effects = []
    for path, member_id, cursor in cases:
        effect = Effect("index", path.key, path.title, [measure(options, portal, path, workdir)], [])
        effect.query_on_ms, effect.plan_on = page_query(member_id, cursor)
        index_effects.append(effect)
    with index_dropped():
        for effect, (path, member_id, cursor) in zip(index_effects, cases, strict=True):
            effect.off.append(measure(options, portal, path, workdir))
            effect.query_off_ms, effect.plan_off = page_query(member_id, cursor)
    run.effects.extend(index_effects)
    run.sentry = dict(sentry.items)
    run.targets = targets(run)
    run.finished_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return run


# --- Targets (issue 9) -------------------------------------------------------------------------


def targets(run: Run) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def target(name: str, measured: str, holds: bool) -> None:
        rows.append({"target": name, "measured": measured, "holds": holds})

    warm = run.path("dashboard_warm")
    cold = run.path("dashboard_cold")
    target("dashboard warm: >= 50% of baseline req/s", f"{warm.ratio:.0%}", (warm.ratio or 0) >= 0.5)
    target("dashboard warm: p99 < 25 ms", f"{warm.p99_ms:.1f} ms", warm.p99_ms < 25)
    me = run.path("api_me")
    target("GET /api/v1/me: >= 60% of baseline", f"{me.ratio:.0%}", (me.ratio or 0) >= 0.6)
    live = run.path("health_live")
    target("/health/live: >= 85% of baseline", f"{live.ratio:.0%}", (live.ratio or 0) >= 0.85)
    for key in ("activity_first", "activity_deep"):
        page = run.path(key)
        target(f"{page.title}: p95 < 20 ms", f"{page.p95_ms:.1f} ms", page.p95_ms < 20)
    for effect in (e for e in run.effects if e.effect == "index"):
        query = (effect.query_off_ms or 0) / max(effect.query_on_ms or 0, 0.001)
        page_speedup = effect.on_rps / effect.off_rps if effect.off_rps else float("inf")
        target(
            f"{effect.title}: >= 100x faster with the index",
            f"query {query:,.0f}x, page {page_speedup:,.1f}x",
            query >= 100,
        )
    target("dashboard warm vs cold: >= 3x", f"{warm.rps / cold.rps:.1f}x", warm.rps / cold.rps >= 3)
    for e in (e for e in run.effects if e.effect == "monitoring"):
        cost = 1 - e.on_rps / e.off_rps
        target(f"monitoring costs <= 10% of throughput ({e.title})", f"{cost:.0%}", cost <= 0.10)
    for key, _ in MEMBER_PAGES:
        page = run.path(key)
        title = page.title.replace(", warm cache", "")
        cold_sql, warm_sql = run.cold_sql[key], page.queries_per_request or 0
        target(
            f"{title}: <= 6 queries cold, <= 2 warm",
            f"{cold_sql:.1f} cold, {warm_sql:.1f} warm",
            cold_sql <= 6.05 and warm_sql <= 2.05,
        )
    return rows


# --- Output ------------------------------------------------------------------------------------


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _row(result: Result) -> str:
    baseline = f" ({result.ratio:.2f} of the baseline's {result.baseline_rps:,.0f})" if result.ratio else ""
    return (
        f"{result.title}: {result.rps:,.0f} req/s{baseline}, p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
        f"{result.errors} errors, {_num(result.queries_per_request, '.1f')} queries/req"
    )


def median_baseline(run: Run) -> Result:
    ranked = sorted(run.baseline, key=lambda result: result.rps)
    return ranked[len(ranked) // 2]


def markdown(run: Run) -> str:
    options = run.options
    rates = sorted(result.rps for result in run.baseline)
    lines = [
        f"{options.members:,} members, {options.activity:,} activity rows; {options.workers} gunicorn workers; "
        f"wrk, {options.connections} connections, {options.duration} s per path after {options.warmup} s of "
        f"warm-up. Each path's ratio is to the baseline measured for {options.baseline_seconds} s just before it: "
        f"{len(rates)} baselines, {rates[0]:,.0f} to {rates[-1]:,.0f} req/s (median {run.baseline_rps:,.0f}).",
        "",
        "| path | req/s | x baseline | p50 ms | p95 ms | p99 ms | errors | queries/req | SQL/req | cache hits "
        "| peak RSS/worker |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in [median_baseline(run), *run.paths]:
        if result.key == "baseline":
            result = replace(result, title=f"{result.title} (median)", ratio=1.0)
        hits = _num(result.cache_hit_rate, ".0%")
        rss = "-" if result.peak_rss_mb is None else f"{result.peak_rss_mb:.0f} MB"
        lines.append(
            f"| {result.title} | {result.rps:,.0f} | {_num(result.ratio, '.3f')} | {result.p50_ms:.1f} | "
            f"{result.p95_ms:.1f} | {result.p99_ms:.1f} | {result.errors} | {_num(result.queries_per_request, '.1f')} "
            f"| {_num(result.statements_per_request, '.1f')} | {hits} | {rss} |"
        )
    lines += [
        "",
        f"Effects, one thing off at a time (means of {options.rounds} alternating rounds each side; the index: one "
        "round, and the page's query alone, median of 5 EXPLAIN ANALYZE):",
        "",
        "| effect | path | on req/s | off req/s | on p50 / p99 ms | off p50 / p99 ms | on ÷ off |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]

    def latency(results: list[Result]) -> str:
        p50 = statistics.fmean(r.p50_ms for r in results)
        p99 = statistics.fmean(r.p99_ms for r in results)
        return f"{p50:,.1f} / {p99:,.1f}"

    for effect in run.effects:
        speed = effect.on_rps / effect.off_rps if effect.off_rps else float("inf")
        lines.append(
            f"| {effect.effect} | {effect.title} | {effect.on_rps:,.0f} | {effect.off_rps:,.1f} | "
            f"{latency(effect.on)} | {latency(effect.off)} | {speed:,.2f}x |"
        )
        if effect.query_on_ms is not None and effect.query_off_ms is not None:
            lines.append(
                f"| index | ↳ its query: {effect.plan_on} / {effect.plan_off} | | | {effect.query_on_ms:.3f} ms | "
                f"{effect.query_off_ms:,.3f} ms | {effect.query_off_ms / max(effect.query_on_ms, 0.001):,.0f}x |"
            )
    lines += ["", "| target (issue 9) | measured | holds |", "|---|---:|:---:|"]
    for row in run.targets:
        lines.append(f"| {row['target']} | {row['measured']} | {'yes' if row['holds'] else '**no**'} |")
    received = ", ".join(f"{count:,} {kind}" for kind, count in sorted(run.sentry.items())) or "nothing"
    lines += ["", f"Sentry (SENTRY_TRACES_SAMPLE_RATE={options.traces_sample_rate:g}) sent the stub: {received}."]
    return "\n".join(lines)


def chart(run: Run, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [median_baseline(run), *run.paths]
    labels = [result.title for result in results]
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(results) + 1.6))
    height = 0.27
    for offset, (name, attribute, colour) in enumerate(
        (("p50", "p50_ms", "#4c78a8"), ("p95", "p95_ms", "#f58518"), ("p99", "p99_ms", "#e45756"))
    ):
        values = [max(getattr(result, attribute), 0.01) for result in results]
        ax.barh([i + (offset - 1) * height for i in range(len(results))], values, height, label=name, color=colour)
    ax.set_yticks(range(len(results)), labels)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms (log scale)")
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(loc="lower right")
    options = run.options
    ax.set_title(
        f"Latency per path, {options.connections} connections, {options.workers} workers\n"
        f"{options.members:,} members, {options.activity:,} activity rows ({run.started_at[:10]})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine(options: Options) -> dict[str, Any]:
    from django.db import connection
    from django_redis import get_redis_connection

    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    memory = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        (postgres,) = cursor.fetchone() or ("?",)
    redis_info: dict[str, Any] = get_redis_connection("default").info("server")
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)  # noqa: S607 (wrk from PATH)
    import django
    import gunicorn  # type: ignore[import-untyped]

    return {
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_model": model[1].strip() if model else platform.processor(),
        "memory_gb": round(int(memory[1]) / 1024 / 1024, 1) if memory else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "gunicorn": gunicorn.__version__,
        "postgresql": postgres,
        "redis": redis_info.get("redis_version"),
        "wrk": wrk.stdout.split("\n", 1)[0].split(" [")[0],
    }


def save(run: Run, markdown_text: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = run.started_at.replace(":", "").replace("-", "").replace("+0000", "Z")
    stem = f"{stamp}-m{run.options.members}-a{run.options.activity}"
    data = asdict(run)
    data["baseline_rps"] = run.baseline_rps
    data["markdown"] = markdown_text
    data["command"] = " ".join(sys.argv)
    text = json.dumps(data, indent=2, default=str) + "\n"
    (RESULTS / f"{stem}.json").write_text(text)
    (RESULTS / f"{run.options.name}.json").write_text(text)
    chart(run, RESULTS / f"{stem}.png")
    shutil.copyfile(RESULTS / f"{stem}.png", RESULTS / f"{run.options.name}.png")
    return RESULTS / f"{run.options.name}.json"


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so that every `finally` runs: servers stopped, the index rebuilt


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_options(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: sudo apt-get install wrk")
    signal.signal(signal.SIGTERM, _terminate)
    prepare_database(options)
    setup_django(options)
    servers: list[Server] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, SentryStub() as sentry:
        try:
            run = bench(options, Path(tmp), sentry, servers)
        except BaseException:
            for server in servers:  # what the servers said, before their logs go with `tmp`
                print(f"--- end of {server.log.name}:\n{server.log.read_text()[-4000:]}", file=sys.stderr)
            raise
        finally:
            for server in servers:
                server.stop()
            restore_index()
    text = markdown(run)
    print("\n" + text + "\n")
    saved = save(run, text)
    print(f"Results in {saved.relative_to(ROOT)} and {saved.with_suffix('.png').relative_to(ROOT)}")
    print(f"Benchmark took {(time.monotonic() - started) / 60:.1f} min (after the data load).")


if __name__ == "__main__":
    main()
