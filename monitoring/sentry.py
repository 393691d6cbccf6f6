"""Sentry set-up, called from settings when SENTRY_DSN is set.

- Errors are always sent (`sample_rate=1.0`); transactions are sampled by `traces_sampler`:
  never for probes and scrapes (health, metrics), the caller's decision when the request
  continues a trace, else SENTRY_TRACES_SAMPLE_RATE. Profiles: SENTRY_PROFILES_SAMPLE_RATE of
  the processes profile their traced transactions (the SDK's continuous profiling).
- The user is known by id and tier only (`SentryRequestMiddleware`): no email, name or address.
- Nothing secret or personal leaves the process: `scrub` runs on every error and transaction as
  it is sent, breadcrumbs included (they only ever leave inside an error event), and drops
  credentials by key (Authorization, cookies, anything named like a token, secret or
  password) and by shape wherever they appear in text (API tokens `mpt_…`,
  Stripe keys `sk_…`/`rk_…` and webhook secrets `whsec_…`, bearer credentials, email
  addresses, the keys in password-reset and email-confirmation paths). Request bodies are never
  sent: Stripe's webhook bodies are full of customers' personal data, and members' forms of
  their own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, cast

import sentry_sdk
from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils.functional import SimpleLazyObject, empty
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.integrations.redis import RedisIntegration
from sentry_sdk.tracing import NoOpSpan
from sentry_sdk.transport import Transport
from sentry_sdk.types import Event, Hint

from core.redaction import redact_secret_paths
from core.unavailable import database_unavailable

FILTERED = "[Filtered]"

# Paths whose requests are never traced: probed every few seconds, they would spend the
# transaction quota on nothing.
UNTRACED_PREFIXES = ("/health/", "/api/health", "/metrics")

# Keys whose values are dropped whole, wherever they appear (headers, cookies, extra data,
# local variables of a stack frame), compared in lower case and with `_` for `-`.
_SENSITIVE_KEY = re.compile(
    r"authorization|cookie|token|secret|password|passwd|api_?key|signature|session|csrf|email|dsn"
    r"|forwarded|real_ip|client_ip|remote_addr"  # the member's IP address
    r"|^(?:key|uidb36)$"  # the URL arguments of reset and confirmation links, in views' frames
)
_SECRETS = (
    (re.compile(r"\bmpt_[0-9A-Za-z]+"), FILTERED),  # our API tokens (members/tokens.py)
    (re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]+"), FILTERED),  # Stripe API keys
    (re.compile(r"\bwhsec_[0-9A-Za-z+/=]+"), FILTERED),  # Stripe webhook signing secrets
    (re.compile(r"(?i)\bbearer\s+[0-9A-Za-z._~+/=-]+"), f"Bearer {FILTERED}"),
    # Query strings and form-encoded text: the parameter's name stays, its value goes.
    (re.compile(r"(?i)\b(token|key|secret|password|signature|email)=[^&\s;'\"<>]+"), rf"\1={FILTERED}"),
    # Session keys in cache keys (Redis breadcrumbs and spans name the keys they touch).
    (re.compile(r"(django\.contrib\.sessions\.\w+?)[0-9a-z]{32}\b"), rf"\1{FILTERED}"),
    # IPv4 addresses (members' addresses, in rate-limit keys and proxy headers).
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"), FILTERED),
    # Email addresses, also URL-encoded (`%40`).
    (re.compile(r"[0-9A-Za-z._%+-]+(?:@|%40)[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)+"), FILTERED),
)


def scrub_text(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    # Reset and confirmation keys in paths: in request URLs, transaction names, breadcrumbs,
    # span descriptions and Referer headers alike, as the access log drops them.
    return redact_secret_paths(text, FILTERED)


def _sensitive(key: str) -> bool:
    return _SENSITIVE_KEY.search(key.lower().replace("-", "_")) is not None


def scrub(value: Any) -> Any:
    """A copy of `value` (an event or part of one) with secrets and personal data filtered."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {
            key: FILTERED if isinstance(key, str) and _sensitive(key) and value[key] else scrub(value[key])
            for key in value
        }
    if isinstance(value, list | tuple):
        # Headers may come as [name, value] pairs.
        if len(value) == 2 and isinstance(value[0], str) and _sensitive(value[0]):
            return [value[0], FILTERED]
        return [scrub(item) for item in value]
    return value


def _user(event: Event) -> dict[str, Any]:
    """The event's user, with only what SentryRequestMiddleware puts there."""
    user = event.get("user") or {}
    return {key: user[key] for key in ("id", "tier") if key in user}


def before_send(event: Event, hint: Hint) -> Event | None:
    exc_info = hint.get("exc_info")
    if exc_info and database_unavailable(exc_info[1]):
        # Each request refused while the database is down (503, core/unavailable.py) would be
        # a new error; the outage is told once, by the health checks and the metrics.
        return None
    scrubbed = cast("Event", scrub(event))
    if "user" in event:
        scrubbed["user"] = _user(event)
    return scrubbed


