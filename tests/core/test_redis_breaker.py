"""The Redis circuit breaker (core/redis_breaker.py), against a server that accepts
connections and never answers, as a hung Redis does."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import redis

from core import redis_breaker
from core.redis_breaker import BreakerConnectionPool
from tests.portal.test_settings import settings_with


class HungServer:
    """Accepts connections and reads what is sent, never answering; counts the connections."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            self.held.append(connection)

    def close(self) -> None:
        self.listener.close()
        for connection in self.held:
            connection.close()


@pytest.fixture
def hung() -> Iterator[HungServer]:
    redis_breaker.reset()
    server = HungServer()
    yield server
    server.close()
    redis_breaker.reset()


def test_after_a_timeout_calls_fail_at_once_until_the_circuit_closes(
    hung: HungServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(redis_breaker, "_now", lambda: now[0])
    pool = BreakerConnectionPool.from_url(f"redis://127.0.0.1:{hung.port}/0", socket_timeout=0.2)
    client = redis.Redis(connection_pool=pool)
    # Waits its socket timeout once: the circuit trips, and redis-py's own retries fail at once.
    with pytest.raises((redis.exceptions.TimeoutError, redis.exceptions.ConnectionError)):
        client.get("key")
    assert hung.connections == 1

    for _ in range(5):
        with pytest.raises(redis.exceptions.ConnectionError, match="circuit open"):
            client.get("key")
    assert hung.connections == 1  # nothing reached the server: no timeout waited

    now[0] += redis_breaker.OPEN_SECONDS + 0.1
    with pytest.raises((redis.exceptions.TimeoutError, redis.exceptions.ConnectionError)):
        client.get("key")  # tried again, and it still hangs
    assert hung.connections == 2


def test_the_portal_cache_uses_the_breaker_for_redis() -> None:
    cache = settings_with(REDIS_URL="redis://127.0.0.1:6379/0")["cache"]
    assert cache["OPTIONS"]["CONNECTION_POOL_CLASS"] == "core.redis_breaker.BreakerConnectionPool"


def test_a_refused_connection_trips_the_circuit_too() -> None:
    redis_breaker.reset()
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    client = redis.Redis(connection_pool=BreakerConnectionPool.from_url(f"redis://127.0.0.1:{port}/0"))
    with pytest.raises(redis.exceptions.ConnectionError):
        client.get("key")
    with pytest.raises(redis.exceptions.ConnectionError, match="circuit open"):
        client.get("key")
    redis_breaker.reset()
