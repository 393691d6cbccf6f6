"""Background work on real workers (`celery -A portal worker` processes) and the real Redis
broker, not eager: mail sent by a worker and retried, a task of a killed worker run again with
one effect, a stopped worker finishing its task, and the task metrics a worker serves."""

from __future__ import annotations

import re
import time
import urllib.request
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.contrib.sessions.models import Session
from django.core import mail
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families

from members.models import Member
from monitoring.metrics import exposition
from tests.jobs import tasks
from tests.jobs.workers import SmtpSink, broker, running_workers, wait_for
from tools.servers import free_port

pytestmark = [pytest.mark.redis]

NEW_PASSWORD = "a long passphrase nobody guesses"
# Through the queue in the test's process (the web process here); were the mail sent from it,
# it would land in its outbox (locmem), not at the worker's mail server.
QUEUED_IN_THIS_PROCESS = override_settings(
    EMAIL_BACKEND="core.mail.QueuedEmailBackend", EMAIL_DELIVERY_BACKEND="django.core.mail.backends.locmem.EmailBackend"
)


@pytest.fixture
def workers(tmp_path):
    with running_workers(tmp_path) as start:
        yield start


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (our loopback URL)
        body = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


@pytest.mark.django_db(transaction=True)
def test_a_sign_ups_verification_mail_is_sent_by_a_worker_once_though_the_mail_server_refused_it_twice(client, workers):
    sink = SmtpSink(refuse_first=2)
    with sink.serving() as email_url, QUEUED_IN_THIS_PROCESS:
        worker = workers("mail", EMAIL_URL=email_url, MAIL_RETRY_DELAY="1", MAIL_MAX_RETRIES="3")
        started = time.monotonic()
        response = client.post(
            "/accounts/signup/", {"email": "dora@example.com", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
        )
        answered = time.monotonic() - started
        assert response.status_code == 302
        assert sink.messages == []  # the sign-up was answered before any mail went out

        wait_for(lambda: sink.messages, timeout=30, what="the verification mail")
        delivered = time.monotonic() - started
        time.sleep(3)  # long enough for a duplicate to arrive, were one coming

    assert mail.outbox == []  # not sent by the web process
    assert len(sink.messages) == 1
    assert sink.connections == 3  # refused, refused, accepted
    assert sink.recipients == [["dora@example.com"]]
    message = sink.messages[0]
    assert "Confirm" in str(message["Subject"])
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    body = payload.decode()
    link = re.search(r"http://testserver(/accounts/confirm-email/(\S+)/)", body)
    assert link is not None
    log = worker.log_text()
    assert "not sent on attempt 1 of 4 (SMTPConnectError 421)" in log
    assert "not sent on attempt 2 of 4 (SMTPConnectError 421)" in log
    assert link.group(2) not in log  # nor any part of the message
    print(f"sign-up answered in {answered:.2f} s; its mail delivered after {delivered:.1f} s (two refusals)")

    # The link the worker sent verifies the address.
    assert client.post(link.group(1))["Location"] == "/dashboard/"
    assert EmailAddress.objects.get(user=Member.objects.with_email("dora@example.com").get()).verified


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_task_of_a_worker_killed_mid_run_runs_again_on_another_worker_with_its_effect_once(workers):
    # A dead worker's task is handed on once it has been unacknowledged this long.
    quick = {
        "CELERY_BROKER_VISIBILITY_TIMEOUT": "8",
        "CELERY_TASK_SOFT_TIME_LIMIT": "6",
        "CELERY_TASK_TIME_LIMIT": "7",
        "MAIL_RETRY_DELAY": "1",
        "MAIL_MAX_RETRIES": "1",
    }
    first = workers("first", **quick)
    key = "killed-mid-run-0000000000000000"
    tasks.record_once.delay(key, 5)
    book = broker()
    wait_for(lambda: book.get(f"jobs-test:{key}:holding"), timeout=30, what="the first run to be under way")
    second = workers("second", **quick)

    first.kill()
    killed = time.monotonic()
    wait_for(lambda: book.get(f"jobs-test:{key}:done"), timeout=60, what="the task to run again")
    rerun_after = time.monotonic() - killed

    assert book.lrange(f"jobs-test:{key}:hosts", 0, -1) == [first.hostname, second.hostname]
    assert Session.objects.filter(session_key=key).count() == 1  # the effect, once
    assert book.llen("celery") == 0
    wait_for(lambda: book.hlen("unacked") == 0, timeout=10, what="the task to be acknowledged")
    print(f"the killed worker's task ran again on another worker {rerun_after:.1f} s after the kill (timeout 8 s)")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_worker_stopped_with_sigterm_finishes_its_task_first(workers):
    worker = workers("stopped")
    key = "stopped-mid-run-000000000000000"
    tasks.record_once.delay(key, 3)
    book = broker()
    wait_for(lambda: book.get(f"jobs-test:{key}:holding"), timeout=30, what="the run to be under way")

    worker.stop(grace=30)

    assert worker.process.returncode == 0
    assert book.get(f"jobs-test:{key}:done") == "1"
    assert book.get(f"jobs-test:{key}:attempts") == "1"
    assert Session.objects.filter(session_key=key).count() == 1
    assert book.hlen("unacked") == 0


def test_a_worker_serves_runs_failures_retries_and_durations_of_each_task(tmp_path, workers):
    port = free_port()
    multiproc_dir = tmp_path / "prometheus"
    multiproc_dir.mkdir()
    (multiproc_dir / "counter_999999.db").write_bytes(b"left over by an earlier run")  # must be wiped
    workers(
        "metrics",
        PROMETHEUS_MULTIPROC_DIR=str(multiproc_dir),
        CELERY_WORKER_METRICS_PORT=str(port),
        CELERY_WORKER_METRICS_ADDRESS="127.0.0.1",
    )
    tasks.retry_once.delay("metrics")
    tasks.broken.delay()
    url = f"http://127.0.0.1:{port}/metrics"

    def counted() -> dict[Any, float] | None:
        samples = scrape(url)
        done = (
            samples.get(("portal_task_runs_total", (("task", "tests.jobs.broken"),)), 0) >= 1
            and samples.get(("portal_task_runs_total", (("task", "tests.jobs.retry_once"),)), 0) >= 2
        )
        return samples if done else None

    samples = wait_for(counted, timeout=30, what="the worker to count both tasks")
    retry_once = (("task", "tests.jobs.retry_once"),)
    broken = (("task", "tests.jobs.broken"),)
    assert samples[("portal_task_runs_total", retry_once)] == 2  # the retry, then the success
    assert samples[("portal_task_retries_total", retry_once)] == 1
    assert samples.get(("portal_task_failures_total", retry_once), 0) == 0
    assert samples[("portal_task_runs_total", broken)] == 1
    assert samples[("portal_task_failures_total", broken)] == 1
    assert samples.get(("portal_task_retries_total", broken), 0) == 0
    assert samples[("portal_task_duration_seconds_count", retry_once)] == 2
    assert samples[("portal_task_duration_seconds_count", broken)] == 1
    assert not (multiproc_dir / "counter_999999.db").exists()


def test_the_web_metrics_read_the_queue_depth_from_the_broker(workers):
    # No worker started: what is queued stays queued.
    for _ in range(3):
        tasks.broken.delay()

    text = exposition()[0].decode()

    assert 'portal_task_queue_depth{queue="celery"} 3.0' in text
    assert "portal_task_unacked 0.0" in text
