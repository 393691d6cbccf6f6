"""Redis stopped or hung: allauth's rate limits fail open when the cache is down.

allauth 65.21 (allauth/core/internal/ratelimit.py) guards each rate-limit count with a lock taken
by `cache.add(lock_key)`, retried for up to 1 s. With Redis down, django-redis (IGNORE_EXCEPTIONS)
answers None, the lock is never taken, and the action is refused as over its limit: every login
answers 429 (or "too many failed login attempts"), and so do sign-up and password reset, for as
long as Redis is down. Here, an `add` answered by None (the cache is down; a lock held by another
process answers False) lets the action through, as the portal's own API limiter does
(core/ratelimit.py).

This module patches allauth's private function, for the drill only. The change proposed for the
portal is in members/ (the login limits, issue 10 item 4): count login attempts with a limiter
that fails open, e.g. core/ratelimit.py's `hit()`, and keep allauth's limits for the rest."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from allauth.core.internal import ratelimit
from django.core.cache import cache

_locked = ratelimit.cache_lock


@contextmanager
def _cache_lock(cache_key: str) -> Iterator[bool]:
    probe: bool | None = cache.add(f"{cache_key}:lock", True, timeout=ratelimit.CACHE_LOCK_TIMEOUT)
    if probe is None:  # the cache is down: nothing to count against, let the action through
        yield True
        return
    if probe:
        try:
            yield True
        finally:
            cache.delete(f"{cache_key}:lock")
        return
    with _locked(cache_key) as locked:
        yield locked


ratelimit.cache_lock = _cache_lock
