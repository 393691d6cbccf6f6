"""`seed_demo`: demo logins for `make run` (`portal.demo_data`), and benchmark-scale data with
--members/--activity (`portal.bench_data`).

Everything one run writes is in one transaction: an interrupted run leaves nothing behind.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

from members.models import ActivityLog, ApiToken, Member

# Published in the README and printed by every run, which is why the command refuses to run
from portal.bench_data import BENCH_DOMAIN, LOADED_TABLES, bench_email, seed_bench_activity, seed_bench_members
from portal.demo_data import ADMIN_EMAIL, DEMO_MEMBERS, DEMO_PASSWORD, SeedCounts, seed_demo_data
from subscriptions.models import Plan, Subscription


class Command(BaseCommand):
    help = (
        "Load demo data: plans, a staff superuser and demo members, all with one published password. "
        "With --members/--activity, also benchmark-scale data up to those totals (COPY on PostgreSQL). "
        "Safe to run again; never deletes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--members",
            type=int,
            metavar="N",
            help=f"Make sure exactly N bench members ({bench_email(1)}, ...) exist (a total, not an increment).",
        )
        parser.add_argument(
            "--activity",
            type=int,
            metavar="N",
            help="Make the bench members' activity log rows total N, spread over the past year.",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Run even with DEBUG off. The accounts it creates have a published password.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        members: int | None = options["members"]
        activity: int | None = options["activity"]
        for name, value in (("--members", members), ("--activity", activity)):
            if value is not None and value < 0:
                raise CommandError(f"{name} must be 0 or more, not {value}.")
        if not settings.DEBUG and not options["force"]:
            raise CommandError(
                "DEBUG is off, so this may be a real site: seed_demo creates a superuser and members whose "
                f"password ({DEMO_PASSWORD}) is published. Pass --force only for a database you can throw away."
            )

        started = time.monotonic()
        changes = SeedCounts()
        # Bulk loads leave the planner's statistics and the visibility map behind, and autovacuum
        # may be off or slow to come: without VACUUM every index-only scan (counts, keyset pages)
        # reads the heap too, which would skew the benchmarks run on this data. VACUUM cannot
        # run inside a transaction, so inside a caller's (a test's) it is ANALYZE alone.
        postgres = connection.vendor == "postgresql"
        nested = connection.in_atomic_block
        with transaction.atomic():
            seed_demo_data(changes)
            if members is not None:
                seed_bench_members(members, changes)
            if activity is not None:
                seed_bench_activity(activity, changes)
            if postgres and nested:
                with connection.cursor() as cursor:
                    cursor.execute(f"ANALYZE {LOADED_TABLES}")
        if postgres and not nested:
            with connection.cursor() as cursor:
                cursor.execute(f"VACUUM (ANALYZE) {LOADED_TABLES}")
        elapsed = time.monotonic() - started

        bench_members = Member.objects.filter(email__endswith="@" + BENCH_DOMAIN).count()
        if members is not None and bench_members > members:
            self.stderr.write(
                self.style.WARNING(f"There are {bench_members} bench members, more than --members {members}: kept.")
            )
        bench_activity = ActivityLog.objects.filter(member__email__endswith="@" + BENCH_DOMAIN).count()
        if activity is not None and bench_activity > activity:
            self.stderr.write(
                self.style.WARNING(
                    f"There are {bench_activity} bench activity rows, more than --activity {activity}: kept."
                )
            )
        self.stdout.write(
            f"Created {changes.members} members, {changes.activity} activity rows in {elapsed:.1f} s; "
            f"totals: {Member.objects.count()} members ({bench_members} bench), {Plan.objects.count()} plans, "
            f"{Subscription.objects.count()} subscriptions, {ApiToken.objects.count()} API tokens, "
            f"{ActivityLog.objects.count()} activity rows ({bench_activity} bench)."
        )
        self.stdout.write(f"\nDemo logins, all with the password {DEMO_PASSWORD}:")
        self.stdout.write(f"  {ADMIN_EMAIL:<20} staff superuser, /admin/")
        for spec in DEMO_MEMBERS:
            subscription = f"{spec.plan}, {spec.status}" if spec.plan else "free, no subscription"
            self.stdout.write(f"  {spec.email:<20} {subscription}")
        if bench_members:
            self.stdout.write(f"  {bench_email(1)} ... ({bench_members} bench members, same password)")
