"""Scheduled jobs: each runs at most once per period and never twice at once, and says when it
last succeeded.

Beat (`celery -A portal beat`) sends each job of `settings.CELERY_BEAT_SCHEDULE` to the workers
at its period. Exactly one beat should run, but two started by mistake (or a beat restarted
mid-period) must not double the work, so a job's task runs its work through `run_scheduled`:

- a per-period key in the cache (Redis in production, shared by every worker): the first run in
  a period adds it (`cache.add`, SET NX with an expiry of one period), later sends in the same
  period find it and skip;
- a run lock, held while the work runs and expiring after `RUN_LOCK_SECONDS` if the worker dies,
  so a run that outlasts its period is not joined by the next one.

On success the job's time is stored in the cache, without expiry (`last_success`): monitoring
reads it at scrape time, so every process exports the same truth. A job whose work fails frees
its period, so its retry (or the other beat's send) may run it again.

Imports no app of ours: every app's tasks use it.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger("core.jobs")

# Longer than any job's time limit: a worker killed mid-run frees its job after this.
RUN_LOCK_SECONDS = 3600


@dataclass(frozen=True)
class Schedule:
    name: str
    task: str
    period: dt.timedelta


def schedules() -> tuple[Schedule, ...]:
    """The jobs beat runs, from settings, each with its period."""
    return tuple(
        Schedule(name=name, task=str(entry["task"]), period=_period(entry["schedule"]))
        for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
    )


def _period(schedule: object) -> dt.timedelta:
    if isinstance(schedule, dt.timedelta):
        return schedule
    if isinstance(schedule, (int, float)):
        return dt.timedelta(seconds=schedule)
    raise TypeError(f"a schedule's period must be a timedelta, not {schedule!r}")


def period_of(name: str) -> dt.timedelta:
    return _period(settings.CELERY_BEAT_SCHEDULE[name]["schedule"])


def _last_success_key(name: str) -> str:
    return f"jobs:{name}:last_success"


def last_success(name: str) -> dt.datetime | None:
    """When job `name` last succeeded, as stored by `run_scheduled`; None if never (or the cache
    lost it)."""
    value = cache.get(_last_success_key(name))
    return dt.datetime.fromtimestamp(float(value), tz=dt.UTC) if value is not None else None


def record_success(name: str, *, at: float | None = None) -> None:
    cache.set(_last_success_key(name), at if at is not None else time.time(), timeout=None)


def run_scheduled(name: str, work: Callable[[], str]) -> str | None:
    """Run `work` as this period's run of job `name`, unless it ran (or runs) already; returns
    what it did, in a few words, or None when it was skipped."""
    period = period_of(name).total_seconds()
    slot = int(time.time() // period)
    token = secrets.token_hex(8)
    slot_key = f"jobs:{name}:slot:{slot}"
    if not cache.add(slot_key, token, timeout=max(1, int(period))):
        logger.info("Scheduled job %s skipped: it already ran in period %d", name, slot)
        return None
    running_key = f"jobs:{name}:running"
    if not cache.add(running_key, token, timeout=RUN_LOCK_SECONDS):
        logger.info("Scheduled job %s skipped: its previous run is still going (period %d)", name, slot)
        return None
    try:
        result = work()
    except BaseException:
        _release(slot_key, token)  # a retry may run it again in this period
        raise
    finally:
        _release(running_key, token)
    record_success(name)
    logger.info("Scheduled job %s ran in period %d: %s", name, slot, result)
    return result


def _release(key: str, token: str) -> None:
    """Delete `key` if this run still holds it (not after it expired and another run took it)."""
    if cache.get(key) == token:
        cache.delete(key)
