"""The servers a run measures: the portal (and its variants) and the baseline under gunicorn,
started by the shared launcher (tools/servers.py), with what the bench reads from them."""

from __future__ import annotations

import http.client
import http.server
import math
import re
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.data import base_env
from bench.options import PROXY, Options
from bench.paths import Request
from tools.servers import HOST, Gunicorn, free_port


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: str

    def cookie(self, name: str) -> str:
        for header, value in self.headers:
            if header.lower() == "set-cookie" and value.startswith(f"{name}="):
                return value.split(";", 1)[0].split("=", 1)[1]
        raise RuntimeError(f"no {name} cookie in the response")


# The portal's own latency histogram (monitoring/metrics.py), read beside wrk's figures.
LATENCY_HISTOGRAM = "portal_request_duration_seconds"


@dataclass
class Server(Gunicorn):
    name: str
    settings: str
    multiproc: Path
    metrics: bool

    def fetch(self, method: str, path: str, headers: dict[str, str] | None = None, body: str = "") -> Response:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=60)
        try:
            connection.request(method, path, body=body or None, headers={"Host": self.host, **(headers or {})})
            response = connection.getresponse()
            return Response(response.status, response.getheaders(), response.read().decode("utf-8", "replace"))
        finally:
            connection.close()

    def counters(self) -> dict[str, float]:
        """The counters the bench reads, summed over their labels and workers.

        Read from the workers' metric files (PROMETHEUS_MULTIPROC_DIR), which is what /metrics
        adds up too: a scrape over HTTP would add its own request, queries and cache reads."""
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, str(self.multiproc))  # type: ignore[no-untyped-call]
        totals = dict.fromkeys(("requests", "responses", "statements", "queries", "counted", "hits", "misses"), 0.0)
        for family in registry.collect():
            for sample in family.samples:
                if sample.name == "django_http_requests_before_middlewares_total":
                    totals["requests"] += sample.value
                elif sample.name == "django_http_responses_before_middlewares_total":
                    totals["responses"] += sample.value
                elif sample.name in ("django_db_execute_total", "django_db_execute_many_total"):
                    totals["statements"] += sample.value
                elif sample.name == "portal_db_queries_per_request_sum":
                    totals["queries"] += sample.value
                elif sample.name == "portal_db_queries_per_request_count":
                    totals["counted"] += sample.value
                elif sample.name == "portal_cache_reads_total":
                    totals["hits" if sample.labels.get("result") == "hit" else "misses"] += sample.value
        return totals

    def latency_buckets(self) -> dict[float, float]:
        return latency_buckets(self.multiproc)

    def settled(self, timeout: float) -> dict[str, float]:
        """The counters once every request the server started has been answered: requests still
        in flight when wrk stops are finished by the server, and counted, after wrk has returned."""
        deadline = time.monotonic() + timeout
        while True:
            totals = self.counters()
            if totals["requests"] == totals["responses"] or time.monotonic() > deadline:
                return totals
            time.sleep(0.1)


def latency_buckets(multiproc: Path) -> dict[float, float]:
    """The cumulative buckets of the portal's latency histogram, from the text that /metrics
    serves: what a live Prometheus computes its p95 from.

    Made from the workers' metric files in `multiproc`, as `Server.counters` reads them and as
    /metrics makes its text, not scraped over HTTP: each scrape is itself a request that the
    histogram times, and on a path the histogram does not see (/health/live, answered before
    Django) the scrape would be the only observation there is."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, str(multiproc))  # type: ignore[no-untyped-call]
    return histogram_buckets(generate_latest(registry).decode(), LATENCY_HISTOGRAM)


def histogram_buckets(exposition: str, name: str) -> dict[float, float]:
    """The cumulative bucket counts of histogram `name` in a Prometheus text exposition, by upper
    bound (`le`), summed over its other labels (the member tier, the worker)."""
    from prometheus_client.parser import text_string_to_metric_families

    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(exposition):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return buckets


def bucket_delta(before: Mapping[float, float], after: Mapping[float, float]) -> dict[float, float]:
    """What a histogram counted between two readings, bucket by bucket (a bucket that appeared
    in between counts from zero)."""
    return {bound: count - before.get(bound, 0.0) for bound, count in after.items()}


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The `q` quantile of cumulative `buckets` (upper bound: count), as PromQL's
    histogram_quantile computes it: the bucket the rank `q` x count falls in, then linear
    interpolation between its lower bound (0 for the first bucket) and its upper bound. A rank
    in the +Inf bucket gives the highest finite bound. None without observations or a +Inf bucket."""
    bounds = sorted(buckets)
    if len(bounds) < 2 or not math.isinf(bounds[-1]):
        return None
    counts = [buckets[bound] for bound in bounds]
    for index in range(1, len(counts)):  # as Prometheus' ensureMonotonic: never fewer than below
        counts[index] = max(counts[index], counts[index - 1])
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    index = next(i for i, count in enumerate(counts) if count >= rank)
    if index == len(bounds) - 1:
        return bounds[-2]
    if index == 0 and bounds[0] <= 0:
        return bounds[0]
    start, below = (bounds[index - 1], counts[index - 1]) if index else (0.0, 0.0)
    return start + (bounds[index] - start) * (rank - below) / (counts[index] - below)


def start_server(
    options: Options, workdir: Path, name: str, settings: str, *, sentry_dsn: str = "", metrics: bool = True
) -> Server:
    """gunicorn with deploy/gunicorn.conf.py on a free loopback port, once every worker is up."""
    multiproc = workdir / f"prometheus-{name}"
    multiproc.mkdir()
    env = base_env(options)
    env.update(
        DJANGO_SETTINGS_MODULE=settings,
        PROMETHEUS_MULTIPROC_DIR=str(multiproc),
        SENTRY_DSN=sentry_dsn,
        SENTRY_TRACES_SAMPLE_RATE=str(options.traces_sample_rate),
        SENTRY_ENVIRONMENT="bench",
    )
    return Server.start(
        env,
        port=free_port(),
        workers=options.workers,
        log=workdir / f"gunicorn-{name}.log",
        probe="/" if settings.startswith("bench.baseline") else "/health/live",
        timeout=90,
        name=name,
        settings=settings,
        multiproc=multiproc,
        metrics=metrics,
    )


def log_in(server: Server, email: str, password: str) -> tuple[str, Request]:
    """Log in through the accounts login page as a browser would; the session cookie, and the
    login POST itself (with its CSRF cookie and token) for the login path to repeat."""
    from django.conf import settings

    page = server.fetch("GET", "/accounts/login/", PROXY)
    csrf = page.cookie(settings.CSRF_COOKIE_NAME)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
    if page.status != 200 or token is None:
        raise RuntimeError(f"/accounts/login/ answered {page.status} without a CSRF token")
    post = Request(
        "POST",
        "/accounts/login/",
        {
            **PROXY,
            "Cookie": f"{settings.CSRF_COOKIE_NAME}={csrf}",
            # HTTPS requests must name their origin for Django's CSRF check.
            "Origin": f"https://{server.host}",
            "Referer": f"https://{server.host}/accounts/login/",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        urllib.parse.urlencode({"csrfmiddlewaretoken": token[1], "login": email, "password": password}),
    )
    answer = server.fetch(post.method, post.path, post.headers, post.body)
    if answer.status != 302:
        raise RuntimeError(f"logging in {email} answered {answer.status}, not a redirect")
    return f"{settings.SESSION_COOKIE_NAME}={answer.cookie(settings.SESSION_COOKIE_NAME)}", post
