"""Background jobs watched: the health check reads degraded when a schedule stopped or no
worker answers, /metrics exports each schedule's last success from wherever the job ran, and
the staff dashboard shows the last runs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from core import jobs
from members.models import Member
from monitoring import checks
from monitoring.health import State, run_checks
from tests import background


def _check() -> Any:
    result = run_checks((checks.BackgroundJobs,)).get("background_jobs")
    assert result is not None
    return result


def _all_succeeded_just_now(*, but: str = "", age: float = 0.0) -> None:
    for schedule in jobs.schedules():
        jobs.record_success(schedule.name, at=time.time() - (age if schedule.name == but else 0.0))


def _job_metrics(client: Client, settings: Any) -> dict[str, float]:
    settings.METRICS_TOKEN = "t"
    text = client.get("/metrics", HTTP_AUTHORIZATION="Bearer t").content.decode()
    return {
        sample.labels["job"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "portal_job_last_success_timestamp_seconds"
        for sample in family.samples
    }


def test_in_eager_mode_the_check_skips_the_ping_and_says_so(db: None) -> None:
    result = _check()

    assert result.state is State.OK
    assert "eager mode" in result.summary and "no worker is pinged" in result.summary
    assert not result.critical


def test_metrics_export_the_last_success_each_job_stored(client: Client, settings: Any, db: None) -> None:
    assert _job_metrics(client, settings) == {}  # never succeeded: no sample, not a zero

    jobs.record_success("expire_comps", at=1_800_000_000.0)

    assert _job_metrics(client, settings) == {"expire_comps": 1_800_000_000.0}


def test_the_staff_dashboard_shows_each_schedules_last_run(client: Client, carol: Member, db: None) -> None:
    _all_succeeded_just_now(but="purge_deleted_members", age=3 * 86400)
    client.force_login(carol)

    page = client.get("/admin/").content.decode()

    assert "Scheduled jobs" in page
    for name in settings.CELERY_BEAT_SCHEDULE:
        assert f'<th scope="row">{name}</th>' in page
    assert page.count("(overdue)") == 1
    assert '<tr class="state-degraded"><th scope="row">purge_deleted_members</th>' in page


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_with_a_worker_answering_and_every_schedule_on_time_the_check_is_ok(tmp_path: Path) -> None:
    with background.queueing():
        worker = background.start_worker(tmp_path / "worker.log", concurrency=1)
        try:
            _all_succeeded_just_now()
            result = _check()
        finally:
            worker.stop()

    assert result.state is State.OK, result.summary
    assert result.summary.startswith("1 worker(s) answered")
    assert result.measurements["workers"] == 1


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_schedule_stopped_reads_degraded_naming_it(tmp_path: Path, client: Client, settings: Any) -> None:
    """purge_deleted_members (daily) last succeeded three days ago: beat stopped sending it."""
    with background.queueing():
        worker = background.start_worker(tmp_path / "worker.log", concurrency=1)
        try:
            _all_succeeded_just_now(but="purge_deleted_members", age=3 * 86400)
            result = _check()
        finally:
            worker.stop()

    assert result.state is State.DEGRADED
    assert result.summary == "purge_deleted_members last succeeded 3 days ago (runs every 24 h)"
    # What the PortalScheduledJobOverdue alert reads (its promtool test shows it firing).
    stale = _job_metrics(client, settings)["purge_deleted_members"]
    assert time.time() - stale > 2 * 86400


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_with_no_worker_answering_the_check_reads_degraded() -> None:
    with background.queueing():
        _all_succeeded_just_now()
        result = _check()

    assert result.state is State.DEGRADED
    assert result.summary == "no worker answered a ping within 1 s"
