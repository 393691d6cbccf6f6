"""Redis fails under load: stopped for a minute (`redis_stop`), or hung, accepting connections but
answering nothing (`redis_hung`). The portal must keep serving from the database."""

from __future__ import annotations

from bench.drills.lab import Lab
from bench.drills.load import MEMBER_FACING, PAGES, READY_TIMEOUT_S, Sample, recovery
from bench.drills.outage import Expectation, Result, Run, Step, Timing, describe, failures, result, under_load

# django-redis's socket and connect timeouts (portal/settings.py).
SOCKET_TIMEOUT_S = 0.5
# "Bounded by the socket timeout", read strictly: with Redis hung a request may wait for Redis
# once (one socket timeout) on top of its own work, not once per cache call it makes.
HUNG_BUDGET_S = 2 * SOCKET_TIMEOUT_S


def _cache_up(sample: Sample) -> bool:
    """A readiness answer that finds Redis working again."""
    return sample.status == 200 and "cache=down" not in sample.detail


def _common(run: Run, outage: str) -> tuple[list[Expectation], dict[str, object]]:
    member = [sample for sample in run.samples if sample.kind in MEMBER_FACING]
    failed = failures(run.samples)
    server_errors = [sample for sample in member if sample.server_error or sample.status is None]
    logged_out = [sample for sample in run.samples if sample.error == "logged out"]
    sessions = run.sessions
    ready = [sample for sample in run.samples if sample.kind == "ready"]
    down = run.phase(outage)
    ready_down = [sample for sample in ready if down.holds(sample)]
    restored = run.phase("after").start
    back = recovery(ready, restored, _cache_up)
    errors_back = recovery(member, restored, lambda sample: sample.ok)
    expectations = [
        Expectation(
            "zero 5xx on member pages, login and API",
            not server_errors,
            f"{len(member)} member-facing requests, {sum(s.server_error for s in member)} 5xx, "
            f"{sum(s.status is None for s in member)} without answer; other failures: {describe(failed)}",
        ),
        Expectation(
            "(implied) every member-facing request answered as usual, logins included",
            not failed,
            f"{len(failed)} answered otherwise: {describe(failed)}",
        ),
        Expectation(
            "nobody logged out",
            not logged_out
            and sessions["readers_valid"] == sessions["readers"]
            and sessions["logged_in_during_valid"] == sessions["logged_in_during"],
            f"{len(logged_out)} requests sent to the login page; after: readers' sessions "
            f"{sessions['readers_valid']}/{sessions['readers']} valid, sessions opened during the drill "
            f"{sessions['logged_in_during_valid']}/{sessions['logged_in_during']} valid",
        ),
        Expectation(
            "readiness stays 200 (degraded)",
            all(sample.status == 200 and sample.ok for sample in ready)
            and bool(ready_down)
            and all(sample.detail.startswith("degraded") for sample in ready_down[2:]),
            f"{len(ready)} readiness probes, {sum(s.status == 200 for s in ready)} answered 200 within "
            f"{READY_TIMEOUT_S:g} s; "
            f"during the fault: {_states(ready_down)}",
        ),
        Expectation(
            "recovery on its own when Redis returns",
            back is not None,
            f"readiness finds the cache up {back} s after Redis is back; "
            f"member-facing errors stop {errors_back} s after",
        ),
    ]
    figures: dict[str, object] = {"recovery_s": back, "member_errors_recovery_s": errors_back}
    return expectations, figures


def _states(samples: list[Sample]) -> str:
    counts: dict[str, int] = {}
    for sample in samples:
        key = f"{sample.status} {sample.detail.split(' ')[0]}" if sample.status else "no answer"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{count}x {key}" for key, count in sorted(counts.items())) or "no probe"


def redis_stop(lab: Lab, *, quick: bool) -> Result:
    accounts = lab.seeded
    with lab.portal("redis_stop") as (portal, _):
        steps = [
            Step("before", Timing(20, 5)),
            Step("down", Timing(60, 15), lab.redis.stop, "Redis stopped (SIGTERM)"),
            Step("after", Timing(30, 10), lab.redis.start, "Redis started again, empty, on the same port"),
        ]
        run = under_load(lab, portal, accounts, steps, quick=quick, max_requests=5000 if quick else 20000)
        keys = lab.redis.command("DBSIZE")
    expectations, figures = _common(run, "down")
    return result(
        "redis_stop",
        "Redis stopped for a minute under load",
        run,
        expectations,
        quick=quick,
        **figures,
        redis_keys_after=keys.lstrip(":"),
    )


def redis_hung(lab: Lab, *, quick: bool) -> Result:
    accounts = lab.seeded
    with lab.portal("redis_hung") as (portal, _):
        steps = [
            Step("before", Timing(20, 5)),
            Step("hung", Timing(30, 10), lab.redis.freeze, "Redis frozen (SIGSTOP): connections accepted, no answers"),
            Step("after", Timing(20, 10), lab.redis.thaw, "Redis continued (SIGCONT)"),
        ]
        run = under_load(lab, portal, accounts, steps, quick=quick, max_requests=5000 if quick else 20000)
    expectations, figures = _common(run, "hung")
    hung = run.phase("hung")
    served = [(started, line) for started, line in run.served() if hung.start <= started < hung.end]
    member_served = [line for _, line in served if line.path not in ("/health/live", "/health/ready")]
    slowest = max((line.ms for line in member_served), default=0)
    by_kind: dict[str, int] = {}
    for line in member_served:
        kind = line.method + " " + line.path
        by_kind[kind] = max(by_kind.get(kind, 0), line.ms)
    client = [sample for sample in run.samples if hung.holds(sample) and sample.kind in MEMBER_FACING]
    timeouts = run.portal.log_text().count("WORKER TIMEOUT")
    expectations += [
        Expectation(
            "latency bounded by the socket timeout",
            0 < slowest <= HUNG_BUDGET_S * 1000,
            f"with Redis hung the slowest member-facing request took {slowest} ms in the worker "
            f"({slowest / (SOCKET_TIMEOUT_S * 1000):.1f}x the {SOCKET_TIMEOUT_S} s socket timeout; "
            f"budget {HUNG_BUDGET_S:g} s); by request: "
            + ", ".join(f"{kind} {ms} ms" for kind, ms in sorted(by_kind.items()))
            + f"; at the client, queueing included: max {round(max((s.latency for s in client), default=0) * 1000)} ms",
        ),
        Expectation("no worker timeouts", timeouts == 0, f"{timeouts} WORKER TIMEOUT lines in gunicorn's log"),
    ]
    pages_client = [sample for sample in client if sample.kind in PAGES]
    return result(
        "redis_hung",
        "Redis hung (accepting, not answering) under load",
        run,
        expectations,
        quick=quick,
        **figures,
        hung_max_server_ms=slowest,
        hung_max_server_ms_by_request=by_kind,
        hung_page_p50_client_ms=round(sorted(s.latency for s in pages_client)[len(pages_client) // 2] * 1000)
        if pages_client
        else None,
    )
