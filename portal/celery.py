"""The Celery application: background work (mail, and the tasks of each app's `tasks.py`) run by
`celery -A portal worker` (`make worker`), schedules by `celery -A portal beat` (`make beat`).

Configured from Django's settings, every `CELERY_*` one (portal/settings.py, "Background jobs"):
Redis as the broker, JSON only, late acknowledgement so a task whose worker dies runs again.
With no broker configured (no REDIS_URL: `make run`, `make test`), tasks run eagerly, in the
process that queues them.

Worker metrics (monitoring/metrics.py counts runs, failures, retries and durations of each task
through Celery's signals): a worker's pool processes each keep their counters in files in
PROMETHEUS_MULTIPROC_DIR, as gunicorn's workers do, and the worker's main process serves their
sum on CELERY_WORKER_METRICS_PORT for Prometheus to scrape (`serve_worker_metrics`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import beat_init, worker_init, worker_process_shutdown
from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

logger = logging.getLogger("portal.celery")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
@beat_init.connect
def refuse_to_run_without_a_broker(**kwargs: Any) -> None:
    """A worker or beat on the in-process broker of the eager default would wait for nothing."""
    from django.conf import settings

    if str(settings.CELERY_BROKER_URL).startswith("memory://"):
        # SystemExit, since Celery logs and carries on past any Exception of a signal's receiver.
        raise SystemExit(
            "CELERY_BROKER_URL is not set: a worker or beat needs Redis (set REDIS_URL or CELERY_BROKER_URL)."
        )


@worker_init.connect
def serve_worker_metrics(**kwargs: Any) -> None:
    """In the worker's main process, before its pool starts: empty the metrics directory (files
    of an earlier run would be added to this one's) and serve the pool's counters, added up, on
    CELERY_WORKER_METRICS_PORT. Off when the port is not set."""
    from django.conf import settings

    port: int | None = settings.CELERY_WORKER_METRICS_PORT
    if port is None:
        return
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if not directory:
        raise ImproperlyConfigured(
            "CELERY_WORKER_METRICS_PORT needs PROMETHEUS_MULTIPROC_DIR: the worker's processes count into files there."
        )
    os.makedirs(directory, exist_ok=True)
    for leftover in os.scandir(directory):
        if leftover.name.endswith(".db"):
            os.unlink(leftover.path)

    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(port, addr=settings.CELERY_WORKER_METRICS_ADDRESS, registry=registry)
    logger.info("Worker metrics on %s:%s/metrics", settings.CELERY_WORKER_METRICS_ADDRESS, port)


@worker_process_shutdown.connect
def forget_dead_pool_process(pid: int | None = None, **kwargs: Any) -> None:
    """A pool process is gone: drop its live gauges (its counters stay: what it counted happened)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") and pid:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
