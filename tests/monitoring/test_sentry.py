"""Sentry: what would be sent, captured by a real `sentry_sdk` client through a transport that
keeps envelopes instead of posting them. Errors always go, scrubbed; transactions are sampled
as `monitoring.sentry.make_traces_sampler` says, over the real WSGI handler (Sentry's
WSGI middleware starts transactions there, which Django's test client bypasses)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from io import BytesIO
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
import sentry_sdk
from django.core.handlers.wsgi import WSGIHandler
from django.test import Client
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from members.models import Member
from monitoring.sentry import init_sentry
from tests.monitoring.sentry_urls import API_TOKEN, EMAIL, STRIPE_KEY, WEBHOOK_SECRET

SECRETS = (API_TOKEN, STRIPE_KEY, WEBHOOK_SECRET, EMAIL)
TRACE_ID = "771a43a4192642f0b136d5159a501700"
PARENT_SPAN = "b0e6f15b45c36b12"


class CapturingTransport(Transport):
    """Keeps every envelope the client would send."""

    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def items(self, kind: str) -> list[dict[str, Any]]:
        sentry_sdk.flush()
        return [
            item.payload.json
            for envelope in self.envelopes
            for item in envelope.items
            if item.type == kind and item.payload.json is not None
        ]


@pytest.fixture
def sentry() -> Iterator[Callable[..., CapturingTransport]]:
    def start(traces: float = 0.0, profiles: float = 0.0) -> CapturingTransport:
        transport = CapturingTransport()
        init_sentry(
            dsn="https://public@sentry.example/1",
            environment="test",
            release="portal@1a2b3c",
            traces_sample_rate=traces,
            profiles_sample_rate=profiles,
            transport=transport,
        )
        return transport

    yield start
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)
    sentry_sdk.get_isolation_scope().set_user(None)


def _wsgi_get(path: str, **headers: str) -> int:
    """A GET through Django's real WSGI handler, as gunicorn would make it."""
    path, _, query = path.partition("?")
    environ: dict[str, Any] = {"PATH_INFO": path, "QUERY_STRING": query, "wsgi.input": BytesIO()}
    environ.update({f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()})
    setup_testing_defaults(environ)
    environ["SERVER_NAME"] = environ["HTTP_HOST"] = "localhost"
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        statuses.append(status)

    response = WSGIHandler()(environ, start_response)  # type: ignore[arg-type]
    b"".join(response)
    response.close()
    return int(statuses[0].split()[0])


def _sent(payloads: list[dict[str, Any]]) -> str:
    return json.dumps(payloads)


@pytest.mark.urls("tests.monitoring.sentry_urls")
def test_an_error_is_sent_with_the_member_by_id_and_tier_and_nothing_secret(sentry, alice: Member, transactional_db):
    transport = sentry(traces=0.0)  # no tracing at all: errors are sent regardless
    client = Client()
    client.force_login(alice)
    session = client.cookies["sessionid"].value

    status = _wsgi_get(
        f"/fail/?email={EMAIL}&token={API_TOKEN}",
        Authorization=f"Bearer {API_TOKEN}",
        Cookie=f"sessionid={session}; csrftoken=abc",
        **{"X-Stripe-Key": STRIPE_KEY, "X-Forwarded-For": "203.0.113.9"},
    )

    assert status == 500
    (event,) = transport.items("event")
    assert event["exception"]["values"][0]["type"] == "RuntimeError"
    assert event["exception"]["values"][0]["value"] == (
        "charge failed for [Filtered] with [Filtered] (webhook [Filtered], token [Filtered])"
    )
    assert event["user"] == {"id": str(alice.pk), "tier": alice.tier}
    assert event["environment"] == "test"
    assert event["release"] == "portal@1a2b3c"
    request = event["request"]
    assert request["url"] == "http://localhost/fail/"
    assert request["query_string"] == "email=[Filtered]&token=[Filtered]"
    headers = {name.lower(): value for name, value in request["headers"].items()}
    assert headers["authorization"] == "[Filtered]"
    assert headers["x-stripe-key"] == "[Filtered]"
    assert headers.get("cookie") in (None, "[Filtered]")
    assert "cookies" not in request
    assert not request.get("data")  # bodies are never sent
    assert "203.0.113.9" not in _sent([event])  # no IP address either
    frame_vars = event["exception"]["values"][0]["stacktrace"]["frames"][-1]["vars"]
    assert frame_vars["token"] == "[Filtered]"
    crumbs = [crumb.get("message", "") for crumb in event["breadcrumbs"]["values"]]
    assert "Retrying the charge for [Filtered]" in crumbs

    sent = _sent(transport.items("event"))
    for secret in (*SECRETS, session):
        assert secret not in sent
    assert "example.com" not in sent


@pytest.mark.urls("tests.monitoring.sentry_urls")
def test_an_anonymous_visitors_error_has_no_user(sentry, transactional_db):
    transport = sentry()

    assert _wsgi_get("/fail/for-anyone/", **{"X-Forwarded-For": "203.0.113.9"}) == 500

    (event,) = transport.items("event")
    assert event["exception"]["values"][0]["value"] == "the landing page broke"
    assert not event.get("user")
    assert "203.0.113.9" not in _sent([event])


CONFIRMATION_KEY = "MTE:1uXyZk:confirmation-key-secret"
RESET_KEY = "reset-key-secret-cw6zcq"


