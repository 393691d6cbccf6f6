"""The portal with its monitoring stack taken out, for bench/run.py's monitoring on/off effect:
no Prometheus middleware or instrumented database backend, none of monitoring's middleware
(request metrics, recent traffic, the Sentry user), no cache-read counters, and no Sentry (the
bench gives this server no SENTRY_DSN). Health pages still work. Everything else is
`portal.settings`."""

from __future__ import annotations

from portal.settings import *  # noqa: F403
from portal.settings import DATABASES, INSTALLED_APPS, MIDDLEWARE

_OBSERVERS = ("django_prometheus.", "monitoring.")

MIDDLEWARE = [name for name in MIDDLEWARE if not name.startswith(_OBSERVERS)]
INSTALLED_APPS = [
    "bench.apps.UnobservedMonitoringConfig" if name == "monitoring" else name
    for name in INSTALLED_APPS
    if name != "django_prometheus"
]
for _database in DATABASES.values():
    _database["ENGINE"] = str(_database["ENGINE"]).replace("django_prometheus.db.backends.", "django.db.backends.")
