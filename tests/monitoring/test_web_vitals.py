"""Web Vitals from members' browsers: what member pages render for their script, what `/vitals/`
accepts and refuses, and what lands in the `portal_web_vitals_*` histograms (read through
`/metrics`, as Prometheus reads them). The real browser sending real beacons is in
tests/browser/test_web_vitals.py; the sums across gunicorn workers in test_gunicorn.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from members.models import Member, Tier
from monitoring.vitals import MAX_BODY_BYTES, MAX_ENTRIES, page_names
from tests.conftest import PASSWORD

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "metrics-token-for-tests"
FAMILIES = {
    "FCP": "portal_web_vitals_fcp_seconds",
    "LCP": "portal_web_vitals_lcp_seconds",
    "CLS": "portal_web_vitals_cls",
    "INP": "portal_web_vitals_inp_seconds",
    "TTFB": "portal_web_vitals_ttfb_seconds",
}
ORIGIN = "http://testserver"
GOOD = {"page": "dashboard", "tier": "free", "metrics": [{"name": "LCP", "value": 1234.5}]}


def post(client: Client, body: Any, *, content_type: str = "text/plain;charset=UTF-8", **extra: Any) -> Any:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.generic("POST", "/vitals/", data, content_type=content_type, **{"HTTP_ORIGIN": ORIGIN, **extra})


def scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def vitals_counts(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every web-vitals sample of the exposition, by name and labels."""
    return {key: value for key, value in scrape(client).items() if key[0].startswith("portal_web_vitals_")}


@pytest.fixture(autouse=True)
def _metrics_token(settings: Any) -> None:
    settings.METRICS_TOKEN = TOKEN
    settings.WEB_VITALS_RATE_LIMIT_PER_IP = 1000


def log_in(client: Client, member: Member) -> None:
    assert client.login(email=member.email, password=PASSWORD)


# --- What the pages render ---------------------------------------------------------------------


def script_tag(html: str) -> dict[str, str]:
    # static/js/vitals.js is written inline (portal/inline.py): the tag has its data, no src.
    found = re.search(r'<script( nonce="[^"]*" data-endpoint=[^>]*)>/\* Web Vitals of this page view', html)
    assert found, "no vitals.js script tag"
    return dict(re.findall(r'([\w-]+)="([^"]*)"', found.group(1)))


def test_a_member_page_renders_its_page_tier_rate_and_nonce_for_the_script(client: Client, alice: Member, settings):
    settings.WEB_VITALS_SAMPLE_RATE = 0.25
    log_in(client, alice)
    response = client.get("/dashboard/")
    tag = script_tag(response.content.decode())
    assert tag["data-page"] == "dashboard"
    assert tag["data-tier"] == "free"
    assert tag["data-sample-rate"] == "0.25"
    assert tag["data-endpoint"] == "/vitals/"
    assert tag["data-library"].endswith("web-vitals.iife.js")
    # The nonce on the tag is the one the policy allows, and the policy allows nothing inline.
    policy = response["Content-Security-Policy"]
    assert f"'nonce-{tag['nonce']}'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


@pytest.mark.parametrize(
    ("path", "page", "tier"),
    [
        ("/tokens/", "tokens", Tier.PRO),
        ("/activity/", "activity", Tier.BASIC),
        ("/profile/", "profile", Tier.FREE),
        ("/subscription/", "subscription", Tier.FREE),
        ("/accounts/email/", "account_email", Tier.FREE),
    ],
)
def test_each_page_names_itself_by_its_url_name_and_the_members_tier(
    client: Client, alice: Member, path: str, page: str, tier: str
):
    Member.objects.filter(pk=alice.pk).update(tier=tier)
    log_in(client, alice)
    tag = script_tag(client.get(path).content.decode())
    assert (tag["data-page"], tag["data-tier"]) == (page, tier)


def test_a_visitor_is_anonymous(client: Client, db: None):
    assert script_tag(client.get("/").content.decode())["data-tier"] == "anonymous"
    tag = script_tag(client.get("/accounts/login/").content.decode())
    assert (tag["data-page"], tag["data-tier"]) == ("account_login", "anonymous")


