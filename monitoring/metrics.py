"""The portal's own Prometheus metrics, beside django-prometheus's request, response and database
metrics, and the exposition that `/metrics` serves.

Two kinds, kept apart because of how gunicorn runs us:

- Counted in each process (counters and histograms): request latency by member tier, SQL queries
  per request by view, cache reads per tier, API token authentication failures, rate-limit
  refusals, and the Web Vitals that members' browsers report. Under gunicorn, prometheus_client's
  multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, set up by `deploy/gunicorn.conf.py`) keeps each
  worker's values in a file and the scrape adds them up, so a counter equals what all workers
  counted together.
- Read at scrape time, once, by the process that answers the scrape (`ScrapeCollector`): the
  business numbers, the Stripe webhook status, each scheduled job's last success (core/jobs.py),
  and the health checks of monitoring/checks.py that say whether the portal can serve
  (readiness, with the database's latency) and memory.
  They are never registered with prometheus_client's global registry, so no worker keeps a copy that the
  multiprocess collector would multiply by the number of workers. The business numbers come from
  a cached read, so a scrape costs no heavy query; the checks carry timeouts, so a hung
  dependency cannot hang a scrape.

Nothing imports this module but settings (the middleware), urls (the view) and the app config
(the receivers); it observes the other apps through signals.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, Sum
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from core import jobs
from core.cache import SHORT, STAFF, TIERS, CacheStats, TtlTier, cached_read
from core.db_router import heavy_reads
from core.ratelimit import Limit
from members.models import Member, Tier
from monitoring import checks
from monitoring.health import Report, State, overall, run_checks
from subscriptions.models import Subscription, SubscriptionStatus
from subscriptions.reads import stripe_sync_status

logger = logging.getLogger("monitoring.metrics")

# --- Counted in each process -----------------------------------------------------------------

# Few label values on purpose: one series per tier, not per member.
MEMBER_TIERS = ("anonymous", *Tier.values)

REQUEST_LATENCY_BY_TIER = Histogram(
    "portal_request_duration_seconds",
    "Time from when the request reached us (the proxy's X-Request-Start, else gunicorn handing it to a worker "
    "thread) to the response, by the member tier of whoever asked.",
    ["member_tier"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
QUERIES_PER_REQUEST = Histogram(
    "portal_db_queries_per_request",
    "SQL queries run by one request, by view: the query budget the tests pin.",
    ["view"],
    buckets=(0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89),
)
CACHE_READS = Counter(
    "portal_cache_reads_total",
    "Cached reads (core.cache) by TTL tier, answered from the cache (hit) or computed (miss).",
    ["tier", "result"],
)
TOKEN_AUTH_FAILURES = Counter(
    "portal_api_auth_failures_total",
    "API requests refused 401: no token (missing), an unusable token (invalid_token), a token in the URL.",
    ["reason"],
)
RATE_LIMITED = Counter(
    "portal_rate_limited_requests_total",
    "API requests refused 429, by the limit they exceeded (ip or token).",
    ["limit"],
)


# Web Vitals reported by members' browsers (monitoring/vitals.py), by page (its URL name, as the
# `view` label of the request metrics) and member tier. Seconds, but CLS, which has no unit.
# Bucket edges sit on the alert targets (p75 of FCP 1.5 s, LCP 2.0 s, CLS 0.1) and on Google's
# good/poor thresholds, so histogram_quantile's interpolation never blurs a target.
_VITALS_LABELS = ["page", "member_tier"]
WEB_VITALS = {
    "FCP": Histogram(
        "portal_web_vitals_fcp_seconds",
        "First Contentful Paint in members' browsers, by page and member tier (target: p75 under 1.5 s).",
        _VITALS_LABELS,
        buckets=(0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.8, 2.5, 3.0, 4.0, 6.0, 10.0),
    ),
    "LCP": Histogram(
        "portal_web_vitals_lcp_seconds",
        "Largest Contentful Paint in members' browsers, by page and member tier (target: p75 under 2 s).",
        _VITALS_LABELS,
        buckets=(0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 10.0),
    ),
    "CLS": Histogram(
        "portal_web_vitals_cls",
        "Cumulative Layout Shift in members' browsers (no unit), by page and member tier (target: p75 under 0.1).",
        _VITALS_LABELS,
        buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0),
    ),
    "INP": Histogram(
        "portal_web_vitals_inp_seconds",
        "Interaction to Next Paint in members' browsers, by page and member tier (good: under 200 ms).",
        _VITALS_LABELS,
        buckets=(0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0),
    ),
    "TTFB": Histogram(
        "portal_web_vitals_ttfb_seconds",
        "Time to First Byte as members' browsers saw it, by page and member tier (good: under 800 ms).",
        _VITALS_LABELS,
        buckets=(0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.8, 3.0, 6.0),
    ),
}


def observe_web_vital(name: str, value: float, *, page: str, member_tier: str) -> None:
    """Record one validated value (monitoring.vitals): `name` one of WEB_VITALS, `value` in the
    histogram's unit."""
    WEB_VITALS[name].labels(page=page, member_tier=member_tier).observe(value)