@pytest.mark.urls("tests.monitoring.sentry_urls")
def test_reset_and_confirmation_keys_in_paths_never_reach_sentry(sentry, transactional_db):
    transport = sentry(traces=1.0)

    status = _wsgi_get(
        f"/accounts/confirm-email/{CONFIRMATION_KEY}/fail/",
        Referer=f"http://localhost/accounts/password/reset/key/4-{RESET_KEY}/",
    )

    assert status == 500
    (event,) = transport.items("event")
    assert event["request"]["url"] == "http://localhost/accounts/confirm-email/[Filtered]/fail/"
    assert event["exception"]["values"][0]["value"] == (
        "confirmation failed at http://localhost/accounts/confirm-email/[Filtered]/fail/"
    )
    crumbs = [crumb.get("message", "") for crumb in event["breadcrumbs"]["values"]]
    assert "Could not confirm at /accounts/confirm-email/[Filtered]/fail/" in crumbs
    headers = {name.lower(): value for name, value in event["request"]["headers"].items()}
    assert headers["referer"] == "http://localhost/accounts/password/reset/key/[Filtered]/"
    (transaction,) = transport.items("transaction")
    spans = [span.get("description", "") for span in transaction["spans"]]
    assert "GET http://localhost/accounts/confirm-email/[Filtered]/fail/" in spans
    assert transaction["request"]["url"] == "http://localhost/accounts/confirm-email/[Filtered]/fail/"

    # A path that matches no URL pattern names its transaction itself.
    assert _wsgi_get(f"/accounts/confirm-email/{CONFIRMATION_KEY}/extra/") == 404
    # allauth's own pages; the reset page redirects to one without the key.
    assert _wsgi_get(f"/accounts/password/reset/key/4-{RESET_KEY}/") in (200, 302)
    names = [transaction["transaction"] for transaction in transport.items("transaction")]
    assert "/accounts/confirm-email/[Filtered]/extra/" in names
    assert len(names) == 3

    sent = _sent(transport.items("event") + transport.items("transaction"))
    assert CONFIRMATION_KEY not in sent
    assert RESET_KEY not in sent


def test_requests_are_traced_at_the_base_rate(sentry, transactional_db):
    transport = sentry(traces=1.0)

    assert _wsgi_get(f"/?ref={EMAIL}") == 200

    (transaction,) = transport.items("transaction")
    assert transaction["transaction"] == "/"
    assert transaction["environment"] == "test"
    assert EMAIL not in _sent([transaction])


def test_health_and_metrics_are_never_traced(sentry, transactional_db, settings):
    transport = sentry(traces=1.0)
    settings.HEALTH_TOKEN = "t"

    for path in ("/health/live", "/health/ready", "/api/health", "/health/", "/metrics"):
        _wsgi_get(path, **{"sentry-trace": f"{TRACE_ID}-{PARENT_SPAN}-1"})  # not even when asked to

    assert transport.items("transaction") == []


def test_nothing_is_traced_at_a_zero_rate(sentry, transactional_db):
    transport = sentry(traces=0.0)

    _wsgi_get("/")

    assert transport.items("transaction") == []


def test_the_callers_sampling_decision_is_honoured(sentry, transactional_db):
    transport = sentry(traces=0.0)
    _wsgi_get("/", **{"sentry-trace": f"{TRACE_ID}-{PARENT_SPAN}-1"})
    (transaction,) = transport.items("transaction")
    assert transaction["contexts"]["trace"]["trace_id"] == TRACE_ID

    transport = sentry(traces=1.0)
    _wsgi_get("/", **{"sentry-trace": f"{TRACE_ID}-{PARENT_SPAN}-0"})
    assert transport.items("transaction") == []


def test_profiling_rate_and_release_come_from_the_settings(sentry):
    sentry(traces=0.25, profiles=0.5)
    options = sentry_sdk.get_client().options
    assert options["profile_session_sample_rate"] == 0.5
    assert options["profile_lifecycle"] == "trace"
    assert options["sample_rate"] == 1.0
    assert options["traces_sampler"]({"transaction_context": {}, "parent_sampled": None}) == 0.25
    assert options["data_collection"]["user_info"] is False


@pytest.mark.urls("tests.monitoring.sentry_urls")
def test_a_sampled_request_is_traced_with_its_queries(sentry, alice: Member, transactional_db):
    transport = sentry(traces=1.0)
    client = Client()
    client.force_login(alice)

    assert _wsgi_get("/dashboard/", Cookie=f"sessionid={client.cookies['sessionid'].value}") == 200

    (transaction,) = transport.items("transaction")
    operations = {span["op"] for span in transaction["spans"]}
    assert "db" in operations
    # Not a span per signal receiver, middleware or cache call: costly, and seldom read.
    assert not operations & {"event.django", "middleware.django", "cache.get", "cache.put"}


def test_redis_commands_are_neither_spans_nor_breadcrumbs(sentry):
    sentry(traces=1.0)
    client = sentry_sdk.get_client()
    assert client.get_integration("redis") is None
    assert client.get_integration("django") is not None


@pytest.mark.urls("tests.monitoring.sentry_urls")
def test_an_error_of_an_unsampled_request_keeps_its_trace_id_and_breadcrumbs(sentry, alice: Member, transactional_db):
    # Unsampled requests make no spans (SentryRequestMiddleware); their errors lose nothing.
    transport = sentry(traces=0.0)
    client = Client()
    client.force_login(alice)

    status = _wsgi_get(
        "/fail/",
        Cookie=f"sessionid={client.cookies['sessionid'].value}",
        **{"sentry-trace": f"{TRACE_ID}-{PARENT_SPAN}-0"},
    )

    assert status == 500
    assert transport.items("transaction") == []
    (event,) = transport.items("event")
    assert event["contexts"]["trace"]["trace_id"] == TRACE_ID
    crumbs = event["breadcrumbs"]["values"]
    assert any(crumb.get("category") == "query" for crumb in crumbs)  # loading the session's member
    assert "Retrying the charge for [Filtered]" in [crumb.get("message", "") for crumb in crumbs]
