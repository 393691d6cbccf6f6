"""The cache layer: named TTL tiers, declared cached reads, namespaced invalidation, stampede
protection and hit-rate statistics, on Django's cache (Redis in production, so every process
and host shares it).

Declare a cached read once, beside its key:

    @cached_read(tier=MEDIUM, namespace=MEMBER)
    def dashboard_summary(member_id: int) -> DashboardSummary: ...

`dashboard_summary(42)` then returns the cached value or computes and stores it. The first
argument is the read's scope in its namespace: `invalidate(MEMBER, 42)` makes everything cached
for member 42 stale in one step (the namespace version in its keys moves on), and services call
it through `invalidate_on_commit` so a rolled-back write invalidates nothing.

When an entry goes stale under load, one process recomputes it (it holds a short lock in the
cache) while the others keep serving the stale value; when there is no value at all, the others
wait briefly for the one computing it. A cache outage (django-redis ignores and logs Redis
errors) turns every read into a plain call of the function.

Imports no app of ours: every app may use it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import logging
import threading
import time
import typing
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger("core.cache")

P = ParamSpec("P")
T = TypeVar("T")


# --- Tiers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TtlTier:
    name: str
    setting: str

    @property
    def ttl(self) -> int:
        """Seconds an entry is fresh; read from settings each time so tests can change it."""
        value: int = getattr(settings, self.setting)
        return value


SHORT = TtlTier("short", "CACHE_TTL_SHORT")
MEDIUM = TtlTier("medium", "CACHE_TTL_MEDIUM")
LONG = TtlTier("long", "CACHE_TTL_LONG")
VERY_LONG = TtlTier("very_long", "CACHE_TTL_VERY_LONG")
TIERS = (SHORT, MEDIUM, LONG, VERY_LONG)


# --- Namespaces and versioned keys -----------------------------------------------------------


@dataclass(frozen=True)
class Namespace:
    """A family of cached reads invalidated together, per scope (a member id, or "all")."""

    name: str


MEMBER = Namespace("member")  # everything cached for one member; scope: the member's id
STAFF = Namespace("staff")  # the staff dashboard numbers; scope: "all"
CONFIG = Namespace("config")  # plans and configuration; scope: "all"

ALL = "all"


def _version_key(namespace: Namespace, scope: Hashable) -> str:
    return f"ns:{namespace.name}:{scope}"


def _version(namespace: Namespace, scope: Hashable) -> int | None:
    """The namespace's current version, created on first use. None when the cache is down.

    A new version starts at the current time in nanoseconds rather than at 1, so a version key
    evicted by Redis can never come back to a number that old entries still carry. `add`
    answers None only when django-redis ignored an error: the cache is down, so say so at once
    rather than spend another timeout on a hung Redis."""
    key = _version_key(namespace, scope)
    version = cache.get(key)
    if version is None:
        new = time.time_ns()
        added: bool | None = cache.add(key, new, timeout=None)  # django-stubs says bool; see above
        if added is None:
            return None
        version = new if added else cache.get(key)  # not added: another process just created it
    return int(version) if version is not None else None


def invalidate(namespace: Namespace, scope: Hashable = ALL) -> None:
    """Make every read cached in `namespace` for `scope` stale, at once, for every process."""
    key = _version_key(namespace, scope)
    try:
        cache.incr(key)
    except ValueError:  # no version yet (nothing cached), or the cache is down
        cache.add(key, time.time_ns(), timeout=None)
    for tier in _TIERS_BY_NAMESPACE.get(namespace, ()):
        stats.record(tier, "invalidations")


def invalidate_on_commit(namespace: Namespace, scope: Hashable = ALL) -> None:
    """Invalidate once the current transaction commits (at once outside a transaction), so no
    reader can cache the old data again between the invalidation and the commit."""
    transaction.on_commit(functools.partial(invalidate, namespace, scope))


# --- Cached reads -----------------------------------------------------------------------------

# How long a recomputation may hold the lock, and how long a reader with nothing to serve waits
# for it before computing the value itself.
LOCK_SECONDS = 10
WAIT_SECONDS = 2.0
_POLL_SECONDS = 0.02

_TIERS_BY_NAMESPACE: dict[Namespace, set[TtlTier]] = {}


@dataclass(frozen=True)
class _Entry:
    value: Any
    fresh_until: float


def shape_of(func: Callable[..., Any]) -> str:
    """A short fingerprint of what `func` returns: its type, with the name and type of each field
    of a dataclass, recursively. It is part of the read's keys, so a release that changes what a
    read returns uses new keys: during a rolling deploy, old and new instances share the cache
    without ever reading each other's differently shaped entries."""
    seen: set[type] = set()

    def describe(kind: Any) -> str:
        if isinstance(kind, type) and dataclasses.is_dataclass(kind) and kind not in seen:
            seen.add(kind)
            fields = typing.get_type_hints(kind)
            inner = ",".join(f"{field.name}:{describe(fields[field.name])}" for field in dataclasses.fields(kind))
            return f"{kind.__qualname__}({inner})"
        args = typing.get_args(kind)
        if args:
            return f"{describe(typing.get_origin(kind))}[{','.join(describe(arg) for arg in args)}]"
        return str(getattr(kind, "__qualname__", kind))

    try:
        description = describe(typing.get_type_hints(func).get("return"))
    except (NameError, TypeError):  # an annotation that cannot be resolved: the name alone
        description = str(inspect.signature(func).return_annotation)
    return hashlib.blake2b(description.encode(), digest_size=4).hexdigest()


