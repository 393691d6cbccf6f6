"""API rate limits, counted in the cache so that every process and host shares them (Redis in
production; per process with the local-memory cache).

Each limit is a sliding window approximated from two fixed windows: the count of the current
window plus the previous window's count weighted by how much of it still overlaps. That smooths
the burst a plain fixed window allows at its boundary, at the cost of one more cache read.

Three limits apply to `/api/v1/`: one per client IP (every request, before authentication), one
per token (after authentication), and one on the requests refused 401 per client IP, which
stops an address that guesses tokens. Another, per client IP, applies to the Web Vitals beacons
of `/vitals/`. Responses carry the `RateLimit-Policy` and `RateLimit` headers of the IETF draft,
and a refused request also gets `Retry-After`.

Every per-address limit counts by `client_subject`: the client's address behind our trusted
proxies, and for IPv6 its whole network of `RATE_LIMIT_IPV6_PREFIX` bits (a /64 by default),
since one subscriber holds at least a /64 and could otherwise take a fresh address per request.

When the cache is down, requests are let through (the limiter fails open): availability of
the API matters more than limits during a Redis outage, which monitoring reports on its own.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from django.conf import settings
from django.core.cache import cache
from django.dispatch import Signal
from django.http import HttpRequest, HttpResponse, JsonResponse

from core.proxies import client_ip

API_PREFIX = "/api/v1/"

# Sent with `limit` (the Limit) each time a request is refused, so monitoring can count refusals
# while this module knows nothing of monitoring.
request_refused = Signal()


@dataclass(frozen=True)
class Limit:
    name: str
    quota: int
    window: int  # seconds


@dataclass(frozen=True)
class Decision:
    limit: Limit
    allowed: bool
    remaining: int
    reset: int  # seconds until the window's count has dropped enough to allow a request again
    counted_in: str = ""  # the counter `hit` added this request to ("" for `peek`), for `release`
    count: int = 0  # this request's number in the current window (0 for `peek`): 1 for its first

    @property
    def retry_after(self) -> int:
        return max(1, self.reset)

    def headers(self) -> dict[str, str]:
        return headers_for([self])


def headers_for(decisions: list[Decision]) -> dict[str, str]:
    """The draft's structured headers for every limit that applied, and Retry-After if refused."""
    headers = {
        "RateLimit-Policy": ", ".join(f'"{d.limit.name}";q={d.limit.quota};w={d.limit.window}' for d in decisions),
        "RateLimit": ", ".join(f'"{d.limit.name}";r={d.remaining};t={d.reset}' for d in decisions),
    }
    refused = [d for d in decisions if not d.allowed]
    if refused:
        headers["Retry-After"] = str(max(d.retry_after for d in refused))
    return headers


class RateLimited(Exception):
    def __init__(self, decision: Decision) -> None:
        super().__init__(f"rate limit {decision.limit.name} exceeded")
        self.decision = decision


