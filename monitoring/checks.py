"""The portal's health checks, on django-health-check's `HealthCheck`.

Each check's `run()` returns quietly when all is well, raises `ServiceWarning` when the
dependency works but badly (the check is *degraded*), and `ServiceUnavailable` when it does
not work (*down*). `monitoring.health.run_checks` runs them, each in its own thread under its
`timeout`, so a hung dependency costs a probe at most that long.

Messages are written here, never copied from a library's exception: they show on the staff
status page, and an exception's text can carry a host name, a DSN or a query.

Whether a check that is down takes the portal out of service is its `critical` flag: only the
database is. Without Redis the portal serves from the database (core/cache.py); without disk
headroom, a migration or Stripe it still serves members, so those make it *degraded*.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
import uuid
from pathlib import Path
from typing import ClassVar

import psutil
from django.conf import settings
from django.core.cache import cache
from django.db import connections
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable, ServiceWarning

from core import jobs
from core.db_router import REPLICA

Measurement = float | int | str | None


@dataclasses.dataclass
class PortalCheck(HealthCheck):
    """A check with a name, a title for people, and the numbers it measured on its last run."""

    name: ClassVar[str]
    title: ClassVar[str]
    critical: ClassVar[bool] = False
    timeout: ClassVar[datetime.timedelta] = datetime.timedelta(seconds=2)

    summary: str = dataclasses.field(default="", init=False, repr=False)
    measurements: dict[str, Measurement] = dataclasses.field(default_factory=dict, init=False, repr=False)

    def run(self) -> None:  # pragma: no cover - every check defines it
        raise NotImplementedError

    def judge_fullness(self, percent: float, message: str, *, degraded: float, down: float) -> None:
        """The verdict on how full a resource is: down from `down` percent, degraded from
        `degraded`, with `message` (what is used and what is left) either way."""
        if percent >= down:
            raise ServiceUnavailable(message)
        if percent >= degraded:
            raise ServiceWarning(message)
        self.summary = message

    def judge_round_trip(
        self,
        *,
        started: float,
        answered: bool,
        wrong_answer: str,
        slow: str,
        summary: str,
        slow_ms: float,
        **measurements: Measurement,
    ) -> None:
        """The verdict on one timed round trip to a dependency, begun at `started`
        (`time.perf_counter()`): down if it answered wrongly, degraded if slower than `slow_ms`.
        The latency is measured either way, so the page shows how slow a wrong answer was."""
        latency_ms = (time.perf_counter() - started) * 1000
        self.measurements = {"latency_ms": round(latency_ms, 2), **measurements}
        if not answered:
            raise ServiceUnavailable(wrong_answer)
        if latency_ms > slow_ms:
            raise ServiceWarning(f"slow: {slow} {latency_ms:.0f} ms (over {slow_ms:.0f} ms)")
        self.summary = f"{summary} {latency_ms:.1f} ms"


@dataclasses.dataclass
class Database(PortalCheck):
    """`SELECT 1` on a connection of its own, timed from asking for the connection (a pooled one
    on PostgreSQL) to the answer: what a request would wait before its first query."""

    name: ClassVar[str] = "database"
    title: ClassVar[str] = "Database"
    critical: ClassVar[bool] = True
    timeout: ClassVar[datetime.timedelta] = datetime.timedelta(seconds=3)
    slow_ms: ClassVar[float] = 250.0

    alias: str = "default"

    def run(self) -> None:
        connection = connections[self.alias]
        started = time.perf_counter()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                row = cursor.fetchone()
        except Exception as exc:
            raise ServiceUnavailable(f"cannot query the database ({type(exc).__name__})") from exc
        self.judge_round_trip(
            started=started,
            answered=row == (1,),
            wrong_answer="SELECT 1 returned something else",
            slow="SELECT 1 took",
            summary="SELECT 1 in",
            slow_ms=self.slow_ms,
            vendor=connection.vendor,
        )


@dataclasses.dataclass
class Replica(Database):
    """The read replica (DATABASE_REPLICA_URL), when there is one: it answers, and how far its
    replay is behind the primary. Never critical: without it, heavy reads go to the primary
    (core/db_router.py), so the portal is degraded, not out of service."""

    name: ClassVar[str] = "database_replica"
    title: ClassVar[str] = "Database read replica"
    critical: ClassVar[bool] = False
    lag_warning_s: ClassVar[float] = 60.0

    alias: str = REPLICA

    def run(self) -> None:
        super().run()
        if connections[self.alias].vendor != "postgresql":
            return
        try:
            with connections[self.alias].cursor() as cursor:
                # Zero when it has replayed all it received; NULL when it is not a standby.
                cursor.execute(
                    "SELECT CASE WHEN NOT pg_is_in_recovery() THEN NULL"
                    " WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0"
                    " ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END"
                )
                row = cursor.fetchone()
        except Exception as exc:
            raise ServiceUnavailable(f"cannot read the replication lag ({type(exc).__name__})") from exc
        lag = None if row is None or row[0] is None else round(float(row[0]), 1)
        self.measurements["lag_seconds"] = lag
        if lag is None:
            self.summary += "; not a standby, so no replication lag to read"
        elif lag > self.lag_warning_s:
            raise ServiceWarning(f"{_duration(lag)} behind the primary (over {self.lag_warning_s:.0f} s)")
        else:
            self.summary += f"; {lag:.1f} s behind the primary"


@dataclasses.dataclass
class Cache(PortalCheck):
    """A write and a read through the cache's own client, errors surfaced.

    The portal's cache ignores Redis errors (a miss is served from the database), which is right
    for pages and wrong here. A write, not just a PING: a Redis that answers but refuses writes
    (a read-only replica after a failover, or out of memory) is as good as down for the cache."""

    name: ClassVar[str] = "cache"
    title: ClassVar[str] = "Cache (Redis)"
    timeout: ClassVar[datetime.timedelta] = datetime.timedelta(seconds=2)
    slow_ms: ClassVar[float] = 50.0

    def run(self) -> None:
        key = f"health:probe:{uuid.uuid4().hex}"
        started = time.perf_counter()
        if str(settings.CACHES["default"]["BACKEND"]).startswith("django_redis"):
            from django_redis import get_redis_connection
            from redis.exceptions import ReadOnlyError, RedisError, ResponseError

            backend = "redis"
            try:
                client = get_redis_connection("default")
                client.set(key, b"1", ex=10)
                value = client.get(key)
                client.delete(key)
            except ReadOnlyError as exc:
                raise ServiceUnavailable("Redis refuses writes (read-only replica)") from exc
            except ResponseError as exc:
                raise ServiceUnavailable(f"Redis refuses writes ({type(exc).__name__})") from exc
            except RedisError as exc:
                raise ServiceUnavailable(f"Redis does not answer ({type(exc).__name__})") from exc
        else:
            backend = "local memory"
            cache.set(key, b"1", timeout=10)
            value = cache.get(key)
            cache.delete(key)
        self.judge_round_trip(
            started=started,
            answered=value == b"1",
            wrong_answer="a value written to the cache did not read back",
            slow="a write and a read took",
            summary=f"{backend}: write and read in",
            slow_ms=self.slow_ms,
            backend=backend,
        )


@dataclasses.dataclass
class Disk(PortalCheck):
    """Space left where the portal writes (its SQLite database, logs, static files)."""

    name: ClassVar[str] = "disk"
    title: ClassVar[str] = "Disk"
    degraded_percent: ClassVar[float] = 90.0
    down_percent: ClassVar[float] = 98.0

    path: Path = dataclasses.field(default_factory=lambda: Path(settings.BASE_DIR))

    def run(self) -> None:
        usage = psutil.disk_usage(str(self.path))
        self.measurements = {"used_percent": usage.percent, "free_bytes": usage.free}
        message = f"{usage.percent:.0f}% used, {usage.free / 2**30:.1f} GiB free"
        self.judge_fullness(usage.percent, message, degraded=self.degraded_percent, down=self.down_percent)


def memory_usage() -> dict[str, Measurement]:
    """This process's resident memory, and how full the memory it lives in is: the container's
    (cgroup v2 `memory.max`) when it has a limit, else the machine's. A container is killed at
    its own limit however much memory the host has left."""
    rss = psutil.Process().memory_info().rss
    limit = _cgroup_limit()
    if limit is not None:
        used = _cgroup_current() or 0
        return {"process_rss_bytes": rss, "used_percent": round(100 * used / limit, 1), "limit_bytes": limit}
    memory = psutil.virtual_memory()
    return {"process_rss_bytes": rss, "used_percent": memory.percent, "limit_bytes": memory.total}


_CGROUP = Path("/sys/fs/cgroup")


def _cgroup_limit() -> int | None:
    try:
        raw = (_CGROUP / "memory.max").read_text().strip()
    except OSError:
        return None
    return int(raw) if raw.isdigit() else None  # "max": no limit


def _cgroup_current() -> int | None:
    try:
        return int((_CGROUP / "memory.current").read_text().strip())
    except (OSError, ValueError):
        return None


@dataclasses.dataclass
class Memory(PortalCheck):
    name: ClassVar[str] = "memory"
    title: ClassVar[str] = "Memory"
    degraded_percent: ClassVar[float] = 90.0
    down_percent: ClassVar[float] = 97.0

    def run(self) -> None:
        self.measurements = usage = memory_usage()
        percent = float(usage["used_percent"] or 0)
        rss = int(usage["process_rss_bytes"] or 0)
        message = f"{percent:.0f}% of memory in use; this process {rss / 2**20:.0f} MiB"
        self.judge_fullness(percent, message, degraded=self.degraded_percent, down=self.down_percent)


@dataclasses.dataclass
class Migrations(PortalCheck):
    """Every migration this code ships is applied. Unapplied ones mean a deploy went out before
    `migrate` ran (or it failed): pages touching the new columns will fail."""

    name: ClassVar[str] = "migrations"
    title: ClassVar[str] = "Migrations"
    timeout: ClassVar[datetime.timedelta] = datetime.timedelta(seconds=5)

    alias: str = "default"

    def run(self) -> None:
        try:
            executor = MigrationExecutor(connections[self.alias])
            plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        except Exception as exc:
            raise ServiceUnavailable(f"cannot read the applied migrations ({type(exc).__name__})") from exc
        self.measurements = {"unapplied": len(plan)}
        if plan:
            names = ", ".join(f"{migration.app_label}.{migration.name}" for migration, _ in plan[:3])
            more = f" and {len(plan) - 3} more" if len(plan) > 3 else ""
            raise ServiceWarning(f"{len(plan)} not applied: {names}{more}")
        self.summary = "all applied"


@dataclasses.dataclass
class Stripe(PortalCheck):
    """Webhook freshness and drift, from `subscriptions.reads.stripe_sync_status()` (a cheap,
    cached read). Never down: without Stripe, members are still served; billing changes wait.

    Degraded when events failed, when none was processed for `stale_after` (a webhook endpoint
    that stopped receiving, or a lost secret), when reconciliation found subscriptions that
    differ from Stripe, or when reconciliation has not run for `reconciliation_stale_after`."""

    name: ClassVar[str] = "stripe"
    title: ClassVar[str] = "Stripe webhooks"
    timeout: ClassVar[datetime.timedelta] = datetime.timedelta(seconds=3)
    stale_after: ClassVar[datetime.timedelta] = datetime.timedelta(hours=24)
    reconciliation_stale_after: ClassVar[datetime.timedelta] = datetime.timedelta(hours=48)

    def run(self) -> None:
        from subscriptions.reads import stripe_sync_status

        try:
            status = stripe_sync_status()
        except Exception as exc:
            raise ServiceUnavailable(f"cannot read the webhook log ({type(exc).__name__})") from exc
        if not status.configured:
            self.summary = "webhooks are off (STRIPE_WEBHOOK_SECRET is not set)"
            return
        now = timezone.now()
        age = _age_seconds(status.last_event_processed_at, now)
        self.measurements = {
            "last_event_age_seconds": age,
            "failed_events": status.failed_events,
            "drifted": status.drifted,
            "reconciled_age_seconds": _age_seconds(status.reconciled_at, now),
        }
        problems = []
        if status.failed_events:
            problems.append(f"{status.failed_events} webhook event(s) failed")
        if age is None:
            problems.append("no webhook event processed yet")
        elif age > self.stale_after.total_seconds():
            problems.append(f"no webhook event processed for {_duration(age)}")
        if status.drifted:
            problems.append(f"{status.drifted} subscription(s) differ from Stripe")
        if status.reconciled_at is not None and now - status.reconciled_at > self.reconciliation_stale_after:
            problems.append(f"last reconciled {_duration((now - status.reconciled_at).total_seconds())} ago")
        if problems:
            raise ServiceWarning("; ".join(problems))
        parts = [f"last event {_duration(age or 0)} ago"]
        parts.append("not reconciled yet" if status.drifted is None else "no drift")
        self.summary = ", ".join(parts)


@dataclasses.dataclass
class BackgroundJobs(PortalCheck):
    """The job queue's workers and beat's schedules (core/jobs.py). Never down: members are
    served without them; comps wait to expire, deletions to be purged, webhooks to be applied.

    Degraded when a schedule has not succeeded within twice its period (beat stopped, or the job
    keeps failing), or when no worker answers a ping within `ping_timeout`. With tasks run
    eagerly (no broker) there is no worker to ping and no beat: both are skipped, and said so."""

    name: ClassVar[str] = "background_jobs"
    title: ClassVar[str] = "Background jobs"
    timeout: ClassVar[datetime.timedelta] = datetime.timedelta(seconds=3)
    ping_timeout: ClassVar[float] = 1.0

    def run(self) -> None:
        from celery import current_app

        if current_app.conf.task_always_eager:
            self.summary = (
                "eager mode (no broker): tasks run in the web process, so no worker is pinged and no beat runs"
            )
            return
        now = timezone.now()
        problems = []
        for schedule in jobs.schedules():
            last = jobs.last_success(schedule.name)
            age = _age_seconds(last, now)
            self.measurements[f"{schedule.name}_age_seconds"] = age
            if age is None:
                problems.append(f"{schedule.name} has never succeeded")
            elif age > 2 * schedule.period.total_seconds():
                every = _duration(schedule.period.total_seconds())
                problems.append(f"{schedule.name} last succeeded {_duration(age)} ago (runs every {every})")
        try:
            replies = current_app.control.ping(timeout=self.ping_timeout)
        except Exception as exc:
            replies = []
            problems.append(f"cannot reach the broker ({type(exc).__name__})")
        else:
            if not replies:
                problems.append(f"no worker answered a ping within {self.ping_timeout:.0f} s")
        self.measurements["workers"] = len(replies)
        if problems:
            raise ServiceWarning("; ".join(problems))
        self.summary = f"{len(replies)} worker(s) answered; every schedule succeeded within twice its period"


def _age_seconds(moment: datetime.datetime | None, now: datetime.datetime) -> float | None:
    return None if moment is None else round(max(0.0, (now - moment).total_seconds()), 1)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


# What each endpoint runs. Readiness asks only what decides whether this process can serve, as
# often as the orchestrator likes; the status pages ask everything.
READINESS: tuple[type[PortalCheck], ...] = (Database, Cache)
ALL: tuple[type[PortalCheck], ...] = (
    Database,
    *((Replica,) if REPLICA in settings.DATABASES else ()),
    Cache,
    Disk,
    Memory,
    Migrations,
    Stripe,
    BackgroundJobs,
)
