"""What a `make bench` run is asked for (its command line, `Options`) and what every run fixes:
where results go, the bench's own secrets and limits, the proxy's header."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RESULTS = ROOT / "bench" / "results"
WRK_SCRIPT = ROOT / "bench" / "wrk.lua"
SECRET_KEY = "bench-only-secret-key-never-used-anywhere-else-0123456789abcdef"  # noqa: S105
METRICS_TOKEN = "bench-metrics-token"  # noqa: S105
# High enough that no API request of a run is refused (the limits are per minute).
UNLIMITED = "1000000000"
COMPOSITE_INDEX = "activity_member_recent_idx"
BENCH_TOKEN_NAME = "bench run"  # noqa: S105 (a token's name, not a secret)
# A demo member (its address is verified), used only by the login POST path: each login writes
# to the member's activity, which would keep invalidating the cache of a member other paths read.
LOGIN_EMAIL = "alice@example.com"
# Where deep pages start: this far down the busiest member's log, in rows.
DEEP_FRACTION = 0.9
# Fresh members per member page for the cold query counts (`cold_queries`).
COLD_PROBES = 20
PROXY = {"X-Forwarded-Proto": "https"}  # what the TLS proxy in front of the portal adds


@dataclass(frozen=True)
class Options:
    members: int
    activity: int
    duration: int
    warmup: int
    baseline_seconds: int
    connections: int
    threads: int
    workers: int
    rounds: int
    pool: int
    traces_sample_rate: float
    postgres: str
    redis_url: str
    name: str
    profile: tuple[str, ...]

    @property
    def database(self) -> str:
        return f"bench_m{self.members}_a{self.activity}"

    @property
    def database_url(self) -> str:
        return f"{self.postgres.rstrip('/')}/{self.database}"


def parse_options(argv: Sequence[str] | None = None, *, description: str = "") -> Options:
    cpus = len(os.sched_getaffinity(0))
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=100_000, help="bench members in the database")
    parser.add_argument("--activity", type=int, default=10_000_000, help="bench activity rows in the database")
    parser.add_argument("--duration", type=int, default=15, help="seconds of load per path (and per round)")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of unmeasured load before each path")
    parser.add_argument(
        "--baseline-seconds", type=int, default=5, help="seconds of baseline measured just before each path"
    )
    parser.add_argument("--connections", type=int, default=8, help="concurrent connections (wrk -c)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (wrk -t)")
    parser.add_argument(
        "--workers", type=int, default=2 * cpus + 1, help="gunicorn workers per server (deploy default: 2 x CPUs + 1)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternations of each effect's on and off sides")
    parser.add_argument("--pool", type=int, default=6000, help="members logged in for the cold dashboard")
    parser.add_argument(
        "--traces-sample-rate",
        type=float,
        default=float(os.environ.get("SENTRY_TRACES_SAMPLE_RATE") or 0.1),
        help="SENTRY_TRACES_SAMPLE_RATE of the servers with monitoring (default: the environment's, else 0.1)",
    )
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/5", help="Redis database the bench may empty")
    parser.add_argument("--name", default="latest", help="results are also written to bench/results/<name>.json|png")
    parser.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="PATH",
        help="sample the portal's workers with py-spy while this path (a key such as dashboard_warm) runs on "
        "its production server; the stacks go to bench/results/profile-PATH.txt and a summary to stdout",
    )
    args = parser.parse_args(argv)
    return Options(**{**vars(args), "profile": tuple(args.profile)})