def window_keys(limit: Limit, subject: str, now: float) -> tuple[str, str]:
    """The counters of `subject` against `limit` at `now`: the current window's, the previous one's."""
    window = int(now // limit.window)
    return f"rl:{limit.name}:{subject}:{window}", f"rl:{limit.name}:{subject}:{window - 1}"


def hit(limit: Limit, subject: str, *, now: float | None = None, previous: int | None = None) -> Decision | None:
    """Count one request by `subject` against `limit`. None when the cache is down. `previous`:
    the previous window's count at `now`, when the caller read it with other keys already."""
    now = time.time() if now is None else now
    window = int(now // limit.window)
    current_key, previous_key = window_keys(limit, subject, now)
    current = _count(current_key, timeout=2 * limit.window)
    if current is None:  # the cache is down
        return None
    if previous is None:
        previous = int(cache.get(previous_key) or 0)
    elapsed = now - window * limit.window
    overlap = 1 - elapsed / limit.window
    used = current + previous * overlap
    allowed = used <= limit.quota
    if not allowed:
        request_refused.send(sender=Limit, limit=limit)
    if allowed:
        reset = math.ceil(limit.window - elapsed)
    elif previous and current <= limit.quota:
        # The previous window's weight is what pushes us over: wait until enough of it has slid out.
        needed = (used - limit.quota) / previous
        reset = math.ceil(needed * limit.window)
    else:
        reset = math.ceil(limit.window - elapsed)
    remaining = max(0, math.floor(limit.quota - used))
    return Decision(limit, allowed, remaining, reset, counted_in=current_key, count=current)


def release(decision: Decision | None) -> None:
    """Take back the request that `hit` counted for `decision`, from the window it was counted in.

    With `hit` first and `release` after, a limit can guard work that only sometimes counts (a
    password that turns out right) without a race: the count is taken before the work starts,
    so concurrent requests can never all see room for one more. Nothing happens for a `peek`,
    for a cache that was down, or for a counter that has expired meanwhile."""
    if decision is None or not decision.counted_in:
        return
    with contextlib.suppress(ValueError):  # the counter expired: nothing left to take back
        cache.decr(decision.counted_in)


def peek(
    limit: Limit, subject: str, *, now: float | None = None, counts: dict[str, Any] | None = None
) -> Decision | None:
    """Where `subject` stands against `limit`, without counting a request. Refused once the count
    has reached the quota: the next one counted would be over. `counts`: the window counters at
    `now` (`window_keys`), when the caller read them with other keys already."""
    now = time.time() if now is None else now
    window = int(now // limit.window)
    current_key, previous_key = window_keys(limit, subject, now)
    if counts is None:
        counts = cache.get_many([current_key, previous_key])
    current = int(counts.get(current_key) or 0)
    previous = int(counts.get(previous_key) or 0)
    elapsed = now - window * limit.window
    used = current + previous * (1 - elapsed / limit.window)
    allowed = used < limit.quota
    reset = math.ceil(limit.window - elapsed)
    if not allowed and previous and current < limit.quota:
        reset = math.ceil((used - limit.quota + 1) / previous * limit.window)
    return Decision(limit, allowed, max(0, math.floor(limit.quota - used)), max(1, reset))


def _count(key: str, *, timeout: int) -> int | None:
    """Add one to the counter at `key` and return it, creating it (with its expiry) on the
    window's first request, so every other request costs one round trip. None when the cache
    is down (django-redis ignored an error)."""
    for _ in range(2):
        try:
            return cast("int | None", cache.incr(key))  # django-stubs says int; see above
        except ValueError:  # no counter for this window yet
            added: bool | None = cache.add(key, 1, timeout=timeout)  # django-stubs says bool
            if added is not False:
                return None if added is None else 1
            # Another process created it meanwhile: count on it.
    return 1


def address_subject(address: str | None) -> str:
    """The subject a per-address limit counts for `address`: an IPv4 address itself (also when
    written IPv4-mapped), an IPv6 address as its network of `RATE_LIMIT_IPV6_PREFIX` bits."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, settings.RATE_LIMIT_IPV6_PREFIX), strict=False))
    return str(ip)


def client_subject(request: HttpRequest) -> str:
    """The subject every per-address limit counts a request by (see the module's docstring)."""
    return address_subject(client_ip(request))


def token_limit() -> Limit:
    return Limit("token", settings.API_RATE_LIMIT_PER_TOKEN, 60)


def ip_limit() -> Limit:
    return Limit("ip", settings.API_RATE_LIMIT_PER_IP, 60)


def auth_failure_limit() -> Limit:
    """Requests refused for want of a valid token (401), per client IP over five minutes: far
    below the IP limit, so guessing tokens stops long before the IP limit would stop it."""
    return Limit("auth_failures", settings.API_AUTH_FAILURES_PER_IP, 300)


def vitals_limit() -> Limit:
    """Web Vitals beacons per client IP (monitoring.views.web_vitals): a page view sends one or two."""
    return Limit("vitals", settings.WEB_VITALS_RATE_LIMIT_PER_IP, 60)


def _record(request: HttpRequest, decision: Decision | None) -> None:
    if decision is not None:
        decisions: list[Decision] = getattr(request, "rate_limit_decisions", [])
        request.rate_limit_decisions = [*decisions, decision]  # type: ignore[attr-defined]


def hit_token(request: HttpRequest, token_id: int) -> Decision | None:
    """Count a request of an authenticated token; raises `RateLimited` over the limit. None when
    the cache is down."""
    decision = hit(token_limit(), str(token_id))
    _record(request, decision)
    if decision is not None and not decision.allowed:
        raise RateLimited(decision)
    return decision


def rate_limited_response(decision: Decision, decisions: list[Decision]) -> HttpResponse:
    response = JsonResponse(
        {
            "code": "rate_limited",
            "message": f"Too many requests: try again in {decision.retry_after} seconds.",
            "details": {"limit": decision.limit.name, "retry_after": decision.retry_after},
        },
        status=429,
    )
    for name, value in headers_for(decisions).items():
        response[name] = value
    return response


class RateLimitMiddleware:
    """The per-IP limit on every API request, and the rate-limit headers on every API response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        ip, now = client_subject(request), time.time()
        # One round trip reads the refusals' counters and the IP limit's previous window.
        failure_keys, (_, ip_previous) = window_keys(auth_failure_limit(), ip, now), window_keys(ip_limit(), ip, now)
        counts = cache.get_many([*failure_keys, ip_previous])
        failures = peek(auth_failure_limit(), ip, now=now, counts=counts)
        if failures is not None and not failures.allowed:
            # Refused before its token is even looked at: a valid one from this address waits too.
            request_refused.send(sender=Limit, limit=failures.limit)
            return rate_limited_response(failures, [failures])
        decision = hit(ip_limit(), ip, now=now, previous=int(counts.get(ip_previous) or 0))
        _record(request, decision)
        if decision is not None and not decision.allowed:
            return rate_limited_response(decision, [decision])
        response = self.get_response(request)
        if response.status_code == 401:
            hit(auth_failure_limit(), ip)
        decisions: list[Decision] = getattr(request, "rate_limit_decisions", [])
        if decisions:
            for name, value in headers_for(decisions).items():
                response.setdefault(name, value)
        return response
