"""Tasks for the tests of real workers only. The workers import this module (`--include`);
the tests queue its tasks. Each keeps its bookkeeping under `jobs-test:` in the broker's Redis
database, which the tests empty first."""

from __future__ import annotations

import datetime as dt
import time

import redis
from celery import shared_task
from django.conf import settings
from django.contrib.sessions.models import Session
from django.utils import timezone


def bookkeeping() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL, decode_responses=True)


@shared_task(bind=True, name="tests.jobs.record_once")
def record_once(self, key: str, hold: float) -> None:
    """An effect idempotent by key (a session row whose primary key is `key`), made first; then,
    on the first attempt only, `hold` seconds of work, long enough to be killed in."""
    book = bookkeeping()
    attempt = book.incr(f"jobs-test:{key}:attempts")
    book.rpush(f"jobs-test:{key}:hosts", self.request.hostname)
    Session.objects.get_or_create(
        session_key=key, defaults={"session_data": "", "expire_date": timezone.now() + dt.timedelta(days=1)}
    )
    if attempt == 1:
        book.set(f"jobs-test:{key}:holding", "1")
        time.sleep(hold)
    book.set(f"jobs-test:{key}:done", "1")


@shared_task(bind=True, name="tests.jobs.retry_once", max_retries=3)
def retry_once(self, key: str) -> None:
    """Asks to be tried again the first time, succeeds the second."""
    if bookkeeping().incr(f"jobs-test:{key}:attempts") == 1:
        raise self.retry(countdown=0)


@shared_task(name="tests.jobs.broken")
def broken() -> None:
    raise ValueError("broken on purpose")