class CachedRead(Generic[P, T]):
    """A function whose result is cached under a versioned key; see the module docstring."""

    def __init__(self, func: Callable[P, T], *, tier: TtlTier, namespace: Namespace) -> None:
        functools.update_wrapper(self, func)
        self.func = func
        self.tier = tier
        self.namespace = namespace
        self.name = f"{func.__module__}.{func.__qualname__}"
        self._signature = inspect.signature(func)
        self._shape: str | None = None  # worked out on first use, once every type is defined
        _TIERS_BY_NAMESPACE.setdefault(namespace, set()).add(tier)

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str | None:
        """The cache key for these arguments under the current version; None if the cache is down.

        The arguments are bound to the function's parameters first, so `f(42)` and
        `f(member_id=42)` share one entry, and the scope is the first parameter however it was
        passed (by keyword it would otherwise escape `invalidate(MEMBER, 42)`)."""
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = list(bound.arguments.values())
        scope = values[0] if values else ALL
        version = _version(self.namespace, scope)
        if version is None:
            return None
        if self._shape is None:
            self._shape = shape_of(self.func)
        return (
            f"{self.namespace.name}:{scope}:v{version}:{self.name}@{self._shape}:"
            f"{':'.join(str(value) for value in values)}"
        )

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T:
        key = self.key(*args, **kwargs)
        if key is None:
            stats.record(self.tier, "misses")
            return self.func(*args, **kwargs)
        entry = cache.get(key)
        if isinstance(entry, _Entry):
            if entry.fresh_until > time.time():
                stats.record(self.tier, "hits")
                return entry.value  # type: ignore[no-any-return]
            # Stale: one process refreshes it; the others serve the stale value meanwhile.
            if not self._lock(key):
                stats.record(self.tier, "hits")
                return entry.value  # type: ignore[no-any-return]
            return self._compute(key, True, args, kwargs)
        if self._lock(key):
            return self._compute(key, True, args, kwargs)
        # Someone else is computing it: wait for their value rather than add to the load.
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            time.sleep(_POLL_SECONDS)
            entry = cache.get(key)
            if isinstance(entry, _Entry):
                stats.record(self.tier, "hits")
                return entry.value  # type: ignore[no-any-return]
        return self._compute(key, False, args, kwargs)

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> T:
        """Compute and store the value now, fresh or not (prewarming)."""
        key = self.key(*args, **kwargs)
        if key is None:
            return self.func(*args, **kwargs)
        return self._compute(key, False, args, kwargs)

    def _lock(self, key: str) -> bool:
        # True when this process may compute. `add` answers None when the cache is down: then
        # there is nobody to coordinate with, so compute.
        return cache.add(f"lock:{key}", 1, timeout=LOCK_SECONDS) is not False

    def _compute(self, key: str, locked: bool, args: Any, kwargs: Any) -> T:
        stats.record(self.tier, "misses")
        try:
            value = self.func(*args, **kwargs)
            ttl = self.tier.ttl
            # Kept past its freshness for as long again, to be served while one process refreshes it.
            cache.set(key, _Entry(value, time.time() + ttl), timeout=2 * ttl)
            stats.record(self.tier, "sets")
            return value
        finally:
            if locked:
                cache.delete(f"lock:{key}")


