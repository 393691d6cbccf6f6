"""What one request costs the portal's Python, in process, without the noise of a shared machine.

    python bench/request_cost.py [--sentry-rate 0.1] [--settings portal.settings] [--profile] PATH...

Calls the WSGI application that gunicorn serves (`portal.wsgi`) directly, with production
settings on `make bench`'s database (`--members`/`--activity` pick it, as for bench/run.py) and
Redis, as the busiest bench member (a session cookie for member pages, an API token under
/api/). For each path it prints the Python function calls per request (counted by cProfile: the
same on a busy machine as on an idle one) and the CPU time per request (the best of three runs
of `--requests`). `--profile` adds the functions that took the most time. Time spent waiting on
PostgreSQL and Redis is in neither number.

    python bench/request_cost.py /dashboard/ /api/v1/me
    python bench/request_cost.py --sentry-rate 0.1 /dashboard/ /api/v1/me
    python bench/request_cost.py --settings bench.settings_nomonitoring /dashboard/
    python bench/request_cost.py --settings bench.baseline.settings --json /

`make bench` (bench/run.py) counts the Python calls of its paths with the functions below
(`request`, `warm`, `calls_per_request`), and the baseline's with `--json`.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import json
import os
import pstats
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.data import base_env, log_in_members
from bench.options import ROOT, Options, parse_options
from bench.paths import Path_
from bench.sentry_stub import SentryStub
from tools.servers import HOST

# Requests sent before anything is counted: templates compiled, connections open, the cache filled.
WARM_REQUESTS = 50
# Requests counted per path by `make bench`: the count hardly moves from one request to the next.
BENCH_REQUESTS = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="PATH")
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--activity", type=int, default=10_000_000)
    parser.add_argument("--settings", default="portal.settings", help="DJANGO_SETTINGS_MODULE")
    parser.add_argument("--sentry-rate", type=float, help="initialise Sentry (to a stub) at this traces sample rate")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--profile", action="store_true", help="print the functions that took the most time")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead: calls and CPU by path")
    arguments = parser.parse_args()

    options = parse_options(["--members", str(arguments.members), "--activity", str(arguments.activity)])
    env = base_env(options)
    env["DJANGO_SETTINGS_MODULE"] = arguments.settings
    env["DATABASE_POOL_MIN"] = "1"
    if arguments.sentry_rate is not None:
        stub = SentryStub().__enter__()
        env.update(SENTRY_DSN=stub.dsn, SENTRY_TRACES_SAMPLE_RATE=str(arguments.sentry_rate))
    os.environ.update(env)

    from portal.wsgi import application  # sets Django up (and Sentry, from the settings)

    # The baseline (bench/baseline/) has no database or apps: nothing to log in with.
    headers = (lambda path: {}) if arguments.settings.startswith("bench.baseline") else credentials()
    sentry = f"Sentry at {arguments.sentry_rate:g}" if arguments.sentry_rate is not None else "no Sentry"
    if not arguments.json:
        print(f"{arguments.settings}, {sentry}; per request:")
    costs = {}
    for path in arguments.paths:
        call = request(application, path, headers(path))
        status = warm([call])
        if not status.startswith("200"):
            raise SystemExit(f"{path} answered {status}")
        cpu = min(cpu_per_request([call], arguments.requests) for _ in range(3))
        calls, stats = calls_per_request([call], arguments.requests)
        costs[path] = {"python_calls": calls, "cpu_ms": round(cpu, 3)}
        if arguments.json:
            continue
        print(f"  {path:28} {calls:7,} Python calls  {cpu:6.2f} ms CPU")
        if arguments.profile:
            out = io.StringIO()
            stats.stream = out  # type: ignore[attr-defined]  # not in typeshed
            stats.sort_stats("cumulative").print_stats(40)
            print(out.getvalue())
    if arguments.json:
        print(json.dumps(costs))


def credentials() -> Callable[[str], dict[str, str]]:
    """The headers each path is asked with: a session for pages, a token for the API, the
    scrape token for /metrics, nothing for the probes and the landing page."""
    from django.conf import settings
    from django.db import connection

    from members.models import ApiToken, Member, MemberStatus, TokenScope
    from members.services import create_api_token

    with connection.cursor() as cursor:  # the busiest active bench member, as bench/data.py picks
        cursor.execute(
            "SELECT a.member_id FROM members_activitylog a JOIN members_member m ON m.id = a.member_id "
            "WHERE m.status = %s AND m.email LIKE %s GROUP BY a.member_id ORDER BY count(*) DESC, 1 LIMIT 1",
            [MemberStatus.ACTIVE, "%@bench.example"],
        )
        row = cursor.fetchone()
    if row is None:
        raise SystemExit("No bench member: run `make bench` (or bench-quick) once to load its database.")
    member = Member.objects.get(pk=row[0])
    (cookie,) = log_in_members([member])
    ApiToken.objects.filter(member=member, name="request cost").delete()
    _, token = create_api_token(member=member, name="request cost", scopes=[TokenScope.READ], expires_at=None)

    def headers(path: str) -> dict[str, str]:
        if path.startswith("/api/v1/"):
            return {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_AUTHORIZATION": f"Bearer {token}"}
        if path == "/metrics":
            return {"HTTP_AUTHORIZATION": f"Bearer {settings.METRICS_TOKEN}"}
        if path == "/" or path.startswith("/health/"):
            return {"HTTP_X_FORWARDED_PROTO": "https"}
        return {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_COOKIE": cookie}

    return headers


def request(application: Callable[..., Iterable[bytes]], path: str, headers: dict[str, str]) -> Callable[[], str]:
    """A function that sends GET `path` through the WSGI application, as gunicorn would, and
    returns the status line."""
    path, _, query = path.partition("?")

    def call() -> str:
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_NAME": HOST,
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": HOST,
            "REMOTE_ADDR": HOST,
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(),
            "wsgi.errors": sys.stderr,
            **headers,
        }
        statuses: list[str] = []

        def start_response(status: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], object]:
            statuses.append(status)
            return lambda data: None

        for _ in application(environ, start_response):
            pass
        return statuses[0]

    return call


def wsgi_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """HTTP request headers as the WSGI environ carries them (`Cookie` as `HTTP_COOKIE`), for
    `request`: what gunicorn hands the application for the same request."""
    environ = {}
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"] = value
    return environ


def warm(calls: Sequence[Callable[[], str]]) -> str:
    """WARM_REQUESTS requests, taking `calls` in turn; the status line of the last."""
    status = ""
    for call in itertools.islice(itertools.cycle(calls), WARM_REQUESTS):
        status = call()
    return status


def cpu_per_request(calls: Sequence[Callable[[], str]], requests: int) -> float:
    """CPU time of this process per request, in ms, over `requests` requests taking `calls` in turn."""
    started = time.process_time()
    for call in itertools.islice(itertools.cycle(calls), requests):
        call()
    return (time.process_time() - started) * 1000 / requests


def calls_per_request(calls: Sequence[Callable[[], str]], requests: int) -> tuple[int, pstats.Stats]:
    """Function calls per request counted by cProfile (Python functions and the C functions they
    call) over `requests` requests taking `calls` in turn, and the profile. Unlike a time, the
    count is the same on a busy machine as on an idle one."""
    profiler = cProfile.Profile()
    profiler.runcall(cpu_per_request, calls, requests)
    stats = pstats.Stats(profiler)
    total: int = stats.total_calls  # type: ignore[attr-defined]  # not in typeshed
    return total // requests, stats


def path_calls(path: Path_) -> int | None:
    """Python calls per request of one of `make bench`'s paths (bench/paths.py), in this process
    (Django set up on the bench's settings): the WSGI application that gunicorn serves, sent the
    path's own requests (its session or token and headers) in turn, BENCH_REQUESTS of them after
    WARM_REQUESTS of its warm-up. None for a path with other requests than GETs, or none (a
    pool of fresh members that the database ran out of)."""
    from portal.wsgi import application

    if not path.requests or any(r.method != "GET" for r in (*path.requests, *path.warmup)):
        return None
    warmed = warm([request(application, r.path, wsgi_headers(r.headers)) for r in path.warmup or path.requests])
    calls = [request(application, r.path, wsgi_headers(r.headers)) for r in path.requests]
    count, _ = calls_per_request(calls, BENCH_REQUESTS)
    for status in (warmed, calls[0]()):  # a wrong answer fails the count, as `load.check` fails the load
        if not status.startswith(f"{path.expect} "):
            raise RuntimeError(f"{path.title}: in process, {path.requests[0].path} answered {status}")
    return count


def baseline_calls(options: Options) -> int:
    """Python calls per request of the bare baseline's hello (bench/baseline/), counted by this
    script in a process of its own: its settings cannot share a process with the portal's."""
    command = [sys.executable, str(ROOT / "bench" / "request_cost.py"), "--settings", "bench.baseline.settings"]
    command += ["--members", str(options.members), "--activity", str(options.activity)]
    command += ["--requests", str(BENCH_REQUESTS), "--json", "/"]
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)  # noqa: S603
    calls: int = json.loads(done.stdout.splitlines()[-1])["/"]["python_calls"]
    return calls


if __name__ == "__main__":
    main()
