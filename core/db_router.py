"""The read replica: heavy read-only queries go to it when `DATABASE_REPLICA_URL` is set.

Only what is marked heavy goes there: the staff dashboard's aggregates, the Prometheus business
gauges and the admin's CSV exports, each of which scans many rows and can be a few seconds
behind. Everything else, and every write, stays on the primary, so a member always reads what
they just wrote. Code marks its reads with `heavy_reads()`:

    with heavy_reads():
        numbers = compute_the_aggregates()

Without a replica the router says nothing and Django uses `default`, as it would with no router.
If the replica cannot be reached, `heavy_reads()` logs it and the reads go to the primary: the
dashboard is slower for a while, never broken.

This module imports no app of ours, so every app may use it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.db import DatabaseError, connections
from django.db.models import Model

REPLICA = "replica"

logger = logging.getLogger(__name__)

# After the replica fails to answer, this process reads from the primary for this long before
# trying it again, so an outage costs one wait for a connection, not one per request.
RETRY_AFTER_S = 30

_heavy: ContextVar[bool] = ContextVar("portal_heavy_reads", default=False)
_skip_until = 0.0


def replica_configured() -> bool:
    return REPLICA in connections.settings


@contextmanager
def heavy_reads() -> Iterator[str]:
    """Send this block's reads to the replica, if there is one and it answers; yields the alias
    the reads will use. A connection is taken up front (from the pool on PostgreSQL), so a
    replica that is down is found here, once, rather than by each query; after that, this process
    skips it for RETRY_AFTER_S."""
    global _skip_until
    alias = "default"
    if replica_configured() and time.monotonic() >= _skip_until:
        try:
            connections[REPLICA].ensure_connection()
        except DatabaseError as exc:
            _skip_until = time.monotonic() + RETRY_AFTER_S
            # The exception's text may carry the replica's host name; its type is enough here.
            logger.warning(
                "Read replica unreachable (%s): heavy reads go to the primary for %d s.",
                type(exc).__name__,
                RETRY_AFTER_S,
            )
        else:
            alias = REPLICA
    token = _heavy.set(alias == REPLICA)
    try:
        yield alias
    finally:
        _heavy.reset(token)


class ReplicaRouter:
    """Reads inside `heavy_reads()` go to the replica; the rest is left to Django's default."""

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        return REPLICA if _heavy.get() else None

    def db_for_write(self, model: type[Model], **hints: Any) -> str | None:
        return "default"

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        # The replica is a copy of the primary: an object read from one may point at the other.
        databases = {"default", REPLICA}
        return True if {obj1._state.db, obj2._state.db} <= databases else None

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool | None:
        # Its schema comes from the primary by replication; `migrate` runs on the primary only.
        return False if db == REPLICA else None