def cached_read(*, tier: TtlTier, namespace: Namespace) -> Callable[[Callable[P, T]], CachedRead[P, T]]:
    """Declare a cached read. Its first argument, if any, is its scope in `namespace`."""

    def decorate(func: Callable[P, T]) -> CachedRead[P, T]:
        return CachedRead(func, tier=tier, namespace=namespace)

    return decorate


# --- Statistics --------------------------------------------------------------------------------

EVENTS = ("hits", "misses", "sets", "invalidations")

# Sent with `tier` (a TtlTier) and `event` (one of EVENTS) as each is counted, so that monitoring can
# count them per process for Prometheus while this module knows nothing of monitoring.
stats_recorded = Signal()


class CacheStats:
    """Hits, misses, sets and invalidations per tier, added up across every process.

    Counted in memory and added to shared counters in the cache at most once a second, so
    counting costs no round trip per read. `totals()` flushes this process's counts first."""

    FLUSH_SECONDS = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], int] = {}
        self._flushed_at = time.monotonic()

    @staticmethod
    def _key(tier: str, event: str) -> str:
        return f"stats:{tier}:{event}"

    def record(self, tier: TtlTier, event: str) -> None:
        stats_recorded.send(sender=CacheStats, tier=tier, event=event)
        with self._lock:
            self._pending[(tier.name, event)] = self._pending.get((tier.name, event), 0) + 1
            due = time.monotonic() - self._flushed_at >= self.FLUSH_SECONDS
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            self._flushed_at = time.monotonic()
        for (tier, event), count in pending.items():
            if not self._add_to(self._key(tier, event), count):
                # The cache is down: the remaining counts are lost with this one, rather than
                # each costing a socket timeout on a hung Redis.
                break

    @staticmethod
    def _add_to(key: str, count: int) -> bool:
        """Add `count` to a shared counter, creating it on first use; False if the cache is down
        (django-redis ignored an error and answered None).

        When two processes (or threads) both find the counter missing, the one whose `add`
        loses adds to the winner's counter rather than dropping its count."""
        for _ in range(3):
            try:
                return cache.incr(key, count) is not None
            except ValueError:  # no counter yet
                added: bool | None = cache.add(key, count, timeout=None)
                if added is not False:
                    return added is not None
        return True

    def totals(self) -> dict[str, dict[str, float]]:
        """{tier: {hits, misses, sets, invalidations, hit_rate}}; hit_rate is hits / (hits + misses)."""
        self.flush()
        keys = [self._key(tier.name, event) for tier in TIERS for event in EVENTS]
        found = cache.get_many(keys)
        result: dict[str, dict[str, float]] = {}
        for tier in TIERS:
            counts: dict[str, float] = {event: int(found.get(self._key(tier.name, event), 0)) for event in EVENTS}
            reads = counts["hits"] + counts["misses"]
            counts["hit_rate"] = counts["hits"] / reads if reads else 0.0
            result[tier.name] = counts
        return result

    def reset(self) -> None:
        with self._lock:
            self._pending = {}
        cache.delete_many([self._key(tier.name, event) for tier in TIERS for event in EVENTS])


stats = CacheStats()


# --- Health and logging -----------------------------------------------------------------------


@dataclass(frozen=True)
class CacheHealth:
    up: bool
    latency_ms: float
    error: str = ""


def check_cache() -> CacheHealth:
    """Round-trip a probe through the cache's own client, with errors surfaced (the cache
    itself swallows Redis errors, which is right for pages and wrong for a health check)."""
    started = time.perf_counter()
    try:
        if str(settings.CACHES["default"]["BACKEND"]).startswith("django_redis"):
            from django_redis import get_redis_connection

            get_redis_connection("default").ping()
        else:
            cache.set("health:probe", 1, timeout=10)
    except Exception as exc:
        return CacheHealth(False, (time.perf_counter() - started) * 1000, type(exc).__name__)
    return CacheHealth(True, (time.perf_counter() - started) * 1000)


class OncePerInterval(logging.Filter):
    """Lets one record through per `interval` seconds and says how many it held back, so a Redis
    outage logs a line a minute instead of one per request."""

    def __init__(self, interval: float = 60.0) -> None:
        super().__init__()
        self.interval = interval
        self._last = -float("inf")
        self._held = 0
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.interval:
                self._held += 1
                return False
            held, self._held, self._last = self._held, 0, now
        if held:
            record.msg = f"{record.msg} ({held} more like it in the last {self.interval:.0f} s)"
        return True
