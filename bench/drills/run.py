"""Fault drills for the portal, on loopback, each bounded in time and requests.

    python bench/drills/run.py [drill ...] [--quick]

Drills (all of them when none is named), with their length at full / --quick:

    redis_stop          Redis stopped for a minute under load            (~2 min / ~40 s)
    redis_hung          Redis hung: accepting, not answering             (~1.5 min / ~35 s)
    postgres_restart    PostgreSQL stopped 10 s and started under load   (~1.3 min / ~35 s)
    worker_kill         a gunicorn worker SIGKILLed every 10 s, 5 times  (~1.5 min / ~35 s)
    concurrent_writers  8 threads writing one member for 30 s            (~1 min / ~30 s)

Everything runs on private servers started here (bench/drills/lab.py): a PostgreSQL 15 cluster
(Debian's binaries, run as the `postgres` user), a redis-server, and the portal under gunicorn
with deploy/gunicorn.conf.py, two workers and production settings, from a snapshot of the working
tree. The shared servers on 5432 and 6379 are never touched. Needs root (for `runuser`), or run
as a user who can start PostgreSQL's binaries.

Each drill prints its figures and verdicts and writes them to bench/drills/results/<drill>.json
(<drill>.quick.json with --quick), with gunicorn's log beside it. Exit status: 0 when every
expectation held, 1 when one did not, 2 when a drill could not run.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parents[2]
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # this folder's module names must not shadow installed packages
sys.path.insert(0, str(ROOT))

from bench.drills.cache_outage import redis_hung, redis_stop  # noqa: E402
from bench.drills.concurrent_writers import concurrent_writers  # noqa: E402
from bench.drills.database_restart import postgres_restart  # noqa: E402
from bench.drills.lab import Lab  # noqa: E402
from bench.drills.outage import Result  # noqa: E402
from bench.drills.worker_kill import worker_kill  # noqa: E402

RESULTS = ROOT / "bench" / "drills" / "results"


class Drill(Protocol):
    def __call__(self, lab: Lab, *, quick: bool) -> Result: ...


DRILLS: dict[str, Drill] = {
    "redis_stop": redis_stop,
    "redis_hung": redis_hung,
    "postgres_restart": postgres_restart,
    "worker_kill": worker_kill,
    "concurrent_writers": concurrent_writers,
}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "drills", nargs="*", metavar="drill", help=f"drills to run, of {', '.join(DRILLS)} (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="every phase shortened, for a smoke run")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes (default: %(default)s)")
    parser.add_argument(
        "--settings",
        default="",
        metavar="PYTHON",
        help="try a fix: Python run after `from portal.settings import *` in the snapshot's settings",
    )
    parser.add_argument(
        "--gunicorn-args", default="", metavar="ARGS", help="try a fix: more gunicorn arguments (GUNICORN_CMD_ARGS)"
    )
    parser.add_argument("--tag", default="", help="added to the result files' names, e.g. for a variant")
    options = parser.parse_args(argv)
    unknown = [name for name in options.drills if name not in DRILLS]
    if unknown:
        parser.error(f"no drill named {', '.join(unknown)}; choose from {', '.join(DRILLS)}")
    return options


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # the same clean-up as Ctrl-C


def summary(result: Result) -> str:
    lines = [f"\n== {result.drill}: {result.title}{' (quick)' if result.quick else ''}"]
    if result.variant:
        lines.append(f"   variant: {json.dumps(result.variant)}")
    for at, what in result.events:
        lines.append(f"   t={at:6.1f} s  {what}")
    for name, phase in result.phases.items():
        member = phase.get("member_facing")
        if member is None:
            continue
        lines.append(
            f"   {name:<8} {phase['seconds']:>5} s  {member['requests']:>5} requests  5xx {member['5xx']}  "
            f"no answer {member['no_answer']}  p99 {member['p99_ms']} ms  max {member['max_ms']} ms  "
            f"ready {phase['ready']['answers']}  live {phase['live']['answers']} (max {phase['live']['max_ms']} ms)"
        )
    lines.append(f"   headline: {json.dumps(result.headline)}")
    if result.server:
        shown = {key: value for key, value in result.server.items() if key != "max_server_ms_by_phase"}
        lines.append(f"   gunicorn: {json.dumps(shown)}")
    for expectation in result.expectations:
        lines.append(f"   [{'holds' if expectation.holds else 'FAILS'}] {expectation.text}: {expectation.measured}")
    return "\n".join(lines)


def save(result: Result, directory: Path, suffix: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{result.drill}{suffix}.json"
    path.write_text(json.dumps(result.as_json(), indent=2, default=str) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(argv)
    names = options.drills or list(DRILLS)
    signal.signal(signal.SIGTERM, _terminate)
    suffix = (f".{options.tag}" if options.tag else "") + (".quick" if options.quick else "")
    lab = Lab(
        keep_logs=options.results, suffix=suffix, settings=options.settings.strip(), gunicorn_args=options.gunicorn_args
    )
    variant = {
        name: value
        for name, value in (
            ("settings", options.settings),
            ("gunicorn_args", options.gunicorn_args),
        )
        if value
    }
    outcomes: dict[str, Any] = {}
    started = time.monotonic()
    try:
        lab.open()
        for name in names:
            lab.say(f"drill {name}")
            try:
                lab.heal()
                result = DRILLS[name](lab, quick=options.quick)
                result.variant = variant
            except KeyboardInterrupt:
                raise
            except Exception:
                traceback.print_exc()
                outcomes[name] = "could not run"
                continue
            print(summary(result), flush=True)
            print(f"   -> {save(result, options.results, suffix)}", flush=True)
            outcomes[name] = "holds" if result.holds else "FAILS"
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything the drills started", file=sys.stderr)
        return 130
    finally:
        lab.close()
    print(f"\n{len(names)} drill(s) in {time.monotonic() - started:.0f} s: {json.dumps(outcomes)}")
    if "could not run" in outcomes.values():
        return 2
    return 0 if all(outcome == "holds" for outcome in outcomes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
