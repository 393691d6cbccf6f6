"""The portal's settings with every schedule every 3 seconds, for the beat tests' processes
(`DJANGO_SETTINGS_MODULE=tests.fast_beat_settings`): periods of a day cannot be watched."""

from __future__ import annotations

import datetime as dt

from portal.settings import *  # noqa: F403
from portal.settings import CELERY_BEAT_SCHEDULE

PERIOD = dt.timedelta(seconds=3)
CELERY_BEAT_SCHEDULE = {name: {**entry, "schedule": PERIOD} for name, entry in CELERY_BEAT_SCHEDULE.items()}