_CACHE_RESULTS = {"hits": "hit", "misses": "miss"}


def count_cache_read(sender: type[CacheStats], *, tier: TtlTier, event: str, **kwargs: Any) -> None:
    """Receiver of `core.cache.stats_recorded`: hits and misses, per tier."""
    result = _CACHE_RESULTS.get(event)
    if result is not None:
        CACHE_READS.labels(tier=tier.name, result=result).inc()


def count_rate_limited(sender: type[Limit], *, limit: Limit, **kwargs: Any) -> None:
    """Receiver of `core.ratelimit.request_refused`."""
    RATE_LIMITED.labels(limit=limit.name).inc()


# Background tasks (Celery; portal/celery.py), by task name, wherever they run: in a worker's
# pool processes (served by the worker's own exporter, CELERY_WORKER_METRICS_PORT) or, eager,
# in the web process. Counted through Celery's signals (`count_task_*`, connected in apps.py).
TASK_RUNS = Counter("portal_task_runs_total", "Task runs that ended, whatever their outcome, by task.", ["task"])
TASK_FAILURES = Counter(
    "portal_task_failures_total", "Task runs that failed (raised, or timed out), by task.", ["task"]
)
TASK_RETRIES = Counter("portal_task_retries_total", "Task runs that asked to be tried again later, by task.", ["task"])
TASK_DURATION = Histogram(
    "portal_task_duration_seconds",
    "Time a task run took, from start to end, by task.",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)
MAIL_FAILED = Counter(
    "portal_mail_failed_total",
    "Mail given up (core/mail.py): refused for good (permanent), out of tries (retries_exhausted), or not queued.",
    ["reason"],
)
# Start times of the runs under way in this process, by task id.
_task_started: dict[str, float] = {}


def _task_name(sender: Any, task: Any = None) -> str:
    return str(getattr(task or sender, "name", None) or "unknown")


def count_task_start(sender: Any = None, task_id: str = "", task: Any = None, **kwargs: Any) -> None:
    """Receiver of Celery's `task_prerun`."""
    _task_started[task_id] = time.monotonic()


def count_task_end(sender: Any = None, task_id: str = "", task: Any = None, **kwargs: Any) -> None:
    """Receiver of Celery's `task_postrun`: one run ended (succeeded, failed or retrying)."""
    name = _task_name(sender, task)
    TASK_RUNS.labels(task=name).inc()
    started = _task_started.pop(task_id, None)
    if started is not None:
        TASK_DURATION.labels(task=name).observe(time.monotonic() - started)


def count_task_failure(sender: Any = None, **kwargs: Any) -> None:
    """Receiver of Celery's `task_failure`."""
    TASK_FAILURES.labels(task=_task_name(sender)).inc()


def count_task_retry(sender: Any = None, **kwargs: Any) -> None:
    """Receiver of Celery's `task_retry`."""
    TASK_RETRIES.labels(task=_task_name(sender)).inc()


def count_mail_failed(sender: Any, *, reason: str, **kwargs: Any) -> None:
    """Receiver of `core.mail.mail_failed`."""
    MAIL_FAILED.labels(reason=reason).inc()


# Pre-create the label sets that alerts divide by, so a rate exists (as zero) before the first event.
for _tier in TIERS:
    for _result in _CACHE_RESULTS.values():
        CACHE_READS.labels(tier=_tier.name, result=_result)
for _reason in ("permanent", "retries_exhausted", "not_queued"):
    MAIL_FAILED.labels(reason=_reason)


# --- Read at scrape time ---------------------------------------------------------------------

# Run at every scrape: what readiness runs, and memory. Each has its own timeout (monitoring.checks).
SCRAPE_CHECKS = (*checks.READINESS, checks.Memory)
READINESS_NAMES = frozenset(kind.name for kind in checks.READINESS)
# Subscriptions that bring in money each month; trials and comped memberships do not.
PAYING_STATUSES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)


