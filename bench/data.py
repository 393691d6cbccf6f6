"""The bench database and what a run prepares in it: created, migrated and loaded (`seed_demo`)
unless it already holds the data asked for; the subject member, sessions made in bulk, the
activity index dropped and rebuilt, and the activity page's query timed alone."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from bench.options import (
    BENCH_TOKEN_NAME,
    COMPOSITE_INDEX,
    DEEP_FRACTION,
    METRICS_TOKEN,
    ROOT,
    SECRET_KEY,
    UNLIMITED,
    Options,
)
from tools.servers import production_env


def base_env(options: Options) -> dict[str, str]:
    """Production settings on the bench database and Redis, for the servers and `manage.py`.

    Variables a developer's environment or `.env` may hold are set explicitly, so none leaks in."""
    return production_env(
        database_url=options.database_url,
        secret_key=SECRET_KEY,
        DJANGO_SETTINGS_MODULE="portal.settings",
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
        # Refused tokens from 127.0.0.1 (a probe, another run) must not lock the bench out of the API.
        API_AUTH_FAILURES_PER_IP=UNLIMITED,
        ADMIN_REQUIRE_MFA="false",
        # A sync worker needs one connection per request, plus one per health-check thread:
        # small pools keep three servers' idle connections well under max_connections.
        DATABASE_POOL_MIN="2",
        DATABASE_POOL_MAX="10",
    )


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
    """Cookies of these members: the sessions that Django's login would make, written in bulk to
    the database and the cache as the `cached_db` engine keeps them, without a password hash
    each; and the CSRF cookie a browser holds from its first page (without it, every page would
    make a new CSRF secret and send a new cookie)."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.base import VALID_KEY_CHARS
    from django.contrib.sessions.backends.cached_db import SessionStore
    from django.contrib.sessions.models import Session
    from django.core.cache import caches
    from django.middleware.csrf import CSRF_ALLOWED_CHARS, CSRF_SECRET_LENGTH
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
    return [
        f"{settings.SESSION_COOKIE_NAME}={row.session_key}; "
        f"{settings.CSRF_COOKIE_NAME}={get_random_string(CSRF_SECRET_LENGTH, CSRF_ALLOWED_CHARS)}"
        for row in rows
    ]


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
