"""The schedules in code: beat runs each job at its period, once per period however many beats
run; a job records its success for monitoring; the commands and the tasks do the same work."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone

from core import jobs
from members.models import Member
from portal import tasks as portal_tasks
from subscriptions import tasks
from subscriptions.models import Plan, Subscription, SubscriptionStatus
from subscriptions.services import comp_membership
from tests import background
from tests.fast_beat_settings import PERIOD


def test_every_periodic_job_of_the_portal_is_scheduled() -> None:
    assert {name: entry["task"] for name, entry in settings.CELERY_BEAT_SCHEDULE.items()} == {
        "expire_comps": "subscriptions.expire_comps",
        "retry_stripe_events": "subscriptions.retry_stripe_events",
        "reconcile_stripe": "subscriptions.reconcile_stripe",
        "purge_deleted_members": "portal.purge_deleted_members",
        "clear_sessions": "portal.clear_sessions",
    }
    periods = {schedule.name: schedule.period for schedule in jobs.schedules()}
    assert periods["expire_comps"] == dt.timedelta(minutes=1)
    assert {periods[name] for name in ("reconcile_stripe", "purge_deleted_members", "clear_sessions")} == {
        dt.timedelta(days=1)
    }


def test_the_expiry_task_ends_due_comps_and_records_its_success(alice: Member, carol: Member) -> None:
    plan = Plan.objects.get(code="pro")
    comp = comp_membership(member=alice, plan=plan, until=timezone.now() + dt.timedelta(seconds=1), actor=carol)
    past = timezone.now() - dt.timedelta(minutes=1)
    Subscription.objects.filter(pk=comp.pk).update(
        current_period_start=past - dt.timedelta(days=1), current_period_end=past
    )

    assert tasks.expire_comps.delay().get() == "ended 1 comp(s)"

    assert Subscription.objects.get(pk=comp.pk).status == SubscriptionStatus.CANCELED
    last = jobs.last_success("expire_comps")
    assert last is not None and timezone.now() - last < dt.timedelta(seconds=5)


def test_a_job_runs_once_per_period_however_often_it_is_sent(db: None) -> None:
    first = tasks.expire_comps.delay().get()
    second = tasks.expire_comps.delay().get()

    assert (first, second) == ("ended 0 comp(s)", None)  # the second send, in the same minute, skips


def test_a_failed_run_frees_its_period_and_records_no_success(db: None) -> None:
    def failing() -> str:
        raise RuntimeError("Stripe is down")

    with pytest.raises(RuntimeError):
        jobs.run_scheduled("reconcile_stripe", failing)

    assert jobs.last_success("reconcile_stripe") is None
    assert jobs.run_scheduled("reconcile_stripe", lambda: "done") == "done"  # the retry may run


def test_a_run_still_going_is_not_joined_by_the_next_period(db: None) -> None:
    cache.add("jobs:clear_sessions:running", "another-worker", timeout=60)

    assert portal_tasks.clear_sessions.delay().get() is None
    assert jobs.last_success("clear_sessions") is None


def test_every_task_does_what_its_command_does(db: None) -> None:
    """The commands stay for operators and call the same services; each task runs cleanly."""
    assert portal_tasks.purge_deleted_members.delay().get() == "deleted 0 account(s)"
    assert portal_tasks.clear_sessions.delay().get() == "expired sessions cleared"
    assert tasks.reconcile_stripe.delay().get().startswith("billing is off")
    assert tasks.retry_stripe_events.delay().get() == "queued 0 unprocessed event(s)"
    call_command("expire_subscriptions")
    call_command("purge_deleted_members")


RAN = re.compile(r"Scheduled job (\w+) ran in period (\d+)")
SKIPPED = re.compile(r"Scheduled job (\w+) skipped: it already ran in period (\d+)")


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_beats_run_each_schedule_once_per_period(tmp_path: Path) -> None:
    """Two `celery -A portal beat` processes started by mistake, each sending every schedule
    every 3 s to one worker: every job runs once in each period, the other send skips."""
    fast: dict[str, Any] = {"DJANGO_SETTINGS_MODULE": "tests.fast_beat_settings"}
    with background.queueing():
        worker = background.start_worker(tmp_path / "worker.log", **fast)
        beats = [
            background.start_beat(tmp_path / f"beat-{n}.log", tmp_path / f"beat-{n}.schedule", **fast) for n in (1, 2)
        ]
        try:
            time.sleep(6 * PERIOD.total_seconds())
        finally:
            for beat in beats:
                beat.stop()
            time.sleep(1)  # the last sends are taken
            worker.stop()
    log = worker.output()

    ran = Counter(RAN.findall(log))
    skipped = Counter(SKIPPED.findall(log))
    sent = Counter(re.findall(r"Scheduler: Sending due task (\w+)", beats[0].output() + beats[1].output()))
    print(f"sent {dict(sent)}; ran per job {Counter(job for job, _ in ran)}; skipped {sum(skipped.values())}")
    assert ran, log[-3000:]
    assert max(ran.values()) == 1, [key for key, count in ran.items() if count > 1]
    for name in settings.CELERY_BEAT_SCHEDULE:
        periods = sorted(int(period) for job, period in ran if job == name)
        assert len(periods) >= 3, (name, periods)
        assert sent[name] > len(periods)  # both beats sent it: the second send of a period skipped
    assert sum(skipped.values()) > 0
