"""`make bench`: the portal's hot paths under load, each beside a bare-Django baseline measured in
the same run, and the effect of the cache, the activity index and the monitoring stack.

    python bench/run.py [--members 100000] [--activity 10000000] [--duration 15] [--connections 8]

1. Data: the PostgreSQL database `bench_m<members>_a<activity>` is created, migrated and loaded
   with `seed_demo --force` unless it already holds that many bench members and activity rows,
   so a second run reuses it. Redis database 5 (`--redis-url`) is emptied first.
2. Servers: gunicorn with deploy/gunicorn.conf.py and production settings (DEBUG off, Redis, the
   Sentry SDK sending to a stub on loopback), and the baseline (bench/baseline/) under the same
   configuration and worker count. The API rate limits are raised through the environment and
   the admin's second-factor requirement is turned off (ADMIN_REQUIRE_MFA=false); the login POST
   path runs on a server whose login rate limits are lifted (bench/settings_login.py).
3. Load: wrk (bench/wrk.lua) from its own process on loopback, at a fixed number of connections,
   after a short warm-up, each path right after a short run of the baseline. Per path: the CPU
   time of the server's processes (/proc) per request and its ratio to that baseline's, requests
   per second and its ratio to that baseline's, p50, p95 and p99 latency, and beside wrk's p95
   the portal's own (its latency histogram as /metrics serves it, before and after), responses
   that were not 2xx/3xx and socket errors, per request the SQL queries of the view (what the
   tests pin), the SQL statements the process sent and the cache hit rate (the Prometheus
   counters that /metrics serves, before and after), and the peak RSS of the largest gunicorn
   worker (read from /proc while the path runs). Then, in this process, the Python calls per
   request of each GET path (bench/request_cost.py), and of the baseline in a process of its own.
4. Effects, one thing turned off at a time, the two sides alternated `--rounds` times: the cache
   (bench/settings_nocache.py) and the monitoring stack (bench/settings_nomonitoring.py); and the
   activity composite index, dropped on the bench database (and always rebuilt afterwards), for
   the busiest member's pages and a deep page of a member with a thousandth of the rows, on a
   server that renders every page (bench/settings_nopagecache.py: a page served from the page
   cache runs no query), with the page's query also timed alone (EXPLAIN ANALYZE).
5. Output: Markdown tables on stdout, JSON and a PNG chart of latency percentiles in
   bench/results/ (timestamped, and `<name>.json`/`<name>.png`, `latest` by default).

The machine is shared and noisy: read the ratios, not the absolute numbers (docs/performance.md).
"""

from __future__ import annotations

import datetime as dt
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # this folder's module names must not shadow installed packages
sys.path.insert(0, str(ROOT))

from bench.data import (  # noqa: E402
    index_dropped,
    log_in_members,
    log_in_pool,
    page_query,
    prepare_data,
    prepare_database,
    restore_index,
    setup_django,
)
from bench.load import Result, cold_queries, measure, one_line, optional  # noqa: E402
from bench.options import COLD_PROBES, COMPOSITE_INDEX, LOGIN_EMAIL, Options, parse_options  # noqa: E402
from bench.paths import MEMBER_PAGES, Path_, Request, activity_page, cold_dashboard, member_paths  # noqa: E402
from bench.report import Effect, Run, machine, markdown, save, targets  # noqa: E402
from bench.request_cost import BENCH_REQUESTS, baseline_calls, path_calls  # noqa: E402
from bench.sentry_stub import SentryStub  # noqa: E402
from bench.servers import Server, log_in, start_server  # noqa: E402


def alternate(options: Options, workdir: Path, effect: str, path: Path_, on: Server, off: Server, run: Run) -> None:
    """Measure `path` on both servers, `rounds` times, alternating, so drift hits both alike."""
    result = Effect(effect, path.key, path.title, [], [])
    for _ in range(options.rounds):
        result.on.append(measure(options, on, path, workdir))
        result.off.append(measure(options, off, path, workdir))
    run.effects.append(result)


