"""App configurations that only the bench settings use."""

from __future__ import annotations

from monitoring.apps import MonitoringConfig


class UnobservedMonitoringConfig(MonitoringConfig):
    """The monitoring app (health checks and pages) without its signal receivers, which count
    every cached read and rate-limit refusal for Prometheus."""

    default = False

    def ready(self) -> None:
        pass
