"""Dashboard throughput with the cache warm and cold, measured in the same run.

    DATABASE_URL=postgres://... REDIS_URL=redis://... python bench/cache_dashboard.py [--requests 500]

Drives the real request stack in-process (middleware, session, view, template) with Django's
test client, as a member with a busy activity log, and prints requests per second with the
member's cached summary kept warm, and with it invalidated before every request (cold), and
their ratio. Uses the members that `seed_demo` makes; run it after `make demo` or a scale seed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Count  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from core.cache import MEMBER, invalidate  # noqa: E402
from members.models import ActivityLog, Member  # noqa: E402


def busiest_member() -> Member:
    sample = ActivityLog.objects.filter(member_id__lte=2000).values("member_id").annotate(n=Count("id"))
    top = sample.order_by("-n").first()
    if top is None:
        raise SystemExit("No activity to measure: run `python manage.py seed_demo` first.")
    return Member.objects.get(pk=top["member_id"])


def run(client: Client, member: Member, requests: int, *, cold: bool) -> tuple[float, float, int]:
    """Requests per second, median latency in ms, and queries per request."""
    timings = []
    with CaptureQueriesContext(connection) as queries:
        for _ in range(requests):
            if cold:
                invalidate(MEMBER, member.pk)
            started = time.perf_counter()
            response = client.get("/dashboard/")
            timings.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise SystemExit(f"/dashboard/ answered {response.status_code}")
    return requests / sum(timings), statistics.median(timings) * 1000, len(queries.captured_queries) // requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500)
    options = parser.parse_args()
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    member = busiest_member()
    client = Client()
    client.force_login(member)
    client.get("/dashboard/")
    rounds = []
    for _ in range(3):  # interleaved, so drift on a shared machine hits both alike
        rounds.append(
            (run(client, member, options.requests, cold=True), run(client, member, options.requests, cold=False))
        )
    cold = max(r[0] for r in rounds)
    warm = max(r[1] for r in rounds)
    print(
        f"database {connection.vendor}, cache {str(settings.CACHES['default']['BACKEND']).rsplit('.', 1)[-1]}, "
        f"member {member.pk} with {ActivityLog.objects.filter(member=member).count()} activity rows"
    )
    print(f"cold: {cold[0]:8.1f} req/s  median {cold[1]:6.2f} ms  {cold[2]} queries/request")
    print(f"warm: {warm[0]:8.1f} req/s  median {warm[1]:6.2f} ms  {warm[2]} queries/request")
    print(f"warm / cold throughput: {warm[0] / cold[0]:.2f}x")


if __name__ == "__main__":
    main()
