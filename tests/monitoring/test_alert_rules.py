"""The alert rules (deploy/prometheus/alerts.yml) load, fire on the faults they name and not
otherwise (promtool's unit tests, alerts.test.yml), and each leads to its runbook section; the
Grafana dashboard is valid and draws from the metrics the portal exposes."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = PROMETHEUS / "alerts.test.yml"
RUNBOOK = ROOT / "docs" / "operations.md"
DASHBOARD = ROOT / "deploy" / "grafana" / "portal.json"


def alerts() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120, check=False)


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings: lower case, punctuation dropped, spaces to dashes."""
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.prometheus
def test_promtool_accepts_the_rules():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


@pytest.mark.prometheus
def test_promtools_unit_tests_of_every_rule_pass():
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.prometheus
def test_the_example_prometheus_config_is_valid(tmp_path: Path):
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    token = tmp_path / "token"
    token.write_text("secret")
    for job in config["scrape_configs"]:
        job["authorization"]["credentials_file"] = str(token)  # the real one lives on the Prometheus host
    config["rule_files"] = [str(RULES)]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested_both_firing_and_quiet():
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - firing == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown staying quiet"


def test_the_alerts_named_in_the_issue_are_all_there():
    names = {rule["alert"] for rule in alerts()}
    assert {
        "PortalHighLatency",  # p95 over 500 ms
        "PortalHighErrorRate",  # over 0.1%
        "PortalLowCacheHitRate",  # under 75%
        "PortalHighMemory",  # over 70%
        "PortalInstanceDown",
        "PortalDatabaseSlow",
        "PortalStripeWebhooksStale",
        "PortalNotReady",
    } <= names


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: rule["alert"])
def test_every_alert_says_how_bad_what_and_where_its_runbook_is(rule: dict[str, Any]):
    assert rule["labels"]["severity"] in {"page", "ticket"}
    assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
    page, _, anchor = rule["annotations"]["runbook_url"].partition("#")
    assert page == "docs/operations.md"
    assert anchor == rule["alert"].lower()
    assert anchor in github_anchors(RUNBOOK.read_text()), f"docs/operations.md has no section {rule['alert']}"


def test_the_runbook_covers_the_incident_template_and_the_review():
    anchors = github_anchors(RUNBOOK.read_text())
    assert {"incident-template", "post-incident-review", "metrics"} <= anchors


def test_the_grafana_dashboard_is_valid_and_uses_a_templated_datasource():
    dashboard = json.loads(DASHBOARD.read_text())
    assert any(variable["type"] == "datasource" for variable in dashboard["templating"]["list"])
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]


# Every series the dashboard and the alerts read; the test below checks that /metrics serves each.
EXPOSED = {
    "up",
    "django_http_requests_before_middlewares_total",
    "django_http_responses_total_by_status_total",
    "django_http_responses_total_by_status_view_method_total",
    "django_http_requests_latency_seconds_by_view_method_bucket",
    "django_http_requests_latency_seconds_by_view_method_count",
    "django_db_query_duration_seconds_bucket",
    "django_db_execute_total",
    "django_db_errors_total",
    "portal_request_duration_seconds_bucket",
    "portal_db_queries_per_request_bucket",
    "portal_cache_reads_total",
    "portal_api_auth_failures_total",
    "portal_rate_limited_requests_total",
    "portal_ready",
    "portal_health_check",
    "portal_health_check_latency_seconds",
    "portal_memory_used_ratio",
    "portal_members",
    "portal_live_subscriptions",
    "portal_monthly_recurring_revenue",
    "portal_stripe_configured",
    "portal_stripe_last_webhook_timestamp_seconds",
    "portal_stripe_webhook_failed_events",
    "portal_stripe_drifted_subscriptions",
    "portal_web_vitals_fcp_seconds_bucket",
    "portal_web_vitals_fcp_seconds_count",
    "portal_web_vitals_lcp_seconds_bucket",
    "portal_web_vitals_lcp_seconds_count",
    "portal_web_vitals_cls_bucket",
    "portal_web_vitals_cls_count",
    "portal_web_vitals_inp_seconds_bucket",
    "portal_web_vitals_ttfb_seconds_bucket",
    "portal_job_period_seconds",
    "portal_job_last_success_timestamp_seconds",
    "portal_task_queue_depth",
    "portal_task_runs_total",
    "portal_task_failures_total",
}
# Samples that appear only once there is something to say: Prometheus's own `up`, and the
# Stripe times and drift before the first webhook event or reconciliation.
# A job's last success appears after its first success. The task counters and the queue depth
# are exported by the Celery workers (their own scrape) and read from the broker at scrape time.
EXPOSED_LATER = {
    "up",
    "portal_stripe_last_webhook_timestamp_seconds",
    "portal_stripe_drifted_subscriptions",
    "portal_job_last_success_timestamp_seconds",
    "portal_task_queue_depth",
    "portal_task_runs_total",
    "portal_task_failures_total",
}


def test_the_portal_exposes_every_metric_the_dashboard_and_alerts_read(client, settings, db):
    settings.METRICS_TOKEN = "t"
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer t")
    families = {family.name for family in text_string_to_metric_families(response.content.decode())}
    for name in EXPOSED - EXPOSED_LATER:
        family = re.sub(r"(_total|_bucket|_count)$", "", name)
        assert family in families, name


def test_the_dashboard_and_the_alerts_only_use_metrics_the_portal_exposes():
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    expressions += [rule["expr"] for rule in alerts()]
    for expr in expressions:
        names = set(re.findall(r"\b((?:django|portal)_[a-z0-9_]+)", expr))
        assert names or re.search(r"\bup\{", expr), expr
        assert names <= EXPOSED, f"{expr}: {names - EXPOSED}"
