"""PostgreSQL restart: a request waits at most 2 s for a pooled connection, and the pool gives up a
reconnection after 5 s of failures, so its next attempt starts at once with the next request.

Proposed for portal/settings.py: `DATABASE_POOL_TIMEOUT = 2` and `"reconnect_timeout": 5` in the
pool options. psycopg_pool retries a failed connection with exponential backoff (1, 2, 4, 8, 16 s
...) for up to `reconnect_timeout` (5 minutes by default), and a request waiting for a connection
does not start a new attempt while a retry is scheduled: after an outage of N seconds the pool
can take about N seconds more to reconnect, while requests wait up to DATABASE_POOL_TIMEOUT (30 s,
also gunicorn's timeout) holding their worker."""

from __future__ import annotations

from typing import Any

from portal import settings

databases: dict[str, dict[str, Any]] = settings.DATABASES
for database in databases.values():
    pool = database.get("OPTIONS", {}).get("pool")
    if isinstance(pool, dict):
        pool.update(timeout=2, reconnect_timeout=5)
