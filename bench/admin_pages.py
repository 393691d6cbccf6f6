"""Admin page timings on a big database: each list (plain, filtered, searched) and a member's page.

    DATABASE_URL=postgres://... python bench/admin_pages.py [--requests 20]

Drives the real request stack in-process (middleware, session, admin view, template) with
Django's test client, logged in as the first superuser (`seed_demo` makes admin@example.com),
and prints for each page the median and slowest time, the median time spent in SQL, the
queries per request and the slowest query. Run it after a scale seed
(`seed_demo --members 100000 --activity 10000000`). It only reads.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from collections.abc import Callable
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
from django.urls import reverse  # noqa: E402
from django.utils import timezone  # noqa: E402

from core.cache import STAFF, invalidate  # noqa: E402
from members.models import ActivityLog, Member  # noqa: E402


def pages() -> list[tuple[str, str, Callable[[], None] | None]]:
    sample = ActivityLog.objects.filter(member_id__lte=2000).values("member_id").annotate(n=Count("id"))
    top = sample.order_by("-n").first()
    if top is None:
        raise SystemExit("No activity to measure: run `python manage.py seed_demo --activity N` first.")
    busy = Member.objects.get(pk=top["member_id"])
    week_ago = (timezone.now() - dt.timedelta(days=7)).date().isoformat()
    members = reverse("admin:members_member_changelist")
    activity = reverse("admin:members_activitylog_changelist")
    listed: list[tuple[str, str]] = [
        ("admin index (dashboard cached)", reverse("admin:index")),
        ("members", members),
        ("members, status suspended", f"{members}?status__exact=suspended"),
        ("members, tier pro", f"{members}?tier__exact=pro"),
        ("members, staff", f"{members}?is_staff__exact=1"),
        ("members, joined in the last week", f"{members}?created_at__gte={week_ago}"),
        ("members, search 'member00012'", f"{members}?q=member00012"),
        ("members, last page", f"{members}?p=99"),
        ("profiles", reverse("admin:members_profile_changelist")),
        ("api tokens", reverse("admin:members_apitoken_changelist")),
        ("api tokens, expired", f"{reverse('admin:members_apitoken_changelist')}?expiry=expired"),
        ("activity", activity),
        ("activity, action login", f"{activity}?action__exact=login"),
        ("activity, rare action token_revoked", f"{activity}?action__exact=token_revoked"),
        ("activity, last week", f"{activity}?created_at__gte={week_ago}"),
        ("activity, one member", f"{activity}?member__id__exact={busy.pk}"),
        ("activity, search by email", f"{activity}?q={busy.email}"),
        ("activity, last page", f"{activity}?p=99"),
        ("subscriptions", reverse("admin:subscriptions_subscription_changelist")),
        ("member page (busiest member)", reverse("admin:members_member_change", args=[busy.pk])),
        (
            "member autocomplete 'member0001'",
            "/admin/autocomplete/?app_label=members&model_name=activitylog&field_name=member&term=member0001",
        ),
    ]
    # The dashboard's numbers recomputed on every request, as after a change to members.
    cold = ("admin index (dashboard recomputed)", reverse("admin:index"), lambda: invalidate(STAFF))
    return [listed[0] + (None,), cold, *((name, url, None) for name, url in listed[1:])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20)
    options = parser.parse_args()
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    # The admin's second-factor check is about people, not this measurement.
    settings.ADMIN_REQUIRE_MFA = False
    staff = Member.objects.filter(is_superuser=True).order_by("pk").first()
    if staff is None:
        raise SystemExit("No superuser: run `python manage.py seed_demo` first.")
    client = Client()
    client.force_login(staff)
    print(f"database {connection.vendor}: {Member.objects.count():,} members, about {_estimate():,} activity rows")
    print(f"{'page':38} {'median':>8} {'slowest':>8} {'SQL':>7} {'queries':>7}  slowest query")
    for name, url, before in pages():
        client.get(url)  # warm: templates, the session, the buffer cache
        timings, sql_times, slowest_sql = [], [], (0.0, "")
        for _ in range(options.requests):
            if before is not None:
                before()
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(url)
                timings.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise SystemExit(f"{url} answered {response.status_code}")
            sql_times.append(sum(float(query["time"]) for query in queries.captured_queries))
            for query in queries.captured_queries:
                if float(query["time"]) > slowest_sql[0]:
                    slowest_sql = (float(query["time"]), query["sql"])
        print(
            f"{name:38} {statistics.median(timings) * 1000:6.1f}ms {max(timings) * 1000:6.1f}ms "
            f"{statistics.median(sql_times) * 1000:5.1f}ms {len(queries.captured_queries):7}  "
            f"{slowest_sql[0] * 1000:.1f} ms: {slowest_sql[1][:70]}"
        )


def _estimate() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = 'members_activitylog'::regclass")
        row = cursor.fetchone()
    return int(row[0]) if row else 0


if __name__ == "__main__":
    main()
