"""A gunicorn worker killed under load (`worker_kill`): SIGKILL, as the kernel's OOM killer sends
it, to one worker every few seconds while members read and a script writes through the API.
gunicorn's master replaces each. Only what the killed worker was serving may be lost."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import psycopg

from bench.drills.lab import Lab
from bench.drills.load import WRITER_AGENT, Clock, Sample
from bench.drills.outage import Expectation, Result, Step, Timing, describe, result, under_load
from tools.servers import Gunicorn

KILLS = 5


def _killer(
    lab: Lab, portal: Gunicorn, kills: list[tuple[float, int, float | None]], clock: Clock
) -> Callable[[], None]:
    """SIGKILL the worker with the lowest pid (the older one, alternating as they are replaced),
    then wait for the master to boot its replacement; record (when, pid, seconds to replace)."""

    def kill() -> None:
        before = portal.worker_pids()
        victim = min(before)
        at = clock.now()
        os.kill(victim, signal.SIGKILL)  # a worker of the gunicorn we started
        replaced: float | None = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            now = portal.worker_pids()
            if len(now) == len(before) and victim not in now:
                replaced = round(clock.now() - at, 2)
                break
            time.sleep(0.02)
        kills.append((round(at, 3), victim, replaced))
        lab.say(f"killed worker {victim}; replaced after {replaced} s")

    return kill


def worker_kill(lab: Lab, *, quick: bool) -> Result:
    accounts = lab.seeded
    kills: list[tuple[float, int, float | None]] = []
    with lab.portal("worker_kill") as (portal, database):
        clock = Clock()
        kill = _killer(lab, portal, kills, clock)
        count = 3 if quick else KILLS
        steps = [
            Step("before", Timing(10, 5)),
            *(
                Step(f"kill-{n + 1}", Timing(10, 5), kill, f"SIGKILL to a worker ({n + 1} of {count})")
                for n in range(count)
            ),
            Step("after", Timing(10, 5)),
        ]
        run = under_load(
            lab,
            portal,
            accounts,
            steps,
            quick=quick,
            max_requests=5000 if quick else 20000,
            with_writer=True,
            clock=clock,
        )
        with psycopg.connect(lab.postgres.url(database)) as connection:
            rows = connection.execute(
                "SELECT count(*) FROM members_activitylog WHERE action = 'profile_updated' AND user_agent = %s",
                (WRITER_AGENT,),
            ).fetchone()
            final = connection.execute(
                "SELECT p.display_name FROM members_profile p JOIN members_member m ON m.id = p.member_id"
                " WHERE m.email = %s",
                (accounts.writer.email,),
            ).fetchone()
    kill_times = [at for at, _, _ in kills]

    def in_flight(sample: Sample) -> bool:
        return any(sample.sent <= at <= sample.done for at in kill_times)

    failed = [sample for sample in run.samples if not sample.ok]
    lost = [sample for sample in failed if not in_flight(sample)]
    per_kill = [sum(sample.sent <= at <= sample.done for sample in failed) for at in kill_times]
    writes = run.traffic.writes
    acked = [value for value, sample in writes if sample.ok]
    unanswered = [value for value, sample in writes if not sample.ok]
    applied = int(rows[0]) if rows else 0
    final_name = str(final[0]) if final else ""
    last_acked = acked[-1] if acked else ""
    # Writes go one after another, so the final name is the last acknowledged one, or a later
    # write whose answer was lost with its worker.
    last_index = int(last_acked.split("-")[1]) if last_acked else -1
    later = [value for value in unanswered if int(value.split("-")[1]) > last_index]
    replaced = [seconds for _, _, seconds in kills]
    expectations = [
        Expectation(
            "no lost request beyond those in flight",
            not lost,
            f"{len(kills)} workers killed; {len(failed)} of {len(run.samples)} requests got no good answer "
            f"({describe(failed)}); in flight on the killed worker at each kill: "
            f"{', '.join(str(count) for count in per_kill)}; {len(lost)} lost otherwise",
        ),
        Expectation(
            "no acknowledged write lost",
            len(acked) <= applied <= len(acked) + len(unanswered) and (final_name == last_acked or final_name in later),
            f"{len(acked)} profile writes acknowledged, {len(unanswered)} unanswered, {applied} recorded in the "
            f"activity log; final display name {final_name!r}, last acknowledged {last_acked!r}",
        ),
        Expectation(
            "every killed worker replaced",
            all(seconds is not None for seconds in replaced),
            f"replacement worker running after {', '.join(f'{s} s' for s in replaced)}",
        ),
    ]
    return result(
        "worker_kill",
        "A gunicorn worker killed under load",
        run,
        expectations,
        quick=quick,
        kills=[{"at": at, "pid": pid, "replaced_after_s": seconds} for at, pid, seconds in kills],
        failed_in_flight=len(failed) - len(lost),
        lost=len(lost),
        writes={"acknowledged": len(acked), "unanswered": len(unanswered), "recorded": applied},
    )
