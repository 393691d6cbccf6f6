"""Per-request metrics: latency by member tier, SQL queries by view, and API token
authentication failures (`RequestMetricsMiddleware`, just inside django-prometheus's first
middleware, which counts every request); responses by status and view and the latency by view
(`PrometheusAfterMiddleware`, the last in the stack).

The latency is counted from when the request reached us, not from when this middleware ran: the
proxy's X-Request-Start, else the moment gunicorn's worker handed it to a thread
(monitoring/request_start.py), so the wait for a free worker thread is in it. This runs on every
request, so it is kept cheap: the histograms' children are looked up once per label value, not
through prometheus_client's `.labels()` each time, and the query counter is put on the
connection without a context manager."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import django_prometheus.middleware  # type: ignore[import-untyped]
from django.db import DEFAULT_DB_ALIAS, connections
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django_prometheus.utils import Time, TimeSince  # type: ignore[import-untyped]

from core.ratelimit import API_PREFIX
from monitoring.metrics import MEMBER_TIERS, QUERIES_PER_REQUEST, REQUEST_LATENCY_BY_TIER, TOKEN_AUTH_FAILURES
from monitoring.request_start import request_started_at

# WWW-Authenticate's error parameter on the API's 401 answers (members.api_auth.TokenAuth), as a reason.
_AUTH_ERRORS = {'error="invalid_token"': "invalid_token", 'error="invalid_request"': "token_in_query"}


class RequestMetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        # Both label sets are bounded: the tiers, and the URLconf's names. Made as first seen, so
        # a tier no member of has asked yet adds no series to every scrape, for every worker.
        self._latency: dict[str, Any] = {}
        self._queries: dict[str, Any] = {}

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        started_at = request_started_at(request.META, now=time.time())
        counter = _QueryCounter()
        wrappers = connections[DEFAULT_DB_ALIAS].execute_wrappers
        wrappers.append(counter)
        try:
            response = self.get_response(request)
        finally:
            wrappers.remove(counter)
        elapsed = time.perf_counter() - started
        if started_at is not None:
            # The wall clock for the time before we ran; never less than what we timed ourselves,
            # should the clock have been stepped back meanwhile.
            elapsed = max(elapsed, time.time() - started_at)
        tier = member_tier(request)
        latency = self._latency.get(tier)
        if latency is None:
            latency = self._latency[tier] = REQUEST_LATENCY_BY_TIER.labels(member_tier=tier)
        latency.observe(elapsed)
        view = view_name(request)
        queries = self._queries.get(view)
        if queries is None:
            queries = self._queries[view] = QUERIES_PER_REQUEST.labels(view=view)
        queries.observe(counter.queries)
        if response.status_code == 401 and request.path.startswith(API_PREFIX):
            challenge = response.get("WWW-Authenticate", "")
            reason = next((name for marker, name in _AUTH_ERRORS.items() if marker in challenge), "missing")
            TOKEN_AUTH_FAILURES.labels(reason=reason).inc()
        return response


class _QueryCounter:
    """A `connection.execute_wrapper` that counts the statements run (executemany counts once)."""

    def __init__(self) -> None:
        self.queries = 0

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        self.queries += 1
        return execute(sql, params, many, context)


def member_tier(request: HttpRequest) -> str:
    """The tier of the member behind the request: a session's, or an API token's.

    Only a user that something already loaded is looked at (AuthenticationMiddleware caches it on
    the request as `_cached_user`): loading one here would cost a query on pages that never
    needed the user, such as /health/live, and change every pinned query count."""
    user = getattr(request, "_cached_user", None)
    if user is None or not user.is_authenticated:
        user = getattr(getattr(request, "auth", None), "member", None)  # the API's token (django-ninja)
    tier = getattr(user, "tier", None) if user is not None and user.is_authenticated else None
    return tier if tier in MEMBER_TIERS else "anonymous"


def view_name(request: HttpRequest) -> str:
    """The URL's name (`dashboard`, `api-1:me`), bounded by the URLconf; one name for the rest."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "<unresolved>"
    return str(match.view_name or match._func_path)


class PrometheusAfterMiddleware(django_prometheus.middleware.PrometheusAfterMiddleware):  # type: ignore[misc]
    """django-prometheus's innermost middleware, with only the series that something reads:
    responses by status (the error-rate alert), by status, view and method, the latency by view
    and method (the latency alert and the dashboard), requests by view, transport and method
    (what each instance served, tests/portal/test_instances.py), exceptions by type and view.

    Left out, for costing Python calls on every request while no dashboard, alert or runbook
    reads them (grep deploy/ docs/): requests by method, by transport, AJAX requests, request
    and response body sizes, responses by charset, streaming responses and responses by
    template name. Each child is looked up once per label set (status,
    view, method: bounded by the URLconf) rather than through `.labels()` on every request. The
    method label is the sanitised one for the latency too (django-prometheus labels that with
    the method as sent, so any made-up method made a new series)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._children: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}
        self._requests: dict[tuple[str, str, str], Any] = {}

    def process_request(self, request: HttpRequest) -> None:
        request.prometheus_after_middleware_event = Time()  # type: ignore[attr-defined]

    def process_view(self, request: HttpRequest, view_func: Any, *view_args: Any, **view_kwargs: Any) -> None:
        match = request.resolver_match
        key = (
            (match.view_name if match is not None else "") or "<unnamed view>",
            self._transport(request),
            self._method(request),
        )
        requests = self._requests.get(key)
        if requests is None:
            view, transport, method = key
            requests = self._requests[key] = self.metrics.requests_by_view_transport_method.labels(
                view=view, transport=transport, method=method
            )
        requests.inc()

    def process_template_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        return response

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        status, view, method = str(response.status_code), self._get_view_name(request), self._method(request)
        children = self._children.get((status, view, method))
        if children is None:
            metrics = self.metrics
            children = self._children[status, view, method] = (
                metrics.responses_by_status.labels(status=status),
                metrics.responses_by_status_view_method.labels(status=status, view=view, method=method),
                metrics.requests_latency_by_view_method.labels(view=view, method=method),
            )
        by_status, by_status_view_method, latency = children
        by_status.inc()
        by_status_view_method.inc()
        started = getattr(request, "prometheus_after_middleware_event", None)
        if started is not None:
            latency.observe(TimeSince(started))
        else:
            self.metrics.requests_unknown_latency.inc()
        return response
