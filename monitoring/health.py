"""Running the health checks of `monitoring/checks.py`: each in a thread of its own under its own
deadline, their results in three states, and when each was last seen failing.

A hung dependency (a database that accepts connections and never answers) costs a probe at
most the check's timeout: the probe stops waiting and reports the check down. The thread is
left to finish on its own (it is a daemon, so it never holds up an exit), and while it runs no
second thread is started for the same check: the next probe waits on the one in flight, so a
hung dependency probed every few seconds cannot pile up threads or connections.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.core.cache import cache
from django.db import connections
from django.utils import timezone
from health_check.exceptions import HealthCheckException, ServiceWarning

from monitoring.checks import Measurement, PortalCheck

logger = logging.getLogger("monitoring.health")


class State(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"


@dataclass(frozen=True)
class LastFailure:
    at: datetime.datetime
    state: State


@dataclass(frozen=True)
class CheckResult:
    name: str
    title: str
    critical: bool
    state: State
    summary: str
    latency_ms: float  # how long the check took, up to its timeout
    measurements: dict[str, Measurement]
    last_failure: LastFailure | None = None


@dataclass(frozen=True)
class Report:
    state: State
    results: tuple[CheckResult, ...]
    checked_at: datetime.datetime

    def get(self, name: str) -> CheckResult | None:
        return next((result for result in self.results if result.name == name), None)

    def public(self) -> dict[str, Any]:
        """States only: no latency, numbers or messages, which could tell an outsider about
        our hosts, versions or load."""
        return {"status": self.state, "checks": {result.name: result.state for result in self.results}}

    def detailed(self) -> dict[str, Any]:
        return {
            "status": self.state,
            "checked_at": self.checked_at.isoformat(),
            "checks": {
                result.name: {
                    "title": result.title,
                    "state": result.state,
                    "critical": result.critical,
                    "summary": result.summary,
                    "latency_ms": round(result.latency_ms, 2),
                    "measurements": result.measurements,
                    "last_failure": (
                        {"at": result.last_failure.at.isoformat(), "state": result.last_failure.state}
                        if result.last_failure
                        else None
                    ),
                }
                for result in self.results
            },
        }


def overall(results: Iterable[CheckResult]) -> State:
    """Down when a critical check is down (the portal cannot serve); degraded when anything
    else is not ok (it serves, with something to fix); ok otherwise."""
    state = State.OK
    for result in results:
        if result.state is State.DOWN and result.critical:
            return State.DOWN
        if result.state is not State.OK:
            state = State.DEGRADED
    return state


# --- Running ---------------------------------------------------------------------------------


class _Run:
    """One run of one check, in its own thread."""

    def __init__(self, check: PortalCheck) -> None:
        self.check = check
        self.started = time.monotonic()
        self.outcome: tuple[State, str, float] | None = None
        self.thread = threading.Thread(target=self, name=f"health-check-{check.name}", daemon=True)

    def __call__(self) -> None:
        started = time.perf_counter()
        try:
            self.check.run()
            state, summary = State.OK, self.check.summary or "ok"
        except ServiceWarning as exc:
            state, summary = State.DEGRADED, str(exc.message)
        except HealthCheckException as exc:
            state, summary = State.DOWN, str(exc.message)
        except Exception:
            logger.exception("Health check %s failed unexpectedly", self.check.name)
            state, summary = State.DOWN, "unexpected error: see the log"
        finally:
            # This thread's own connections: a pooled one goes back to the pool.
            connections.close_all()
        self.outcome = (state, summary, (time.perf_counter() - started) * 1000)

    @property
    def deadline(self) -> float:
        return self.started + self.check.timeout.total_seconds()

    def result(self) -> CheckResult:
        check = self.check
        if self.outcome is None:
            timeout = check.timeout.total_seconds()
            state, summary, latency_ms = State.DOWN, f"no answer within {timeout:g} s", timeout * 1000
        else:
            state, summary, latency_ms = self.outcome
        return CheckResult(
            name=check.name,
            title=check.title,
            critical=check.critical,
            state=state,
            summary=summary,
            latency_ms=latency_ms,
            measurements=dict(check.measurements),
        )


_in_flight: dict[str, _Run] = {}
_in_flight_lock = threading.Lock()


def _start(kind: type[PortalCheck]) -> _Run:
    """A new run of the check, or the one still in flight from an earlier probe."""
    with _in_flight_lock:
        running = _in_flight.get(kind.name)
        if running is not None and running.thread.is_alive():
            return running
        run = _Run(kind())
        _in_flight[kind.name] = run
        run.thread.start()
        return run


def run_checks(kinds: Iterable[type[PortalCheck]], *, with_last_failures: bool = False) -> Report:
    """Run the checks side by side and wait for each until its deadline, no longer.

    Failures are recorded in `failures`; with `with_last_failures`, each result also says when
    its check was last seen failing (by any process, while the cache is up)."""
    runs = [_start(kind) for kind in kinds]
    for run in runs:
        run.thread.join(max(0.0, run.deadline - time.monotonic()))
    results = [run.result() for run in runs]
    cache_result = next((result for result in results if result.name == "cache"), None)
    cache_up = cache_result is not None and cache_result.state is State.OK
    failures.record(results, cache_up=cache_up)
    if with_last_failures:
        seen = failures.lookup([result.name for result in results], cache_up=cache_up)
        results = [dataclasses.replace(result, last_failure=seen.get(result.name)) for result in results]
    return Report(state=overall(results), results=tuple(results), checked_at=timezone.now())


# --- When each check last failed -------------------------------------------------------------


class FailureLog:
    """When each check was last seen not ok, kept in this process's memory and in the cache.

    Memory survives the cache going down (so the page can say when Redis was last seen failing
    even while it is); the cache shares what each process saw with the others and survives a
    restart. The cache is read and written only when this run found it up, so a dead or hung
    Redis costs the status page nothing more."""

    KEY = "health:last-failure:{name}"
    KEEP_SECONDS = 30 * 86400

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._memory: dict[str, LastFailure] = {}

    def record(self, results: Iterable[CheckResult], *, cache_up: bool) -> None:
        now = timezone.now()
        failing = {result.name: LastFailure(now, result.state) for result in results if result.state is not State.OK}
        if not failing:
            return
        with self._lock:
            self._memory.update(failing)
        if cache_up:
            shared = {self.KEY.format(name=name): _dump(seen) for name, seen in failing.items()}
            cache.set_many(shared, self.KEEP_SECONDS)

    def lookup(self, names: list[str], *, cache_up: bool) -> dict[str, LastFailure]:
        with self._lock:
            found = {name: self._memory[name] for name in names if name in self._memory}
        if not cache_up:
            return found
        keys = {self.KEY.format(name=name): name for name in names}
        shared = {keys[key]: _load(value) for key, value in cache.get_many(list(keys)).items()}
        # What only this process saw (the cache's own outage, say) goes to the shared record.
        newer = {
            self.KEY.format(name=name): _dump(seen)
            for name, seen in found.items()
            if (other := shared.get(name)) is None or other.at < seen.at
        }
        if newer:
            cache.set_many(newer, self.KEEP_SECONDS)
        for name, seen in shared.items():
            if seen is not None and (name not in found or found[name].at < seen.at):
                found[name] = seen
        return found

    def clear(self) -> None:
        with self._lock:
            self._memory.clear()


def _dump(seen: LastFailure) -> tuple[str, str]:
    return (seen.at.isoformat(), str(seen.state))


def _load(value: Any) -> LastFailure | None:
    try:
        at, state = value
        return LastFailure(datetime.datetime.fromisoformat(at), State(state))
    except (TypeError, ValueError):
        return None


failures = FailureLog()


# --- The public report, shared for a few seconds ----------------------------------------------

PUBLIC_MAX_AGE = 5.0
_public: tuple[float, Report] | None = None
_public_lock = threading.Lock()


def public_report(kinds: Iterable[type[PortalCheck]]) -> Report:
    """The report for anonymous callers, run at most once per `PUBLIC_MAX_AGE` seconds per
    process, so that hammering a public URL cannot make us run every check per request."""
    global _public
    with _public_lock:
        if _public is not None and time.monotonic() - _public[0] < PUBLIC_MAX_AGE:
            return _public[1]
        report = run_checks(kinds)
        _public = (time.monotonic(), report)
        return report


def reset() -> None:
    """Forget everything kept in this process (for tests)."""
    global _public
    with _public_lock:
        _public = None
    failures.clear()
    with _in_flight_lock:
        _in_flight.clear()
