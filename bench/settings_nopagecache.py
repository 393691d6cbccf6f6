"""The portal with its render-once pages off (`PAGE_CACHE = False`), for bench/run.py's index
on/off effect: a warm activity page is otherwise served from the page cache without running
its query, so the index could not show on the page. Everything else is `portal.settings`."""

from __future__ import annotations

from portal.settings import *  # noqa: F403

PAGE_CACHE = False
