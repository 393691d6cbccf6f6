"""The background-job settings read from the environment: the broker on REDIS_URL's next
database, eager without a broker, and start-up errors that name the variable."""

from __future__ import annotations

import json

import pytest

from tests.portal.test_settings import run_python, start_up_error

JOBS = [
    "CELERY_BROKER_URL", "CELERY_TASK_ALWAYS_EAGER", "CELERY_TASK_SOFT_TIME_LIMIT", "CELERY_TASK_TIME_LIMIT",
    "CELERY_BROKER_VISIBILITY_TIMEOUT", "MAIL_MAX_RETRIES", "MAIL_RETRY_DELAY", "CELERY_WORKER_METRICS_PORT",
]  # fmt: skip
DUMP = """
import json, django
from django.conf import settings
django.setup()
from portal.celery import app
print(json.dumps({
    "broker": app.conf.broker_url,
    "eager": app.conf.task_always_eager,
    "serializer": [app.conf.task_serializer, app.conf.result_serializer, list(app.conf.accept_content)],
    "acks_late": app.conf.task_acks_late,
    "reject_on_worker_lost": app.conf.task_reject_on_worker_lost,
    "prefetch": app.conf.worker_prefetch_multiplier,
    "limits": [app.conf.task_soft_time_limit, app.conf.task_time_limit],
    "visibility": app.conf.broker_transport_options["visibility_timeout"],
    "retry_on_startup": app.conf.broker_connection_retry_on_startup,
}))
"""


def jobs_settings(**env: str) -> dict[str, object]:
    result = run_python(DUMP, **{**dict.fromkeys(JOBS, ""), "REDIS_URL": "", **env})
    assert result.returncode == 0, result.stderr
    values: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return values


def test_without_a_broker_tasks_run_eagerly_in_the_process():
    values = jobs_settings()
    assert values["eager"] is True
    assert str(values["broker"]).startswith("memory://")


def test_the_broker_is_redis_urls_next_database_with_json_late_acks_and_limits():
    values = jobs_settings(REDIS_URL="redis://cache.internal:6379/3")
    assert values["broker"] == "redis://cache.internal:6379/4"
    assert values["eager"] is False
    assert values["serializer"] == ["json", "json", ["json"]]
    assert values["acks_late"] is True
    assert values["reject_on_worker_lost"] is True
    assert values["prefetch"] == 1
    assert values["limits"] == [300, 360]
    assert values["visibility"] == 3600
    assert values["retry_on_startup"] is True


def test_an_explicit_broker_url_wins():
    values = jobs_settings(REDIS_URL="redis://cache:6379/0", CELERY_BROKER_URL="redis://queue:6379/0")
    assert values["broker"] == "redis://queue:6379/0"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CELERY_BROKER_URL": "amqp://rabbit:5672//"}, "CELERY_BROKER_URL"),
        ({"CELERY_BROKER_URL": "redis://queue:port/1"}, "CELERY_BROKER_URL"),
        ({"CELERY_TASK_ALWAYS_EAGER": "false"}, "CELERY_TASK_ALWAYS_EAGER"),
        ({"CELERY_TASK_ALWAYS_EAGER": "sometimes"}, "CELERY_TASK_ALWAYS_EAGER"),
        ({"REDIS_URL": "redis://cache:6379/15"}, "CELERY_BROKER_URL"),
        ({"CELERY_TASK_SOFT_TIME_LIMIT": "60", "CELERY_TASK_TIME_LIMIT": "60"}, "CELERY_TASK_TIME_LIMIT"),
        ({"CELERY_TASK_SOFT_TIME_LIMIT": "0"}, "CELERY_TASK_SOFT_TIME_LIMIT"),
        ({"CELERY_BROKER_VISIBILITY_TIMEOUT": "300"}, "CELERY_BROKER_VISIBILITY_TIMEOUT"),
        ({"MAIL_MAX_RETRIES": "none"}, "MAIL_MAX_RETRIES"),
        ({"MAIL_RETRY_DELAY": "0"}, "MAIL_RETRY_DELAY"),
        ({"CELERY_WORKER_METRICS_PORT": "70000"}, "CELERY_WORKER_METRICS_PORT"),
    ],
)
def test_a_bad_background_job_value_stops_start_up_naming_the_variable(env, named):
    line = start_up_error(**{**dict.fromkeys(JOBS, ""), "REDIS_URL": "", **env})
    assert "ImproperlyConfigured" in line
    assert named in line
