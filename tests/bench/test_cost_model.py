"""The bench's cost model (bench/run.py, docs/performance.md): the server's CPU time read from
/proc, the portal's p95 computed from its latency histogram as Prometheus computes it, and the
table that puts the CPU ratio first. The pure parts only: the load itself is `make bench`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from bench.load import Result
from bench.options import parse_options
from bench.profiling import CLOCK_TICKS, cpu_seconds, cpu_ticks
from bench.report import Run, paths_table
from bench.request_cost import wsgi_headers
from bench.servers import bucket_delta, histogram_buckets, histogram_quantile, latency_buckets

ROOT = Path(__file__).resolve().parents[2]

# A worker's /proc/<pid>/stat line (proc(5)), its command name holding a space and parentheses:
# utime (field 14) 1234 and stime (field 15) 56; cutime and cstime, 7 and 8, are its children's.
STAT = (
    "4242 (gunicorn: (w) 1) S 4200 4200 4200 0 -1 4194560 21504 0 0 0 1234 56 7 8 20 0 5 0 "
    "98765 412160000 28000 18446744073709551615 1 1 0 0 0 0 0 16781312 134235650 0 0 0 17 1 0 0 0 0 0"
)


def test_cpu_ticks_are_user_plus_system_time_of_the_process():
    assert cpu_ticks(STAT) == 1234 + 56


def test_cpu_ticks_of_this_process_agree_with_the_kernels_own_count():
    """The same ticks as times(2) gives for this process: a field read off by one (the
    children's time, the start time) would not be."""
    for _ in range(200_000):  # some CPU of our own, so that user and system time are not both 0
        pass
    ticks = cpu_ticks(Path("/proc/self/stat").read_text())
    own = os.times()
    assert ticks == pytest.approx((own.user + own.system) * CLOCK_TICKS, abs=2)


def test_cpu_seconds_count_each_process_from_its_first_reading():
    before = {100: 500, 101: 2_000, 102: 1_000}
    # 102 exited in between (its time goes with it); 103 started in between (all of its time counts).
    after = {100: 520, 101: 2_300, 103: 40}
    assert cpu_seconds(before, after) == pytest.approx((20 + 300 + 40) / CLOCK_TICKS)


EXPOSITION = """\
# HELP portal_request_duration_seconds Time from the first middleware to the response.
# TYPE portal_request_duration_seconds histogram
portal_request_duration_seconds_bucket{le="0.01",member_tier="free"} 10.0
portal_request_duration_seconds_bucket{le="0.025",member_tier="free"} 50.0
portal_request_duration_seconds_bucket{le="0.05",member_tier="free"} 80.0
portal_request_duration_seconds_bucket{le="0.1",member_tier="free"} 90.0
portal_request_duration_seconds_bucket{le="+Inf",member_tier="free"} 90.0
portal_request_duration_seconds_count{member_tier="free"} 90.0
portal_request_duration_seconds_sum{member_tier="free"} 2.5
portal_request_duration_seconds_bucket{le="0.01",member_tier="anonymous"} 0.0
portal_request_duration_seconds_bucket{le="0.025",member_tier="anonymous"} 10.0
portal_request_duration_seconds_bucket{le="0.05",member_tier="anonymous"} 10.0
portal_request_duration_seconds_bucket{le="0.1",member_tier="anonymous"} 10.0
portal_request_duration_seconds_bucket{le="+Inf",member_tier="anonymous"} 10.0
portal_request_duration_seconds_count{member_tier="anonymous"} 10.0
portal_request_duration_seconds_sum{member_tier="anonymous"} 0.2
# HELP portal_db_queries_per_request SQL queries run by one request, by view.
# TYPE portal_db_queries_per_request histogram
portal_db_queries_per_request_bucket{le="1.0",view="dashboard"} 7.0
portal_db_queries_per_request_bucket{le="+Inf",view="dashboard"} 9.0
"""


def test_histogram_buckets_add_up_the_tiers_of_that_histogram_only():
    assert histogram_buckets(EXPOSITION, "portal_request_duration_seconds") == {
        0.01: 10.0,
        0.025: 60.0,
        0.05: 90.0,
        0.1: 100.0,
        float("inf"): 100.0,
    }


def test_bucket_delta_is_what_was_counted_in_between():
    before = {0.01: 5.0, 0.1: 8.0, float("inf"): 9.0}
    after = {0.01: 15.0, 0.05: 4.0, 0.1: 20.0, float("inf"): 21.0}
    assert bucket_delta(before, after) == {0.01: 10.0, 0.05: 4.0, 0.1: 12.0, float("inf"): 12.0}


BUCKETS = {0.01: 10.0, 0.025: 60.0, 0.05: 90.0, 0.1: 100.0, float("inf"): 100.0}


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        # rank 95 of 100: in (0.05, 0.1], 5 of its 10 observations in: 0.05 + 0.05 x 5/10.
        (0.95, 0.075),
        # rank 50: in (0.01, 0.025], 40 of its 50 in: 0.01 + 0.015 x 40/50.
        (0.5, 0.022),
        # rank 5: in the first bucket, from 0: 0.01 x 5/10.
        (0.05, 0.005),
        # rank 90: exactly the top of (0.025, 0.05].
        (0.9, 0.05),
    ],
)
def test_histogram_quantile_interpolates_within_the_bucket_as_prometheus_does(q: float, expected: float):
    assert histogram_quantile(q, BUCKETS) == pytest.approx(expected)


