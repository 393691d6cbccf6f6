"""Redis hung: a circuit breaker in front of Redis, per process. After a connection error or a
timeout, every Redis call fails at once for OPEN_SECONDS instead of waiting its own socket
timeout; then the next call tries Redis again. django-redis already turns the failure into a
cache miss (IGNORE_EXCEPTIONS), so a page costs at most one socket timeout per process every
OPEN_SECONDS while Redis hangs, not one per cache call (about ten per API request).

Proposed for core/cache.py (the class) and portal/settings.py (`"CONNECTION_POOL_KWARGS":
{"connection_class": BreakerConnection}` in the Redis cache's OPTIONS). It sits under redis-py,
so every user of the cache gets it: pages, sessions, rate limits, health checks."""

from __future__ import annotations

import threading
import time
from typing import Any

from redis.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from portal import settings

OPEN_SECONDS = 5.0

_lock = threading.Lock()
_open_until = 0.0


def _check() -> None:
    if time.monotonic() < _open_until:
        raise RedisConnectionError("Redis circuit open: a recent call failed")


def _trip() -> None:
    global _open_until
    with _lock:
        _open_until = time.monotonic() + OPEN_SECONDS


class BreakerConnection(Connection):
    """redis-py's TCP connection, failing fast while the breaker is open."""

    def connect(self) -> None:
        _check()
        try:
            super().connect()  # type: ignore[no-untyped-call]
        except (RedisConnectionError, RedisTimeoutError):
            _trip()
            raise

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        _check()
        try:
            super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]
        except (RedisConnectionError, RedisTimeoutError):
            _trip()
            raise

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError):
            _trip()
            raise


cache: dict[str, Any] = settings.CACHES["default"]
if str(cache["BACKEND"]).startswith("django_redis"):
    cache["OPTIONS"]["CONNECTION_POOL_KWARGS"] = {"connection_class": BreakerConnection}
