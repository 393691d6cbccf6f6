"""`/metrics`: who may read it, and that each of our metrics counts what it says it counts.

Counters are read from prometheus_client's registry in this process (the suite runs without
multiprocess mode) as a difference before and after, since other tests count into them too.
The multi-worker sums and a real Prometheus are in test_gunicorn.py and test_prometheus.py.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from health_check.exceptions import ServiceUnavailable
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from core.cache import MEDIUM, MEMBER, cached_read
from members.models import MemberStatus, Tier, TokenScope
from members.services import create_api_token
from monitoring import checks
from monitoring.metrics import business_numbers
from subscriptions.models import Plan, Subscription, SubscriptionStatus

TOKEN = "metrics-token-for-tests"
AUTH = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", **AUTH)
    assert response.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }


@pytest.fixture
def token(settings):
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


# --- Access ----------------------------------------------------------------------------------


def test_without_a_token_configured_metrics_do_not_exist_in_production(client, settings, db):
    settings.DEBUG = False
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


def test_without_a_token_configured_metrics_are_open_on_a_developers_machine(client, settings, db):
    settings.DEBUG = True
    settings.METRICS_TOKEN = ""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert b"django_http_requests_before_middlewares_total" in response.content


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"HTTP_AUTHORIZATION": "Bearer wrong-token"},
        {"HTTP_AUTHORIZATION": f"Basic {TOKEN}"},
        {"HTTP_AUTHORIZATION": "Bearer"},
    ],
    ids=["no header", "wrong token", "wrong scheme", "empty token"],
)
def test_metrics_are_refused_without_the_token(client, token, settings, db, headers):
    settings.DEBUG = True  # a token, once set, is needed even on a developer's machine
    response = client.get("/metrics", **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"portal_" not in response.content


def test_a_token_in_the_query_string_is_refused(client, token, db):
    assert client.get(f"/metrics?token={TOKEN}").status_code == 401


def test_metrics_are_served_with_the_token(client, token, db):
    response = client.get("/metrics", **AUTH)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert "no-cache" in response["Cache-Control"]
    names = {family.name for family in text_string_to_metric_families(response.content.decode())}
    assert {
        "django_http_requests_before_middlewares",
        "django_http_responses_total_by_status_view_method",
        "django_db_query_duration_seconds",
        "portal_request_duration_seconds",
        "portal_db_queries_per_request",
        "portal_cache_reads",
        "portal_ready",
        "portal_health_check",
        "portal_health_check_latency_seconds",
        "portal_members",
        "portal_memory_used_ratio",
    } <= names
    assert client.post("/metrics", **AUTH).status_code == 405


def test_a_scrape_costs_no_query_while_the_business_numbers_are_cached(client, token, alice, django_assert_num_queries):
    client.get("/metrics", **AUTH)  # computes and caches the business numbers
    # The database probe runs on a connection of its own (another thread), not counted here.
    with django_assert_num_queries(0):
        assert client.get("/metrics", **AUTH).status_code == 200


def test_a_cold_scrape_costs_two_queries_for_the_business_numbers_and_three_for_stripe(
    client, token, alice, django_assert_num_queries
):
    with django_assert_num_queries(5):
        client.get("/metrics", **AUTH)


# --- Our metrics count what they say -----------------------------------------------------------


def test_cache_reads_are_counted_per_tier_as_hits_and_misses(db):
    calls = []

    @cached_read(tier=MEDIUM, namespace=MEMBER)
    def answer(member_id: int) -> int:
        calls.append(member_id)
        return 42

    hits, misses = (
        sample("portal_cache_reads_total", tier="medium", result="hit"),
        sample("portal_cache_reads_total", tier="medium", result="miss"),
    )
    answer(1)
    answer(1)
    answer(1)
    assert sample("portal_cache_reads_total", tier="medium", result="miss") - misses == 1
    assert sample("portal_cache_reads_total", tier="medium", result="hit") - hits == 2


def test_queries_per_request_are_observed_by_view(client, alice):
    client.force_login(alice)
    before_count = sample("portal_db_queries_per_request_count", view="dashboard")
    before_sum = sample("portal_db_queries_per_request_sum", view="dashboard")
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/dashboard/").status_code == 200
    assert sample("portal_db_queries_per_request_count", view="dashboard") - before_count == 1
    assert sample("portal_db_queries_per_request_sum", view="dashboard") - before_sum == len(queries)


def test_request_latency_is_labelled_by_member_tier(client, alice, db):
    anonymous = sample("portal_request_duration_seconds_count", member_tier="anonymous")
    free = sample("portal_request_duration_seconds_count", member_tier="free")
    pro = sample("portal_request_duration_seconds_count", member_tier="pro")
    client.get("/")
    alice.tier = Tier.PRO
    alice.save(update_fields=["tier"])
    client.force_login(alice)
    client.get("/dashboard/")
    assert sample("portal_request_duration_seconds_count", member_tier="anonymous") - anonymous == 1
    assert sample("portal_request_duration_seconds_count", member_tier="pro") - pro == 1
    assert sample("portal_request_duration_seconds_count", member_tier="free") == free


def test_an_api_token_request_is_labelled_with_the_tokens_member_tier(client, alice):
    plain = create_api_token(member=alice, name="script", scopes=[TokenScope.READ], expires_at=None)[1]
    before = sample("portal_request_duration_seconds_count", member_tier="free")
    assert client.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {plain}").status_code == 200
    assert sample("portal_request_duration_seconds_count", member_tier="free") - before == 1


def test_the_tier_label_never_loads_a_user_the_page_did_not_need(client, alice, settings):
    client.force_login(alice)
    client.get("/health/live")  # the member's snapshot is cached from here on (members/authentication.py)
    with CaptureQueriesContext(connection) as with_metrics:
        client.get("/health/live")
    settings.MIDDLEWARE = [
        name for name in settings.MIDDLEWARE if name != "monitoring.middleware.RequestMetricsMiddleware"
    ]
    with CaptureQueriesContext(connection) as without:
        client.get("/health/live")
    assert len(with_metrics) == len(without)


@pytest.mark.parametrize(
    ("headers", "path", "reason"),
    [
        ({}, "/api/v1/me", "missing"),
        ({"HTTP_AUTHORIZATION": "Bearer mpt_not-a-real-token"}, "/api/v1/me", "invalid_token"),
        ({}, "/api/v1/me?token=mpt_abc", "token_in_query"),
    ],
)
def test_token_authentication_failures_are_counted_by_reason(client, db, headers, path, reason):
    before = sample("portal_api_auth_failures_total", reason=reason)
    assert client.get(path, **headers).status_code == 401
    assert sample("portal_api_auth_failures_total", reason=reason) - before == 1


def test_rate_limit_refusals_are_counted_by_limit(client, settings, db):
    settings.API_RATE_LIMIT_PER_IP = 1
    before = sample("portal_rate_limited_requests_total", limit="ip")
    client.get("/api/v1/me")
    assert client.get("/api/v1/me").status_code == 429
    assert sample("portal_rate_limited_requests_total", limit="ip") - before == 1


def test_business_numbers_count_members_subscriptions_and_monthly_revenue(client, token, alice, bob, carol):
    basic = Plan.objects.create(code="m-basic", name="Basic", tier=Tier.BASIC, price_cents=900)
    yearly = Plan.objects.create(code="pro-year", name="Pro yearly", tier=Tier.PRO, price_cents=24000, interval="year")
    Subscription.objects.create(member=alice, plan=basic, status=SubscriptionStatus.ACTIVE)
    Subscription.objects.create(member=bob, plan=yearly, status=SubscriptionStatus.PAST_DUE)
    Subscription.objects.create(member=carol, plan=basic, status=SubscriptionStatus.COMPED)  # pays nothing
    carol.status = MemberStatus.SUSPENDED
    carol.save(update_fields=["status"])

    samples = scrape(client)

    assert samples[("portal_members", (("status", "active"), ("tier", "free")))] == 2
    assert samples[("portal_members", (("status", "suspended"), ("tier", "free")))] == 1
    assert samples[("portal_live_subscriptions", (("plan", "m-basic"), ("status", "active")))] == 1
    assert samples[("portal_live_subscriptions", (("plan", "m-basic"), ("status", "comped")))] == 1
    assert samples[("portal_live_subscriptions", (("plan", "pro-year"), ("status", "past_due")))] == 1
    assert samples[("portal_monthly_recurring_revenue", (("currency", "usd"),))] == pytest.approx(9 + 240 / 12)


def test_business_numbers_are_read_from_the_cache_between_scrapes(client, token, alice):
    scrape(client)
    business_numbers.refresh()  # as the next scrape a minute later would
    create = Plan.objects.create(code="m-basic", name="Basic", tier=Tier.BASIC, price_cents=900)
    Subscription.objects.create(member=alice, plan=create, status=SubscriptionStatus.ACTIVE)
    # Within the short tier's TTL a scrape shows the cached numbers, not a fresh query's.
    assert ("portal_live_subscriptions", (("plan", "m-basic"), ("status", "active"))) not in scrape(client)


def test_readiness_database_latency_and_memory_come_from_the_health_checks(client, token, db):
    samples = scrape(client)
    assert samples[("portal_ready", ())] == 1
    assert samples[("portal_health_check", (("check", "database"), ("state", "ok")))] == 1
    assert samples[("portal_health_check", (("check", "database"), ("state", "down")))] == 0
    assert samples[("portal_health_check", (("check", "cache"), ("state", "ok")))] == 1
    assert 0 <= samples[("portal_health_check_latency_seconds", (("check", "database"),))] < 3
    assert 0 < samples[("portal_memory_used_ratio", ())] < 1


def test_when_the_database_is_down_the_scrape_still_answers_and_says_not_ready(client, token, db, monkeypatch):
    def refuse(self) -> None:
        raise ServiceUnavailable("cannot query the database (OperationalError)")

    monkeypatch.setattr(checks.Database, "run", refuse)
    samples = scrape(client)
    assert samples[("portal_ready", ())] == 0
    assert samples[("portal_health_check", (("check", "database"), ("state", "down")))] == 1
    assert not any(name == "portal_members" for name, _ in samples)  # not waited for
    assert not any(name.startswith("portal_stripe") for name, _ in samples)


def test_a_redis_outage_leaves_the_portal_ready(client, token, db, monkeypatch):
    def refuse(self) -> None:
        raise ServiceUnavailable("Redis does not answer (ConnectionError)")

    monkeypatch.setattr(checks.Cache, "run", refuse)
    samples = scrape(client)
    assert samples[("portal_ready", ())] == 1
    assert samples[("portal_health_check", (("check", "cache"), ("state", "down")))] == 1


def test_each_response_is_counted_and_timed_by_view_status_and_method(client, db):
    labels = {"view": "api-health", "method": "GET"}
    timed = sample("django_http_requests_latency_seconds_by_view_method_count", **labels)
    answered = sample("django_http_responses_total_by_status_view_method_total", status="200", **labels)
    by_status = sample("django_http_responses_total_by_status_total", status="200")
    served = sample("django_http_requests_total_by_view_transport_method_total", transport="http", **labels)
    for _ in range(3):
        assert client.get("/api/health").status_code == 200
    assert sample("django_http_requests_latency_seconds_by_view_method_count", **labels) - timed == 3
    assert sample("django_http_responses_total_by_status_view_method_total", status="200", **labels) - answered == 3
    assert sample("django_http_responses_total_by_status_total", status="200") - by_status == 3
    assert sample("django_http_requests_total_by_view_transport_method_total", transport="http", **labels) - served == 3


def test_a_made_up_method_makes_no_series_of_its_own(client, db):
    labels = {"view": "api-health", "method": "<invalid method>"}
    before = sample("django_http_requests_latency_seconds_by_view_method_count", **labels)
    client.generic("BREW", "/api/health")
    assert sample("django_http_requests_latency_seconds_by_view_method_count", **labels) - before == 1
    assert (
        REGISTRY.get_sample_value(
            "django_http_requests_latency_seconds_by_view_method_count", {"view": "api-health", "method": "BREW"}
        )
        is None
    )