def test_histogram_quantile_in_the_inf_bucket_is_the_highest_finite_bound():
    assert histogram_quantile(0.95, {0.01: 10.0, 0.1: 50.0, float("inf"): 100.0}) == pytest.approx(0.1)


def test_histogram_quantile_needs_observations_and_an_inf_bucket():
    assert histogram_quantile(0.95, {0.01: 0.0, float("inf"): 0.0}) is None
    assert histogram_quantile(0.95, {0.01: 4.0, 0.1: 10.0}) is None


def test_the_portals_p95_over_a_load_is_that_of_the_requests_in_between():
    before = histogram_buckets(EXPOSITION, "portal_request_duration_seconds")
    after = {bound: count + (0 if bound < 0.05 else 20) for bound, count in before.items()}
    # 20 requests, all in (0.025, 0.05]: rank 19, 19/20 of the way through that bucket.
    assert histogram_quantile(0.95, bucket_delta(before, after)) == pytest.approx(0.025 + 0.025 * 19 / 20)


def test_latency_buckets_are_read_from_the_workers_metric_files(tmp_path: Path):
    """Two worker processes in prometheus_client's multiprocess mode, as under gunicorn: the
    buckets add up both, as /metrics does."""
    worker = textwrap.dedent(
        """
        import sys
        from monitoring.metrics import REQUEST_LATENCY_BY_TIER
        for value in sys.argv[1:]:
            REQUEST_LATENCY_BY_TIER.labels(member_tier="free").observe(float(value))
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "portal.settings"}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    setup = "import django; django.setup()\n"
    for values in (["0.004", "0.02"], ["0.03", "0.07", "3"]):
        subprocess.run([sys.executable, "-c", setup + worker, *values], env=env, check=True, cwd=ROOT)
    buckets = latency_buckets(tmp_path)
    assert buckets[0.01] == 1
    assert buckets[0.025] == 2
    assert buckets[0.05] == 3
    assert buckets[0.1] == 4
    assert buckets[5.0] == 5
    assert buckets[float("inf")] == 5


def test_wsgi_headers_are_the_environ_keys_gunicorn_hands_the_application():
    assert wsgi_headers({"Cookie": "sessionid=x", "X-Forwarded-Proto": "https", "Content-Type": "text/plain"}) == {
        "HTTP_COOKIE": "sessionid=x",
        "HTTP_X_FORWARDED_PROTO": "https",
        "CONTENT_TYPE": "text/plain",
    }


def result(key: str, title: str, **fields: Any) -> Result:
    values: dict[str, Any] = {
        "server": "portal",
        "requests": 1000,
        "seconds": 5.0,
        "rps": 200.0,
        "p50_ms": 10.0,
        "p90_ms": 20.0,
        "p95_ms": 30.0,
        "p99_ms": 40.0,
        "max_ms": 50.0,
        "errors": 0,
        "statuses": {"2xx": 1000},
        "laps": 1000,
        "statements_per_request": 2.0,
        "queries_per_request": 1.0,
        "cache_hit_rate": 1.0,
        "cache_reads_per_request": 1.0,
        "peak_rss_mb": 110.0,
        "cpu_ms": 2.5,
        "portal_p95_ms": 28.1,
    }
    return Result(key=key, title=title, **{**values, **fields})


def test_the_paths_table_puts_the_cpu_ratio_first_and_the_portals_p95_beside_wrks():
    hello = {"server": "baseline", "rps": 4000.0, "cpu_ms": 0.25, "portal_p95_ms": None, "python_calls": 238}
    run = Run(
        options=parse_options([]),
        started_at="2026-12-03T07:00:00+00:00",
        machine={},
        subject={},
        baseline=[result("baseline", "baseline: bare Django hello", **hello)],
        paths=[
            result(
                "dashboard_warm",
                "dashboard, warm cache",
                baseline_rps=4000.0,
                ratio=0.05,
                baseline_cpu_ms=0.25,
                cpu_ratio=10.0,
                python_calls=11274,
            ),
            result("login", "login POST", cpu_ms=100.0, cpu_ratio=400.0, portal_p95_ms=None),
        ],
    )
    header, rule, baseline, dashboard, login = paths_table(run)
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    assert columns[:9] == [
        "path",
        "CPU x baseline",
        "CPU ms/req",
        "req/s",
        "req/s x baseline",
        "p50 ms",
        "p95 ms",
        "portal p95 ms",
        "p99 ms",
    ]
    assert columns[10:12] == ["Python calls/req", "queries/req"]
    assert rule.count("|") == len(columns) + 1

    def cells(row: str) -> list[str]:
        return [cell.strip() for cell in row.strip("|").split("|")]

    assert cells(baseline)[:3] == ["baseline: bare Django hello (median)", "1.0", "0.25"]
    assert cells(baseline)[10] == "238"
    assert cells(dashboard)[:9] == [
        "dashboard, warm cache",
        "10.0",
        "2.50",
        "200",
        "0.050",
        "10.0",
        "30.0",
        "28.1",
        "40.0",
    ]
    assert cells(dashboard)[10] == "11,274"
    # The POST path has no in-process count, and its server's histogram was not read here.
    assert cells(login)[7] == "\N{EN DASH}"
    assert cells(login)[10] == "\N{EN DASH}"


def test_the_targets_judge_cpu_ratios_and_the_effects_of_one_run():
    from bench.paths import MEMBER_PAGES
    from bench.report import Effect, targets

    keys = ["landing", "dashboard_warm", "activity_first", "activity_deep", "tokens", "profile", "subscription"]
    keys += ["api_me", "api_activity", "health_live"]
    ratios = {"dashboard_warm": 3.5, "api_me": 3.5, "landing": 2.0}  # the API misses its 3x
    paths = [
        result(key, key, cpu_ratio=ratios.get(key, 5.0), ratio=0.3, p95_ms=15.0, portal_p95_ms=14.0) for key in keys
    ]
    run = Run(options=parse_options([]), started_at="", machine={}, subject={}, paths=paths)
    run.cold_sql = {key: 6.0 for key, _ in MEMBER_PAGES}
    on, off = result("dashboard_warm", "dashboard", cpu_ms=1.0), result("dashboard_warm", "dashboard", cpu_ms=4.0)
    watched, bare = result("api_me", "me", cpu_ms=1.0), result("api_me", "me", cpu_ms=0.8)
    run.effects = [
        Effect("cache", "dashboard_warm", "dashboard", [on], [off]),
        Effect("monitoring", "api_me", "me", [watched], [bare]),
        Effect(
            "index", "activity_first", "page", [result("a", "a", rps=300.0)], [result("a", "a", rps=20.0)], 0.1, 50.0
        ),
    ]

    judged = {row["target"]: (row["measured"], row["holds"]) for row in targets(run)}

    assert judged["dashboard_warm: CPU <= 4x the baseline's"] == ("3.5x", True)
    assert judged["api_me: CPU <= 3x the baseline's"] == ("3.5x", False)
    assert judged["landing: CPU <= 3x the baseline's"] == ("2.0x", True)
    assert judged["cache effect >= 3x (dashboard): CPU off / on"] == ("4.0x", True)
    assert judged["monitoring costs <= 10% of the CPU (me)"] == ("20%", False)
    assert judged["page: index >= 10x on the page, >= 100x on the query"] == ("page 15.0x, query 500x", True)
    assert judged["dashboard_warm: the portal's p95 within 10% of wrk's"] == ("7% apart", True)
