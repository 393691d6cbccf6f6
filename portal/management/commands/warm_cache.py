"""`warm_cache`: fill the cache before traffic arrives (after a deploy or a Redis restart)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count
from django.utils import timezone
from tqdm import tqdm

from core.cache import check_cache
from members.models import ActivityLog
from portal.dashboard import dashboard_summary
from subscriptions.reads import plans_on_offer


class Command(BaseCommand):
    help = (
        "Prewarm the cache: the plans on offer, and the dashboards of the members most active in "
        "the last --days days (at most --members of them)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--members", type=int, default=1000, help="How many members to warm (default 1000).")
        parser.add_argument("--days", type=int, default=7, help="Activity window that ranks members (default 7).")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args: Any, members: int, days: int, no_progress: bool, **options: Any) -> None:
        if members < 0 or days < 1:
            raise CommandError("--members must be 0 or more and --days at least 1.")
        health = check_cache()
        if not health.up:
            raise CommandError(f"The cache is unreachable ({health.error}): nothing to warm.")
        started = time.perf_counter()
        plans = plans_on_offer.refresh()

        since = timezone.now() - dt.timedelta(days=days)
        # Served by the index on created_at: only the window's rows are read.
        busiest = list(
            ActivityLog.objects.filter(created_at__gte=since)
            .values("member_id")
            .annotate(events=Count("id"))
            .order_by("-events", "member_id")
            .values_list("member_id", flat=True)[:members]
        )
        for member_id in tqdm(busiest, desc="dashboards", unit="member", disable=no_progress or not busiest):
            dashboard_summary.refresh(member_id)

        self.stdout.write(
            f"Warmed {len(plans)} plans and {len(busiest)} member dashboards "
            f"(most active in the last {days} days) in {time.perf_counter() - started:.1f} s."
        )
