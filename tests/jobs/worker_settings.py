"""The portal's settings for the workers that tests start (tests/jobs/workers.py), with one
change: a worker looks for tasks of dead workers every second, not every 100 s (kombu's
default sweep), so the kill test waits for the visibility timeout it sets, not for the sweep."""

from __future__ import annotations

from portal.settings import *  # noqa: F403
from portal.settings import CELERY_BROKER_TRANSPORT_OPTIONS

CELERY_BROKER_TRANSPORT_OPTIONS = {
    **CELERY_BROKER_TRANSPORT_OPTIONS,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}