def make_traces_sampler(base_rate: float) -> Callable[[dict[str, Any]], float]:
    def traces_sampler(sampling_context: dict[str, Any]) -> float:
        environ = sampling_context.get("wsgi_environ") or {}
        path = str(environ.get("PATH_INFO", ""))
        if not path:  # ASGI
            path = str((sampling_context.get("asgi_scope") or {}).get("path", ""))
        if path.startswith(UNTRACED_PREFIXES):
            return 0.0
        parent = sampling_context.get("parent_sampled")
        if parent is not None:  # continue the caller's trace as the caller decided
            return 1.0 if parent else 0.0
        return base_rate

    return traces_sampler


def init_sentry(
    *,
    dsn: str,
    environment: str,
    release: str,
    traces_sample_rate: float,
    profiles_sample_rate: float,
    transport: Transport | None = None,
) -> None:
    """`transport` is for tests, which capture what would be sent."""
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release or None,
        sample_rate=1.0,  # every error
        traces_sampler=make_traces_sampler(traces_sample_rate),
        # Continuous profiling, while a sampled transaction runs, in this share of processes
        # (transaction-based `profiles_sample_rate` is deprecated by the SDK).
        profile_session_sample_rate=profiles_sample_rate,
        profile_lifecycle="trace",
        # What each option costs, in Python calls per request, is measured in docs/operations.md
        # ("What monitoring costs"). Spans for each middleware and each cache call (the SDK's
        # defaults, said here so an upgrade cannot turn them on) and for each signal receiver
        # (on by default): the most costly, and the least read. Redis's integration, enabled by
        # the SDK whenever redis is installed, is refused: a span and a breadcrumb for every
        # command cost more than the rest of the SDK on an API request, sampled or not, for
        # round trips of a fraction of a millisecond that the cache health check times.
        integrations=[DjangoIntegration(middleware_spans=False, signals_spans=False, cache_spans=False)],
        disabled_integrations=[RedisIntegration()],
        # No user details (SentryRequestMiddleware adds id and tier), IP addresses, cookies or
        # request bodies; headers and query strings go through `scrub`.
        data_collection={"user_info": False, "cookies": {"mode": "off"}, "http_bodies": []},
        before_send=before_send,
        before_send_transaction=before_send,
        # No `before_breadcrumb`: each SQL query leaves a breadcrumb, and
        # scrubbing each as it was recorded cost more than the rest of the SDK (bench/run.py,
        # docs/performance.md); `before_send` scrubs the few that an error event carries.
        transport=transport,
    )


class SentryRequestMiddleware:
    """Sentry's part of each request, first in the stack: the member on its events, and no
    spans for a request whose transaction is not sampled.

    **The member**, by id and tier only. The user is read when an error event is made, and only
    if something in the request had already loaded it: loading it here would cost a query on
    pages that never need the user (the health probes among them). The request runs in an
    isolation scope of its own, so the reader goes with the request. The transaction is
    finished outside it, after the response, so the user is also set on the outer scope then
    (which Sentry's WSGI middleware makes per request).

    **Unsampled requests make no spans.** The SDK builds a span for every SQL query, Redis
    command, signal receiver and template of a request whether or not its transaction is
    sampled, and only then drops those of the unsampled ones: at SENTRY_TRACES_SAMPLE_RATE 0.1,
    nine requests in ten paid for spans nobody would see (docs/operations.md, "What monitoring
    costs"). Here the transaction of an unsampled request is replaced, for the request's own
    scope, by the SDK's no-op span, whose children are no-ops too. Errors are unchanged: every
    one is still sent, with its breadcrumbs (queries, Redis commands: recorded apart from the
    spans) and the trace id of the request (the scope's propagation context)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        if not sentry_sdk.get_client().is_active():
            # No SENTRY_DSN: nothing to tell, and an isolation scope a request is not free.
            raise MiddlewareNotUsed
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        def add_user(event: Event, hint: Hint) -> Event:
            user = _loaded_user(request)
            if user is not None:
                event["user"] = user
            return event

        with sentry_sdk.isolation_scope() as scope:
            scope.add_event_processor(add_user)
            # isolation_scope() forked the current scope too: the no-op span stays in this request's.
            current = sentry_sdk.get_current_scope()
            if current.span is not None and not current.span.sampled:
                current.span = NoOpSpan()
            response = self.get_response(request)
        sentry_sdk.set_user(_loaded_user(request))
        return response


def _loaded_user(request: HttpRequest) -> dict[str, Any] | None:
    user = request.__dict__.get("user")
    if user is None or (isinstance(user, SimpleLazyObject) and user._wrapped is empty):
        return None
    if not user.is_authenticated:
        return None
    return {"id": str(user.pk), "tier": getattr(user, "tier", None)}
