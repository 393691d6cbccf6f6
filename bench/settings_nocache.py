"""The portal with its cache turned off, for bench/run.py's cache on/off effect: Django's
DummyCache stores nothing, so every cached read is computed, every session is read from the
database (`cached_db`), and rate limits count nothing. Everything else is `portal.settings`."""

from __future__ import annotations

from portal.settings import *  # noqa: F403

CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
