from __future__ import annotations

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        # Monitoring observes the other apps through their signals; they never import it.
        from core.cache import stats_recorded
        from core.ratelimit import request_refused
        from monitoring import metrics

        stats_recorded.connect(metrics.count_cache_read, dispatch_uid="monitoring.cache_reads")
        request_refused.connect(metrics.count_rate_limited, dispatch_uid="monitoring.rate_limited")