@dataclass(frozen=True)
class BusinessNumbers:
    members: tuple[tuple[str, str, int], ...]  # (tier, status, count)
    live_subscriptions: tuple[tuple[str, str, int], ...]  # (plan code, status, count)
    monthly_revenue: tuple[tuple[str, Decimal], ...]  # (currency, amount in major units)


@cached_read(tier=SHORT, namespace=STAFF)
def business_numbers() -> BusinessNumbers:
    """Two GROUP BY queries, at most once a minute for every process together (the cache's
    stampede lock), however often Prometheus scrapes however many workers. On the read replica,
    if there is one."""
    with heavy_reads():
        members = tuple(
            (row["tier"], row["status"], row["n"])
            for row in Member.objects.order_by().values("tier", "status").annotate(n=Count("pk"))
        )
        rows = list(
            Subscription.objects.live()
            .order_by()
            .values("plan__code", "plan__interval", "plan__currency", "status")
            .annotate(n=Count("pk"), cents=Sum("plan__price_cents"))
        )
    revenue: dict[str, Decimal] = {}
    for row in rows:
        if row["status"] in PAYING_STATUSES:
            monthly = Decimal(row["cents"]) / (12 if row["plan__interval"] == "year" else 1)
            revenue[row["plan__currency"]] = revenue.get(row["plan__currency"], Decimal(0)) + monthly / 100
    return BusinessNumbers(
        members=members,
        live_subscriptions=tuple(sorted((row["plan__code"], row["status"], row["n"]) for row in rows)),
        monthly_revenue=tuple(sorted(revenue.items())),
    )


