"""Request rate, error rate and p95 latency of the last few minutes, for `/api/health/advanced`.

Prometheus (monitoring/metrics.py) has the same numbers added up across every worker, but only
as counters and histograms since start: a rate and a percentile need a query over two scrapes.
The advanced health endpoint answers on its own, so this keeps a small rolling window of recent
requests in each process. Its numbers are this process's, and say so (`"scope": "process"`).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from django.http import HttpRequest
from django.http.response import HttpResponseBase

# Probes and scrapes arrive on a schedule and would drown the members' traffic in the numbers.
IGNORED_PREFIXES = ("/health/", "/api/health", "/metrics")


@dataclass(frozen=True)
class TrafficSummary:
    window_seconds: float
    requests: int
    requests_per_second: float
    errors: int
    error_rate: float  # share of requests answered 5xx
    p95_ms: float | None

    def as_dict(self) -> dict[str, float | int | str | None]:
        return {
            "scope": "process",
            "window_seconds": round(self.window_seconds, 1),
            "requests": self.requests,
            "requests_per_second": round(self.requests_per_second, 3),
            "errors": self.errors,
            "error_rate": round(self.error_rate, 5),
            "p95_ms": None if self.p95_ms is None else round(self.p95_ms, 1),
        }


class RecentRequests:
    """(finished at, duration, failed) of each request of the last `window` seconds, at most
    `limit` of them (the newest), so memory stays bounded however busy the process is."""

    def __init__(self, window: float = 300.0, limit: int = 20_000) -> None:
        self.window = window
        self._lock = threading.Lock()
        self._requests: deque[tuple[float, float, bool]] = deque(maxlen=limit)
        self._since = time.monotonic()

    def record(self, duration: float, *, failed: bool) -> None:
        with self._lock:
            self._requests.append((time.monotonic(), duration, failed))

    def summary(self) -> TrafficSummary:
        now = time.monotonic()
        start = now - self.window
        with self._lock:
            while self._requests and self._requests[0][0] < start:
                self._requests.popleft()
            recent = list(self._requests)
            # A process younger than the window (or a full deque) has seen a shorter span.
            span = min(self.window, now - self._since)
            if len(recent) == self._requests.maxlen:
                span = min(span, now - recent[0][0])
        durations = sorted(duration for _, duration, _ in recent)
        errors = sum(1 for _, _, failed in recent if failed)
        count = len(recent)
        return TrafficSummary(
            window_seconds=span,
            requests=count,
            requests_per_second=count / span if span > 0 else 0.0,
            errors=errors,
            error_rate=errors / count if count else 0.0,
            p95_ms=durations[max(0, math.ceil(0.95 * count) - 1)] * 1000 if count else None,
        )

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._since = time.monotonic()


recent_requests = RecentRequests()


class RecentRequestsMiddleware:
    """Records each request's duration and whether it failed (5xx) in `recent_requests`.
    Outermost but one (after Prometheus's), so it times the other middleware too."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.path.startswith(IGNORED_PREFIXES):
            return self.get_response(request)
        started = time.perf_counter()
        failed = True  # an exception escaping every handler is a failure too
        try:
            response = self.get_response(request)
            failed = response.status_code >= 500
            return response
        finally:
            recent_requests.record(time.perf_counter() - started, failed=failed)
