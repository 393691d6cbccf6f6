from __future__ import annotations

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        # Monitoring observes the other apps through their signals; they never import it.
        from celery.signals import task_failure, task_postrun, task_prerun, task_retry

        from core.cache import stats_recorded
        from core.mail import mail_failed
        from core.ratelimit import request_refused
        from monitoring import metrics

        stats_recorded.connect(metrics.count_cache_read, dispatch_uid="monitoring.cache_reads")
        request_refused.connect(metrics.count_rate_limited, dispatch_uid="monitoring.rate_limited")
        mail_failed.connect(metrics.count_mail_failed, dispatch_uid="monitoring.mail_failed")
        # Celery's own signals, in whichever process runs a task: a worker's pool, or this one (eager).
        task_prerun.connect(metrics.count_task_start, dispatch_uid="monitoring.task_start", weak=False)
        task_postrun.connect(metrics.count_task_end, dispatch_uid="monitoring.task_end", weak=False)
        task_failure.connect(metrics.count_task_failure, dispatch_uid="monitoring.task_failure", weak=False)
        task_retry.connect(metrics.count_task_retry, dispatch_uid="monitoring.task_retry", weak=False)