def _timestamp(moment: dt.datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


class ScrapeCollector(Collector):
    """Everything read at scrape time; see the module docstring. Each part is guarded: one that
    fails is logged and left out (and `portal_scrape_errors` says so), rather than failing the
    whole scrape and making the instance look down."""

    def collect(self) -> Iterator[Metric]:
        errors = GaugeMetricFamily(
            "portal_scrape_errors", "Parts of the scrape-time metrics that failed this scrape.", labels=["part"]
        )
        report = run_checks(SCRAPE_CHECKS)
        yield from self._health(report)
        try:
            yield from list(self._queue())
        except Exception:
            logger.warning("metrics: the job queue's depth could not be read", exc_info=True)
            errors.add_metric(["queue"], 1)
        database = report.get("database")
        if database is not None and database.state is not State.DOWN:
            # Without a database these would wait for a pooled connection: leave them out instead.
            for name, part in (("business", self._business), ("stripe", self._stripe)):
                try:
                    yield from list(part())
                except Exception:
                    logger.exception("metrics: the %s part failed", name)
                    errors.add_metric([name], 1)
        try:
            yield from list(self._jobs())
        except Exception:
            logger.exception("metrics: the jobs part failed")
            errors.add_metric(["jobs"], 1)
        yield errors

    @staticmethod
    def _health(report: Report) -> Iterator[Metric]:
        readiness = [result for result in report.results if result.name in READINESS_NAMES]
        ready = GaugeMetricFamily(
            "portal_ready", "1 while the portal can serve (its database answers), as /health/ready says."
        )
        ready.add_metric([], 0 if overall(readiness) is State.DOWN else 1)
        yield ready
        states = GaugeMetricFamily(
            "portal_health_check",
            "Each health check's state: 1 on the label of its current state (ok, degraded, down), 0 on the others.",
            labels=["check", "state"],
        )
        latency = GaugeMetricFamily(
            "portal_health_check_latency_seconds",
            "How long each health check took (database: a pooled connection and SELECT 1); its timeout when it hung.",
            labels=["check"],
        )
        for result in report.results:
            for state in State:
                states.add_metric([result.name, state.value], 1 if result.state is state else 0)
            latency.add_metric([result.name], result.latency_ms / 1000)
        yield states
        yield latency
        memory = report.get("memory")
        if memory is not None and memory.measurements.get("used_percent") is not None:
            used = GaugeMetricFamily(
                "portal_memory_used_ratio",
                "How full the memory the portal lives in is (the container's limit, else the machine's), 0 to 1.",
            )
            used.add_metric([], float(memory.measurements["used_percent"] or 0) / 100)
            yield used
            limit = GaugeMetricFamily("portal_memory_limit_bytes", "The container's memory limit, else the machine's.")
            limit.add_metric([], float(memory.measurements.get("limit_bytes") or 0))
            yield limit

    @staticmethod
    def _queue() -> Iterable[Metric]:
        """Tasks waiting in the broker, read with LLEN (Redis brokers only; none eager). Kombu
        keeps a queue's prioritised messages in keys of their own beside it, so those are added."""
        url = str(settings.CELERY_BROKER_URL)
        if not url.startswith(("redis://", "rediss://")):
            return []
        import redis

        queue = str(settings.CELERY_TASK_DEFAULT_QUEUE)
        keys = [queue, *(f"{queue}\x06\x16{step}" for step in range(1, 10))]
        client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            with client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.llen(key)
                pipe.hlen("unacked")
                *lengths, unacked = pipe.execute()
        finally:
            client.close()
        depth = GaugeMetricFamily(
            "portal_task_queue_depth", "Tasks waiting in the broker's queue for a worker (LLEN).", labels=["queue"]
        )
        depth.add_metric([queue], float(sum(lengths)))
        held = GaugeMetricFamily(
            "portal_task_unacked",
            "Tasks handed to workers and not yet acknowledged: running, or waiting for their retry's time.",
        )
        held.add_metric([], float(unacked))
        return [depth, held]

    @staticmethod
    def _business() -> Iterable[Metric]:
        numbers = business_numbers()
        members = GaugeMetricFamily("portal_members", "Members by tier and status.", labels=["tier", "status"])
        for tier, status, n in numbers.members:
            members.add_metric([tier, status], n)
        live = GaugeMetricFamily(
            "portal_live_subscriptions", "Live subscriptions by plan and status.", labels=["plan", "status"]
        )
        for code, status, n in numbers.live_subscriptions:
            live.add_metric([code, status], n)
        revenue = GaugeMetricFamily(
            "portal_monthly_recurring_revenue",
            "Monthly recurring revenue of active and past-due subscriptions (yearly plans / 12), in major units.",
            labels=["currency"],
        )
        for currency, amount in numbers.monthly_revenue:
            revenue.add_metric([currency], float(amount))
        return [members, live, revenue]

    @staticmethod
    def _stripe() -> Iterable[Metric]:
        status = stripe_sync_status()
        configured = GaugeMetricFamily("portal_stripe_configured", "1 when a Stripe webhook signing secret is set.")
        configured.add_metric([], 1 if status.configured else 0)
        metrics: list[Metric] = [configured]
        failed = GaugeMetricFamily(
            "portal_stripe_webhook_failed_events", "Stripe webhook events whose processing failed and is unresolved."
        )
        failed.add_metric([], status.failed_events)
        metrics.append(failed)
        for name, help_text, value in (
            (
                "portal_stripe_last_webhook_timestamp_seconds",
                "When the last Stripe webhook event was processed (Unix time); its age is time() minus this.",
                _timestamp(status.last_event_processed_at),
            ),
            (
                "portal_stripe_reconciled_timestamp_seconds",
                "When subscriptions were last reconciled with Stripe (Unix time).",
                _timestamp(status.reconciled_at),
            ),
            (
                "portal_stripe_drifted_subscriptions",
                "Subscriptions that differ from Stripe at the last reconciliation.",
                status.drifted,
            ),
        ):
            if value is not None:  # never seen: no sample, rather than a misleading zero
                gauge = GaugeMetricFamily(name, help_text)
                gauge.add_metric([], value)
                metrics.append(gauge)
        return metrics

    @staticmethod
    def _jobs() -> Iterable[Metric]:
        """Each schedule's period, and when it last succeeded as the job itself stored it in the
        cache (core/jobs.py): the same for every process, whichever worker ran the job. Under
        Prometheus the `job` label arrives as `exported_job` (the scrape's own `job` wins)."""
        period = GaugeMetricFamily(
            "portal_job_period_seconds", "How often beat runs each scheduled job, in seconds.", labels=["job"]
        )
        last = GaugeMetricFamily(
            "portal_job_last_success_timestamp_seconds",
            "When each scheduled job last succeeded (Unix time); no sample before its first success.",
            labels=["job"],
        )
        for schedule in jobs.schedules():
            period.add_metric([schedule.name], schedule.period.total_seconds())
            succeeded = jobs.last_success(schedule.name)
            if succeeded is not None:
                last.add_metric([schedule.name], succeeded.timestamp())
        return [period, last]


# --- Exposition --------------------------------------------------------------------------------


def multiprocess_dir() -> str:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


class _ThisProcess(Collector):
    """prometheus_client's global registry (this process's counters, its process and platform
    collectors), for a server of a single process such as runserver."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def exposition() -> tuple[bytes, str]:
    """The text that `/metrics` serves, and its content type. Under gunicorn (multiprocess mode),
    the counters of every worker, dead or alive, added up from their files; otherwise this
    process's. Then the scrape-time metrics, read once, here."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ThisProcess())
    registry.register(ScrapeCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST
