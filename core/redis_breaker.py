"""A circuit breaker under the Redis client, per process.

The cache ignores Redis errors (a miss is served from the database), but each call to a Redis
that hangs still waits its socket timeout (0.5 s), and a page makes several calls: an API request
about nine. After a failed connect or a timeout, every Redis call in this process fails at once
for OPEN_SECONDS; then the next call tries Redis again. While Redis hangs, a process pays one
timeout every OPEN_SECONDS instead of one per call. Each Redis server has its own circuit. It
sits under redis-py, so everything that uses the cache gets it: pages, sessions, rate limits and
the health check.

Wired in settings through django-redis's CONNECTION_POOL_CLASS. Imports nothing of Django's.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from redis.connection import Connection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

OPEN_SECONDS = 5.0

_lock = threading.Lock()
_open_until: dict[tuple[str, int], float] = {}  # by Redis server (host, port)
_now = time.monotonic  # the clock, replaceable in tests


def _check(server: tuple[str, int]) -> None:
    if _now() < _open_until.get(server, 0.0):
        raise RedisConnectionError("Redis circuit open: a call failed less than OPEN_SECONDS ago")


def _trip(server: tuple[str, int]) -> None:
    with _lock:
        _open_until[server] = _now() + OPEN_SECONDS


def reset() -> None:
    """Close every circuit (tests, or an operator's shell after Redis is back)."""
    with _lock:
        _open_until.clear()


class BreakerConnection(Connection):
    """redis-py's TCP connection, failing fast while its server's circuit is open."""

    @property
    def _server(self) -> tuple[str, int]:
        return (str(self.host), int(self.port))

    def connect(self) -> None:
        _check(self._server)
        try:
            super().connect()  # type: ignore[no-untyped-call]
        except (RedisConnectionError, RedisTimeoutError):
            _trip(self._server)
            raise

    # On an open connection only a timeout trips the circuit: a connection the server closed
    # while idle also fails here, and redis-py retries it on a new connection, whose connect()
    # decides whether Redis is really gone.
    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        _check(self._server)
        try:
            super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]
        except RedisTimeoutError:
            _trip(self._server)
            raise

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except RedisTimeoutError:
            _trip(self._server)
            raise


class BreakerConnectionPool(ConnectionPool):
    """A connection pool of `BreakerConnection`s, for TCP URLs (redis://, the portal's default)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("connection_class", Connection) is Connection:
            kwargs["connection_class"] = BreakerConnection
        super().__init__(*args, **kwargs)