def test_a_sample_rate_of_zero_leaves_the_script_off(client: Client, alice: Member, settings):
    settings.WEB_VITALS_SAMPLE_RATE = 0.0
    log_in(client, alice)
    html = client.get("/dashboard/").content.decode()
    assert "<script" not in html


@pytest.mark.parametrize(
    "path",
    ["/dashboard/", "/tokens/", "/activity/", "/profile/", "/subscription/", "/accounts/email/", "/accounts/2fa/"],
)
def test_the_pages_carry_no_inline_script_or_style_but_the_two_the_policy_allows(
    client: Client, alice: Member, path: str
):
    # What the strict policy relies on: every script has a src (or is a JSON data block, which is
    # never run) but the reporter, which carries the nonce; one style element (the stylesheet,
    # allowed by its hash: tests/portal/test_inline.py), no style attribute and no event handler
    # attribute. alice's address is unverified, so /accounts/email/ shows allauth's pending-change
    # form (templates/account/).
    log_in(client, alice)
    response = client.get(path)
    html = response.content.decode()
    inline = re.findall(r'<script(?![^>]*\b(?:src=|type="application/json"))([^>]*)>', html)
    assert len(inline) == 1 and f'nonce="{script_tag(html)["nonce"]}"' in inline[0]
    assert len(re.findall(r"<style", html)) == 1
    assert not re.search(r"\sstyle=|\son\w+=", html)
    # And every image declares its size, so nothing shifts as it arrives.
    assert all(" width=" in img and " height=" in img for img in re.findall(r"<img[^>]*>", html))


def test_rendering_the_script_tag_costs_no_query(client: Client, db: None, django_assert_num_queries):
    # Member pages keep the counts their own tests pin; here, a visitor's login page stays at none.
    with django_assert_num_queries(0):
        assert "data-tier" in client.get("/accounts/login/").content.decode()


# --- What the endpoint accepts -----------------------------------------------------------------


def test_a_valid_beacon_lands_in_the_histograms_with_its_page_and_tier(client: Client, db: None):
    before = vitals_counts(client)
    beacon = {
        "page": "dashboard",
        "tier": "pro",
        "metrics": [
            {"name": "FCP", "value": 900},
            {"name": "LCP", "value": 1800},
            {"name": "CLS", "value": 0.08},
            {"name": "INP", "value": 120},
            {"name": "TTFB", "value": 150},
        ],
    }
    response = post(client, beacon)
    assert response.status_code == 204
    after = vitals_counts(client)
    labels = (("member_tier", "pro"), ("page", "dashboard"))

    def grew(name: str, suffix: str, **extra: str) -> float:
        key = (f"{name}{suffix}", tuple(sorted((*labels, *extra.items()))))
        return after.get(key, 0.0) - before.get(key, 0.0)

    for family in FAMILIES.values():
        assert grew(family, "_count") == 1, family
    # Milliseconds arrive, seconds are recorded (CLS has no unit), each in the bucket it belongs to.
    assert grew("portal_web_vitals_lcp_seconds", "_sum") == pytest.approx(1.8)
    assert grew("portal_web_vitals_lcp_seconds", "_bucket", le="1.5") == 0
    assert grew("portal_web_vitals_lcp_seconds", "_bucket", le="2.0") == 1
    assert grew("portal_web_vitals_fcp_seconds", "_bucket", le="1.0") == 1
    assert grew("portal_web_vitals_cls", "_sum") == pytest.approx(0.08)
    assert grew("portal_web_vitals_cls", "_bucket", le="0.075") == 0
    assert grew("portal_web_vitals_cls", "_bucket", le="0.1") == 1
    assert grew("portal_web_vitals_inp_seconds", "_bucket", le="0.15") == 1
    assert grew("portal_web_vitals_ttfb_seconds", "_sum") == pytest.approx(0.15)
    # Nothing under any other page or tier.
    changed = [dict(key[1]) for key in after if after[key] != before.get(key, 0.0)]
    assert changed and all((c["page"], c["member_tier"]) == ("dashboard", "pro") for c in changed)


