"""What every drill under load shares: its phases, the traffic while they run, and the figures and
verdicts it ends with."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.drills.lab import Accounts, Lab, Served, access_log, server_kind
from bench.drills.load import (
    MEMBER_FACING,
    Clock,
    Phase,
    Recorder,
    Sample,
    Traffic,
    by_phase,
    failed_samples,
    per_second,
)
from tools.servers import HOST, Gunicorn


@dataclass(frozen=True)
class Timing:
    """How long each phase lasts, at full length and with --quick."""

    full: float
    quick: float

    def seconds(self, quick: bool) -> float:
        return self.quick if quick else self.full


@dataclass(frozen=True)
class Step:
    """A phase: `action` (the fault, or its end) runs as it begins, then the load runs on."""

    phase: str
    timing: Timing
    action: Callable[[], None] | None = None
    label: str = ""


@dataclass(frozen=True)
class Expectation:
    text: str  # the words
    holds: bool
    measured: str  # the figures behind the verdict


@dataclass
class Result:
    drill: str
    title: str
    quick: bool
    started_at: str
    events: list[tuple[float, str]]  # (seconds since the start, what was done)
    phases: dict[str, Any]
    headline: dict[str, Any]  # the figures for docs/reliability.md
    expectations: list[Expectation]
    server: dict[str, Any] = field(default_factory=dict)  # from gunicorn's log
    extra: dict[str, Any] = field(default_factory=dict)
    timeline: list[dict[str, int]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)  # the first 200 failed requests
    variant: dict[str, str] = field(default_factory=dict)  # settings or gunicorn arguments tried

    @property
    def holds(self) -> bool:
        return all(expectation.holds for expectation in self.expectations)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "holds": self.holds}


@dataclass
class Run:
    """A finished run of steps under traffic: the samples, when each phase began and ended, and
    what was done when."""

    clock: Clock
    traffic: Traffic
    phases: list[Phase]
    events: list[tuple[float, str]]
    sessions: dict[str, int]
    portal: Gunicorn
    action_done: dict[str, float]  # phase: when its action had finished (the fault in place, or over)

    @property
    def samples(self) -> list[Sample]:
        return self.traffic.recorder.samples

    def phase(self, name: str) -> Phase:
        return next(phase for phase in self.phases if phase.name == name)

    def served(self) -> list[tuple[float, Served]]:
        """Access log lines, each with when its request started, in seconds since the drill's start
        (to the second: the log has whole seconds)."""
        lines = access_log(self.portal.log_text())
        return [(line.finished - line.ms / 1000 - self.clock.wall_started, line) for line in lines]


def under_load(
    lab: Lab,
    portal: Gunicorn,
    accounts: Accounts,
    steps: Sequence[Step],
    *,
    quick: bool,
    max_requests: int,
    with_writer: bool = False,
    clock: Clock | None = None,
) -> Run:
    """Run `steps` one after another while the traffic runs; stop the traffic; check every
    session (readers' and those logged in meanwhile) still opens the dashboard. `clock`: the
    drill's own, when its actions need the time (it is started anew here)."""
    clock = clock or Clock()
    clock.started, clock.wall_started = time.monotonic(), time.time()
    traffic = Traffic(
        HOST,
        portal.port,
        Recorder(clock, max_requests=max_requests),
        accounts.readers,
        accounts.logins,
        writer=accounts.writer if with_writer else None,
    )
    events: list[tuple[float, str]] = []
    phases: list[Phase] = []
    action_done: dict[str, float] = {}
    traffic.start()
    try:
        for step in steps:
            began = clock.now()
            if step.action is not None:
                step.action()
                action_done[step.phase] = clock.now()
                events.append((round(began, 2), f"{step.label} (took {clock.now() - began:.2f} s)"))
                lab.say(f"{step.label} at {began:.1f} s")
            clock.sleep_until(began + step.timing.seconds(quick))
            phases.append(Phase(step.phase, began, clock.now()))
    finally:
        traffic.stop()
    sessions = traffic.sessions_still_valid()
    return Run(clock, traffic, phases, events, sessions, portal, action_done)


def server_figures(run: Run) -> dict[str, Any]:
    """From gunicorn's log: worker timeouts, workers booted, errors logged, and per phase the
    longest time a worker spent on each kind of request (what the worker measured, without the
    wait in the listen queue that the client's latency includes)."""
    log = run.portal.log_text()
    per_phase: dict[str, dict[str, int]] = {}
    answered: dict[str, int] = {}
    for started, line in run.served():
        phase = next((phase.name for phase in run.phases if phase.start - 1 <= started < phase.end), None)
        if phase is None:
            continue
        kind = server_kind(line)
        if kind not in ("live", "ready"):
            answered[phase] = answered.get(phase, 0) + 1
        slowest = per_phase.setdefault(phase, {})
        slowest[kind] = max(slowest.get(kind, 0), line.ms)
    return {
        "worker_timeouts": log.count("WORKER TIMEOUT"),
        "workers_booted": len(re.findall(r"Booting worker with pid", log)),
        "workers_killed": len(re.findall(r"was sent SIGKILL", log)),
        "error_lines": len(re.findall(r" ERROR ", log)),
        "tracebacks": log.count("Traceback (most recent call last)"),
        "member_requests_served_per_s": {
            phase.name: round(answered.get(phase.name, 0) / max(phase.end - phase.start, 0.001), 1)
            for phase in run.phases
        },
        "max_server_ms_by_phase": {phase: dict(sorted(kinds.items())) for phase, kinds in per_phase.items()},
    }


def headline(run: Run) -> dict[str, Any]:
    """The figures docs/reliability.md shows for every drill under load."""
    member = [sample for sample in run.samples if sample.kind in MEMBER_FACING]
    return {
        "requests": len(run.samples),
        "member_facing_requests": len(member),
        "5xx": sum(sample.server_error for sample in member),
        "no_answer": sum(sample.status is None for sample in member),
        "other_failures": sum(
            not sample.ok and sample.status is not None and not sample.server_error for sample in member
        ),
        "max_latency_ms": round(max((sample.latency for sample in member), default=0) * 1000),
        "sessions": run.sessions,
    }


def result(name: str, title: str, run: Run, expectations: list[Expectation], *, quick: bool, **extra: Any) -> Result:
    return Result(
        drill=name,
        title=title,
        quick=quick,
        started_at=dt.datetime.fromtimestamp(run.clock.wall_started, tz=dt.UTC).isoformat(timespec="seconds"),
        events=run.events,
        phases=by_phase(run.samples, run.phases),
        headline=headline(run),
        expectations=expectations,
        server=server_figures(run),
        extra=extra,
        timeline=per_second(run.samples),
        failed=failed_samples(run.samples),
    )


def failures(samples: Sequence[Sample], kinds: Sequence[str] = MEMBER_FACING) -> list[Sample]:
    return [sample for sample in samples if sample.kind in kinds and not sample.ok]


def describe(samples: Sequence[Sample]) -> str:
    counts: dict[str, int] = {}
    for sample in samples:
        what = f"{sample.kind}: {sample.error or sample.status}"
        counts[what] = counts.get(what, 0) + 1
    return ", ".join(f"{count}x {what}" for what, count in sorted(counts.items())) or "none"
