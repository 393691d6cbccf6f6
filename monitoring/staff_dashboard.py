"""The staff dashboard on the admin index: business numbers beside ops numbers.

The business numbers come from a handful of aggregate queries, cached in the STAFF namespace for
the MEDIUM tier: every write to members and subscriptions invalidates STAFF, so they follow a
change at once, and activity volume (which every login moves) follows by TTL. The ops numbers
are read live, each from where it is already kept cheaply: the cache statistics, this process's
recent requests, the Stripe sync status, the scheduled jobs' last successes and the health
checks (bounded by their timeouts)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from core import jobs
from core.cache import MEDIUM, STAFF, cached_read, stats
from core.db_router import heavy_reads
from members.models import ActivityLog, Member, MemberStatus, Tier
from monitoring import checks
from monitoring.health import Report, public_report
from monitoring.metrics import business_numbers
from monitoring.traffic import TrafficSummary, recent_requests
from subscriptions.models import Plan, Subscription, SubscriptionStatus
from subscriptions.reads import StripeSyncStatus, stripe_sync_status

SIGNUP_DAYS = 90


@dataclass(frozen=True)
class StaffNumbers:
    computed_at: dt.datetime
    members: int
    new_7_days: int
    new_30_days: int
    by_tier: tuple[tuple[str, int], ...]  # (label, count), every tier
    by_status: tuple[tuple[str, int], ...]
    live_by_plan: tuple[tuple[str, int], ...]  # (plan name, live subscriptions)
    monthly_revenue: tuple[tuple[str, Decimal], ...]  # (currency, amount)
    cancellations_30_days: int
    signups: tuple[tuple[dt.date, int], ...]  # one per day, oldest first, SIGNUP_DAYS of them
    activity_24_hours: int
    activity_7_days: int


@cached_read(tier=MEDIUM, namespace=STAFF)
def staff_numbers() -> StaffNumbers:
    """Five queries (two shared with the Prometheus business gauges): member counts by tier and
    status, live subscriptions by plan, sign-ups per day, cancellations, activity volume. The
    activity count reads the `created_at` index for a week of rows, not the whole table. On the
    read replica, if there is one: the numbers may trail the primary by its replication lag."""
    with heavy_reads():
        return _staff_numbers()


def _staff_numbers() -> StaffNumbers:
    now = timezone.now()
    today = timezone.localdate(now)
    first_day = today - dt.timedelta(days=SIGNUP_DAYS - 1)
    shared = business_numbers()

    tiers: dict[str, int] = {}
    statuses: dict[str, int] = {}
    for tier, status, count in shared.members:
        tiers[tier] = tiers.get(tier, 0) + count
        statuses[status] = statuses.get(status, 0) + count

    plan_names = dict(Plan.objects.values_list("code", "name"))
    live: dict[str, int] = {}
    for code, _status, count in shared.live_subscriptions:
        live[plan_names.get(code, code)] = live.get(plan_names.get(code, code), 0) + count

    start = timezone.make_aware(dt.datetime.combine(first_day, dt.time.min))
    per_day = dict(
        Member.objects.filter(created_at__gte=start)
        .annotate(day=TruncDate("created_at"))
        .order_by()
        .values("day")
        .annotate(n=Count("pk"))
        .values_list("day", "n")
    )
    signups = tuple(
        (first_day + dt.timedelta(days=i), per_day.get(first_day + dt.timedelta(days=i), 0)) for i in range(SIGNUP_DAYS)
    )
    activity = ActivityLog.objects.filter(created_at__gte=now - dt.timedelta(days=7)).aggregate(
        week=Count("pk"), day=Count("pk", filter=Q(created_at__gte=now - dt.timedelta(days=1)))
    )
    return StaffNumbers(
        computed_at=now,
        members=sum(tiers.values()),
        new_7_days=sum(n for day, n in signups if day > today - dt.timedelta(days=7)),
        new_30_days=sum(n for day, n in signups if day > today - dt.timedelta(days=30)),
        by_tier=tuple((label, tiers.get(value, 0)) for value, label in Tier.choices),
        by_status=tuple((label, statuses.get(value, 0)) for value, label in MemberStatus.choices),
        live_by_plan=tuple(sorted(live.items(), key=lambda item: -item[1])),
        monthly_revenue=shared.monthly_revenue,
        cancellations_30_days=Subscription.objects.filter(
            status=SubscriptionStatus.CANCELED, canceled_at__gte=now - dt.timedelta(days=30)
        ).count(),
        signups=signups,
        activity_24_hours=activity["day"],
        activity_7_days=activity["week"],
    )


@dataclass(frozen=True)
class Bar:
    x: int
    y: int
    height: int
    label: str


CHART_WIDTH, CHART_HEIGHT, BAR_STEP = 900, 120, 10


def signup_bars(signups: tuple[tuple[dt.date, int], ...]) -> tuple[Bar, ...]:
    """The sign-ups as SVG bars (server-rendered: no chart script), scaled to the busiest day."""
    peak = max((count for _, count in signups), default=0) or 1
    bars = []
    for index, (day, count) in enumerate(signups):
        height = round(CHART_HEIGHT * count / peak)
        bars.append(Bar(index * BAR_STEP, CHART_HEIGHT - height, height, f"{day:%-d %b}: {count}"))
    return tuple(bars)


@dataclass(frozen=True)
class OpsNumbers:
    traffic: TrafficSummary
    cache_hit_rate: float | None
    stripe: StripeSyncStatus
    webhook_age: dt.timedelta | None
    health: Report
    jobs: tuple[JobRun, ...]


@dataclass(frozen=True)
class JobRun:
    name: str
    period: dt.timedelta
    last_success: dt.datetime | None
    overdue: bool


def job_runs(now: dt.datetime) -> tuple[JobRun, ...]:
    """Each schedule's last success, as the job stored it (core/jobs.py); overdue after twice
    its period, as the alert and the health check judge it."""
    runs = []
    for schedule in jobs.schedules():
        last = jobs.last_success(schedule.name)
        overdue = last is None or now - last > 2 * schedule.period
        runs.append(JobRun(schedule.name, schedule.period, last, overdue))
    return tuple(runs)


def ops_numbers() -> OpsNumbers:
    totals = stats.totals()
    hits = sum(tier["hits"] for tier in totals.values())
    reads = hits + sum(tier["misses"] for tier in totals.values())
    stripe = stripe_sync_status()
    last = stripe.last_event_processed_at
    return OpsNumbers(
        traffic=recent_requests.summary(),
        cache_hit_rate=hits / reads if reads else None,
        stripe=stripe,
        webhook_age=timezone.now() - last if last else None,
        health=public_report(checks.ALL),
        jobs=job_runs(timezone.now()),
    )


def admin_index_context() -> dict[str, Any]:
    """What templates/admin/index.html shows, as the `dashboard` variable."""
    numbers = staff_numbers()
    ops = ops_numbers()
    return {
        "numbers": numbers,
        "ttl_minutes": round(MEDIUM.ttl / 60),
        "bars": signup_bars(numbers.signups),
        "chart": {"width": CHART_WIDTH, "height": CHART_HEIGHT, "bar_width": BAR_STEP - 2},
        "signups_total": sum(count for _, count in numbers.signups),
        "ops": ops,
        "window_minutes": max(1, round(ops.traffic.window_seconds / 60)),
        "error_percent": ops.traffic.error_rate * 100,
        "hit_percent": (ops.cache_hit_rate or 0) * 100,
    }