def test_a_beacon_as_json_and_one_with_every_metric_twice_are_accepted(client: Client, db: None):
    assert post(client, GOOD, content_type="application/json").status_code == 204
    twice = {**GOOD, "metrics": [{"name": "CLS", "value": 0}, {"name": "CLS", "value": 0.01}] * 5}
    assert post(client, twice).status_code == 204


def test_the_beacon_makes_no_query_for_a_visitor_and_only_the_sessions_one_for_a_member(
    client: Client, alice: Member, django_assert_num_queries
):
    with django_assert_num_queries(0):
        assert post(client, {**GOOD, "tier": "anonymous"}).status_code == 204
    log_in(client, alice)
    # SessionTimeoutMiddleware loads the member on every request with a session; the view adds none.
    with django_assert_num_queries(1):
        assert post(client, GOOD).status_code == 204


# --- What it refuses ---------------------------------------------------------------------------


def with_metric(**metric: Any) -> dict[str, Any]:
    return {**GOOD, "metrics": [{"name": "LCP", "value": 1000}, metric]}


REFUSALS = [
    pytest.param("text", b"not json at all", 400, "invalid_json", id="not-json"),
    pytest.param("text", b"\xff\xfe", 400, "invalid_json", id="not-utf8"),
    pytest.param("json", [GOOD], 400, "invalid_beacon", id="a-list"),
    pytest.param("json", {"page": "dashboard", "tier": "free"}, 400, "invalid_beacon", id="no-metrics"),
    pytest.param("json", {**GOOD, "metrics": []}, 400, "invalid_beacon", id="empty"),
    pytest.param(
        "json", {**GOOD, "metrics": [{"name": "CLS", "value": 0}] * (MAX_ENTRIES + 1)}, 400, "invalid_beacon", id="many"
    ),
    pytest.param("json", {**GOOD, "metrics": ["LCP"]}, 400, "invalid_beacon", id="entry-not-an-object"),
    pytest.param("json", with_metric(name="FID", value=10), 400, "unknown_metric", id="unknown-metric"),
    pytest.param("json", with_metric(name="lcp", value=10), 400, "unknown_metric", id="lower-case-name"),
    pytest.param("json", with_metric(value=10), 400, "unknown_metric", id="no-name"),
    pytest.param("json", with_metric(name="LCP", value=-1), 400, "invalid_value", id="negative"),
    pytest.param("text", '{"page": "dashboard", "tier": "free", "metrics": [{"name": "LCP", "value": NaN}]}', 400,
                 "invalid_value", id="nan"),
    pytest.param("text", '{"page": "dashboard", "tier": "free", "metrics": [{"name": "LCP", "value": Infinity}]}',
                 400, "invalid_value", id="infinity"),
    pytest.param("json", with_metric(name="LCP", value=120_001), 400, "invalid_value", id="lcp-over-2-minutes"),
    pytest.param("json", with_metric(name="INP", value=60_001), 400, "invalid_value", id="inp-over-a-minute"),
    pytest.param("json", with_metric(name="CLS", value=11), 400, "invalid_value", id="cls-over-10"),
    pytest.param("json", with_metric(name="LCP", value="1200"), 400, "invalid_value", id="a-string"),
    pytest.param("json", with_metric(name="LCP", value=True), 400, "invalid_value", id="a-boolean"),
    pytest.param("json", with_metric(name="LCP"), 400, "invalid_value", id="no-value"),
    pytest.param("json", {**GOOD, "page": "/dashboard/?utm=x"}, 400, "unknown_page", id="a-raw-url"),
    pytest.param("json", {**GOOD, "page": "admin:index"}, 400, "unknown_page", id="an-admin-page"),
    pytest.param("json", {**GOOD, "page": None}, 400, "unknown_page", id="no-page"),
    pytest.param("json", {**GOOD, "tier": "platinum"}, 400, "unknown_tier", id="unknown-tier"),
    pytest.param("json", {**GOOD, "tier": 3}, 400, "unknown_tier", id="tier-not-a-string"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "body", "status", "code"), REFUSALS)
