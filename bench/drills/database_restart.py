"""PostgreSQL restarted under load (`postgres_restart`): stopped with a fast shutdown (what a
restart or a failover does to open connections), left down a few seconds, started again."""

from __future__ import annotations

from bench.drills.lab import Lab
from bench.drills.load import LIVE_TIMEOUT_S, MEMBER_FACING, READY_TIMEOUT_S, Sample, recovery
from bench.drills.outage import Expectation, Result, Step, Timing, describe, result, under_load

# Errors must have stopped this long after PostgreSQL is back (the figure).
BACK_WITHIN_S = 5.0
# A member request answered after this long is counted as failed too: the member gave up.
SLOW_S = 5.0


def _good(sample: Sample) -> bool:
    return sample.ok and sample.latency <= SLOW_S


def postgres_restart(lab: Lab, *, quick: bool) -> Result:
    accounts = lab.seeded
    with lab.portal("postgres_restart") as (portal, _):
        steps = [
            Step("before", Timing(20, 5)),
            Step("down", Timing(10, 6), lambda: lab.postgres.stop("fast"), "PostgreSQL stopped (pg_ctl stop -m fast)"),
            Step("after", Timing(30, 12), lab.postgres.start, "PostgreSQL started (pg_ctl start -w)"),
        ]
        run = under_load(lab, portal, accounts, steps, quick=quick, max_requests=5000 if quick else 20000)

    down_from = run.phase("down").start
    back_at = run.action_done["after"]  # pg_ctl start -w returns once it accepts connections
    member = [sample for sample in run.samples if sample.kind in MEMBER_FACING]
    failed = [sample for sample in member if not sample.ok]
    slow = [sample for sample in member if sample.ok and sample.latency > SLOW_S]
    bad = [sample for sample in member if not _good(sample)]
    outside = [sample for sample in failed if sample.done < down_from or sample.sent > back_at]
    late = [sample for sample in bad if sample.done >= back_at + BACK_WITHIN_S]
    ready = [sample for sample in run.samples if sample.kind == "ready"]
    # From a second after the stop (a probe may still find a connection that worked a moment
    # ago) until the start command (PostgreSQL accepts connections a little before it returns).
    start_issued = run.phase("after").start
    ready_down = [sample for sample in ready if down_from + 1 <= sample.sent < start_issued]
    ready_503 = [s for s in ready_down if s.status == 503]
    live = [sample for sample in run.samples if sample.kind == "live"]
    live_failed = [s for s in live if not s.ok]
    errors_back = recovery(member, back_at, _good)
    drained = max((sample.done for sample in bad), default=back_at) - back_at
    ready_back = recovery(ready, back_at, lambda sample: sample.status == 200)
    max_live = round(max((s.latency for s in live if s.status is not None), default=0) * 1000)
    expectations = [
        Expectation(
            "errors only while it is down",
            not outside,
            f"{len(failed)} of {len(member)} member-facing requests failed ({describe(failed)}); "
            f"{len(outside)} of them neither sent nor answered between the stop and PostgreSQL accepting again "
            f"({back_at - down_from:.1f} s)",
        ),
        Expectation(
            f"none from {BACK_WITHIN_S:g} s after it is back",
            not late,
            f"{len(late)} requests failed, or were answered after more than {SLOW_S:g} s, at {BACK_WITHIN_S:g} s "
            f"or more after it was back ({len(slow)} slow answers in all); every request sent from "
            f"{errors_back} s after it was back succeeded promptly; the last bad answer came {drained:.1f} s after",
        ),
        Expectation(
            "readiness 503 while down",
            bool(ready_down) and len(ready_503) == len(ready_down),
            f"{len(ready_503)} of {len(ready_down)} readiness probes sent while down answered 503 within "
            f"{READY_TIMEOUT_S:g} s (others: {describe([s for s in ready_down if s.status != 503])}); "
            f"200 again {ready_back} s after it was back",
        ),
        Expectation(
            "liveness never fails",
            not live_failed,
            f"{len(live) - len(live_failed)} of {len(live)} liveness probes answered 200 within "
            f"{LIVE_TIMEOUT_S:g} s (slowest answer {max_live} ms)",
        ),
    ]
    return result(
        "postgres_restart",
        "PostgreSQL restarted under load",
        run,
        expectations,
        quick=quick,
        down_seconds=round(back_at - down_from, 2),
        recovery_s=errors_back,
        last_bad_answer_after_s=round(drained, 2),
        slow_answers=len(slow),
        readiness_recovery_s=ready_back,
        failures_outside_outage=len(outside),
    )
