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
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.data import base_env, log_in_members
from bench.options import parse_options
from bench.sentry_stub import SentryStub
from tools.servers import HOST


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="PATH")
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--activity", type=int, default=10_000_000)
    parser.add_argument("--settings", default="portal.settings", help="DJANGO_SETTINGS_MODULE")
    parser.add_argument("--sentry-rate", type=float, help="initialise Sentry (to a stub) at this traces sample rate")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--profile", action="store_true", help="print the functions that took the most time")
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
    print(f"{arguments.settings}, {sentry}; per request:")
    for path in arguments.paths:
        call = request(application, path, headers(path))
        for _ in range(50):  # warm: templates compiled, connections open, the cache filled
            status = call()
        if not status.startswith("200"):
            raise SystemExit(f"{path} answered {status}")
        cpu = min(cpu_per_request(call, arguments.requests) for _ in range(3))
        profiler = cProfile.Profile()
        profiler.runcall(cpu_per_request, call, arguments.requests)
        stats = pstats.Stats(profiler)
        calls = stats.total_calls // arguments.requests  # type: ignore[attr-defined]  # not in typeshed
        print(f"  {path:28} {calls:7,} Python calls  {cpu:6.2f} ms CPU")
        if arguments.profile:
            out = io.StringIO()
            stats.stream = out  # type: ignore[attr-defined]  # not in typeshed
            stats.sort_stats("cumulative").print_stats(40)
            print(out.getvalue())


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


def cpu_per_request(call: Callable[[], str], requests: int) -> float:
    started = time.process_time()
    for _ in range(requests):
        call()
    return (time.process_time() - started) * 1000 / requests


if __name__ == "__main__":
    main()