def test_a_bad_beacon_is_refused_with_a_stable_code_and_records_nothing(
    client: Client, db: None, kind: str, body: Any, status: int, code: str
):
    before = vitals_counts(client)
    response = post(client, body)
    assert response.status_code == status
    assert response.json()["code"] == code
    assert response.json()["message"]
    assert vitals_counts(client) == before


def test_a_body_over_the_limit_is_refused_unread(client: Client, db: None):
    before = vitals_counts(client)
    padded = json.dumps({**GOOD, "padding": "x" * MAX_BODY_BYTES})
    response = post(client, padded)
    assert (response.status_code, response.json()["code"]) == (413, "body_too_large")
    assert vitals_counts(client) == before


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_are_refused(client: Client, db: None, method: str):
    response = client.generic(method, "/vitals/", json.dumps(GOOD), HTTP_ORIGIN=ORIGIN)
    assert (response.status_code, response.json()["code"]) == (405, "method_not_allowed")
    assert response["Allow"] == "POST"


def test_a_form_post_is_refused(client: Client, db: None):
    response = client.post("/vitals/", {"page": "dashboard"}, HTTP_ORIGIN=ORIGIN)
    assert (response.status_code, response.json()["code"]) == (415, "unsupported_media_type")


@pytest.mark.parametrize("origin", [None, "null", "https://evil.example", "http://testserver.evil.example"])
def test_a_beacon_from_another_site_or_none_is_refused(client: Client, db: None, origin: str | None):
    before = vitals_counts(client)
    extra: dict[str, Any] = {} if origin is None else {"HTTP_ORIGIN": origin}
    response = client.generic("POST", "/vitals/", json.dumps(GOOD), content_type="text/plain", **extra)
    assert (response.status_code, response.json()["code"]) == (403, "cross_origin")
    assert vitals_counts(client) == before


def test_the_https_page_behind_the_proxy_is_our_own(client: Client, db: None):
    assert post(client, GOOD, HTTP_ORIGIN="https://testserver").status_code == 204


def test_a_flood_from_one_address_is_refused_429_while_others_still_report(client: Client, db: None, settings):
    settings.WEB_VITALS_RATE_LIMIT_PER_IP = 3
    before = scrape(client)
    flooder = [post(client, GOOD, REMOTE_ADDR="203.0.113.9") for _ in range(5)]
    assert [response.status_code for response in flooder] == [204, 204, 204, 429, 429]
    refused = flooder[-1]
    assert refused.json()["code"] == "rate_limited"
    assert int(refused["Retry-After"]) >= 1
    assert post(client, GOOD, REMOTE_ADDR="203.0.113.10").status_code == 204
    after = scrape(client)
    key = ("portal_web_vitals_lcp_seconds_count", (("member_tier", "free"), ("page", "dashboard")))
    assert after[key] - before.get(key, 0.0) == 4  # three of the flood, one of the other address
    limited = ("portal_rate_limited_requests_total", (("limit", "vitals"),))
    assert after[limited] - before.get(limited, 0.0) == 2


# --- Bounds of the labels ------------------------------------------------------------------------


def test_the_pages_a_beacon_may_name_are_the_portals_own_pages_only():
    names = page_names()
    assert {"landing", "dashboard", "tokens", "activity", "account_login"} <= names
    assert not [name for name in names if ":" in name]  # no admin or API pages
    assert len(names) < 80  # bounded by the URLconf


def test_the_vendored_library_is_the_version_package_json_pins():
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["web-vitals"]
    locked = json.loads((ROOT / "package-lock.json").read_text())["packages"]["node_modules/web-vitals"]["version"]
    vendored = (ROOT / "static" / "js" / "vendor" / "web-vitals.iife.js").read_text()
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), "pin an exact version"
    assert pinned == locked
    assert vendored.startswith(f"/*! web-vitals {pinned} ")
    assert "Apache License" in vendored.split("*/", 1)[0]
    assert "sourceMappingURL" not in vendored