def bench(options: Options, workdir: Path, sentry: SentryStub, servers: list[Server]) -> Run:
    from members.models import Member
    from portal.demo_data import ADMIN_EMAIL, DEMO_PASSWORD

    subject = prepare_data(options)
    run = Run(
        options=options,
        started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        machine=machine(options),
        subject={k: v for k, v in asdict(subject).items() if k != "api_token"},
    )

    def start(name: str, settings: str, **kwargs: Any) -> Server:
        server = start_server(options, workdir, name, settings, **kwargs)
        servers.append(server)
        return server

    def stop(server: Server) -> None:
        server.stop()
        servers.remove(server)

    baseline = start("baseline", "bench.baseline.settings", metrics=False)
    hello = Path_("baseline", "baseline: bare Django hello", (Request("GET", "/", {}),))
    short = replace(options, duration=options.baseline_seconds, warmup=1)

    def beside_baseline(server: Server, path: Path_) -> Result:
        """The path, right after the baseline: its ratio is to that baseline, measured seconds before."""
        reference = measure(short, baseline, hello, workdir, quiet=True)
        run.baseline.append(reference)
        result = measure(options, server, path, workdir, quiet=True)
        result.baseline_rps = reference.rps
        result.ratio = result.rps / reference.rps
        if result.cpu_ms is not None and reference.cpu_ms:
            result.baseline_cpu_ms = reference.cpu_ms
            result.cpu_ratio = result.cpu_ms / reference.cpu_ms
        print(f"  {one_line(result)}", flush=True)
        return result

    portal = start("portal", "portal.settings", sentry_dsn=sentry.dsn)
    cookie, _ = log_in(portal, subject.email, DEMO_PASSWORD)
    admin, _ = log_in(portal, ADMIN_EMAIL, DEMO_PASSWORD)
    paths = member_paths(subject, cookie, admin)
    print(
        f"Portal paths ({options.members:,} members, {options.activity:,} activity rows; {options.workers} workers, "
        f"{options.connections} connections, {options.duration} s each, after {options.baseline_seconds} s of "
        "baseline):"
    )
    for path in paths:
        run.paths.append(beside_baseline(portal, path))
        if path.key == "dashboard_warm":
            cold = cold_dashboard(subject, options.pool, path.requests[0])
            run.paths.append(beside_baseline(portal, cold))
    # Made just before use, like the pool: a session last seen a minute ago is saved again.
    skip = options.pool
    probes = log_in_pool([subject.member_id, subject.sparse.member_id], COLD_PROBES * len(MEMBER_PAGES), skip)
    run.cold_sql = cold_queries(portal, MEMBER_PAGES, probes)

    login_server = start("login", "bench.settings_login", sentry_dsn=sentry.dsn)
    _, login_post = log_in(login_server, LOGIN_EMAIL, DEMO_PASSWORD)
    # Each login verifies an Argon2 hash (a deliberate ~0.1 s of CPU): give it time for a few hundred.
    login = Path_("login", "login POST (login rate limits lifted)", (login_post,), 302)
    run.paths.insert(1, beside_baseline(login_server, replace(login, duration=max(options.duration, 10))))
    stop(login_server)

    by_key = {path.key: path for path in paths}
    print("Effect of the cache (on: portal, off: DummyCache):")
    uncached = start("nocache", "bench.settings_nocache", sentry_dsn=sentry.dsn)
    for key in ("dashboard_warm", "api_me", "api_activity"):
        alternate(options, workdir, "cache", by_key[key], portal, uncached, run)
    stop(uncached)

    print("Effect of the monitoring stack (on: portal, off: no Prometheus middleware and no Sentry):")
    unobserved = start("nomonitoring", "bench.settings_nomonitoring", metrics=False)
    for key in ("dashboard_warm", "api_me", "landing"):
        alternate(options, workdir, "monitoring", by_key[key], portal, unobserved, run)
    stop(unobserved)

    print(f"Effect of {COMPOSITE_INDEX} (on: present, off: dropped; pages rendered, not from the page cache):")
    rendering = start("nopagecache", "bench.settings_nopagecache", sentry_dsn=sentry.dsn)
    (sparse_cookie,) = log_in_members(Member.objects.filter(pk=subject.sparse.member_id))
    sparse = subject.sparse
    cases = [
        (by_key["activity_first"], subject.log.member_id, ""),
        (by_key["activity_deep"], subject.log.member_id, subject.log.deep_cursor),
        (
            activity_page(
                "activity_sparse_deep",
                f"activity page {sparse.deep_offset:,} rows deep, member with {sparse.rows:,} rows",
                sparse_cookie,
                sparse.deep_cursor,
            ),
            sparse.member_id,
            sparse.deep_cursor,
        ),
    ]
    index_effects = []
    for path, member_id, cursor in cases:
        effect = Effect("index", path.key, path.title, [measure(options, rendering, path, workdir)], [])
        effect.query_on_ms, effect.plan_on = page_query(member_id, cursor)
        index_effects.append(effect)
    with index_dropped():
        for effect, (path, member_id, cursor) in zip(index_effects, cases, strict=True):
            effect.off.append(measure(options, rendering, path, workdir))
            effect.query_off_ms, effect.plan_off = page_query(member_id, cursor)
    stop(rendering)
    run.effects.extend(index_effects)

    print("Python calls per request, in process (bench/request_cost.py):", flush=True)
    # The cold dashboard's pool is warm by now: its count takes members after the pool and the probes.
    fresh = cold_dashboard(subject, BENCH_REQUESTS, by_key["dashboard_warm"].requests[0], skip + len(probes))
    counted = {**by_key, "dashboard_cold": fresh}
    for result in run.paths:
        # /metrics in this process would read this process's registry, not the workers' files.
        if result.key in counted and result.key != "metrics":
            result.python_calls = path_calls(counted[result.key])
            print(f"  {result.title}: {optional(result.python_calls, ',')}", flush=True)
    hello_calls = baseline_calls(options)
    for result in run.baseline:
        result.python_calls = hello_calls
    run.sentry = dict(sentry.items)
    run.targets = targets(run)
    run.finished_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return run


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so that every `finally` runs: servers stopped, the index rebuilt


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_options(argv, description=__doc__)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: sudo apt-get install wrk")
    signal.signal(signal.SIGTERM, _terminate)
    prepare_database(options)
    setup_django(options)
    servers: list[Server] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, SentryStub() as sentry:
        try:
            run = bench(options, Path(tmp), sentry, servers)
        except BaseException:
            for server in servers:  # what the servers said, before their logs go with `tmp`
                print(f"--- end of {server.log.name}:\n{server.log.read_text()[-4000:]}", file=sys.stderr)
            raise
        finally:
            for server in servers:
                server.stop()
            restore_index()
    text = markdown(run)
    print("\n" + text + "\n")
    saved = save(run, text)
    print(f"Results in {saved.relative_to(ROOT)} and {saved.with_suffix('.png').relative_to(ROOT)}")
    print(f"Benchmark took {(time.monotonic() - started) / 60:.1f} min (after the data load).")


if __name__ == "__main__":
    main()
