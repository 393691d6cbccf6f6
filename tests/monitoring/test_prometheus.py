"""A real Prometheus (Debian's package) scrapes the portal under gunicorn with the example
configuration's job, the bearer token and the alert rules: the target reports up, the portal's
numbers arrive, and every rule loads and evaluates."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.monitoring.servers import ROOT, TOKEN, Portal, free_port

pytestmark = pytest.mark.prometheus

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as response:  # noqa: S310
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def wait_for(self, what: str, found: Any, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = found()
            except OSError:
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"Prometheus never showed {what}")
            time.sleep(0.5)

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=expr)["result"]
        return result


@pytest.fixture(scope="module")
def prometheus(portal: Portal, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """Prometheus on a free loopback port, configured from deploy/prometheus/prometheus.yml with
    the target and token of the portal under test, and a job without the token beside it."""
    tmp_path = tmp_path_factory.mktemp("prometheus")
    token = tmp_path / "token"
    token.write_text(TOKEN)
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(RULES)]
    (job,) = config["scrape_configs"]
    job["authorization"]["credentials_file"] = str(token)
    job["static_configs"] = [{"targets": [f"127.0.0.1:{portal.port}"]}]
    no_token = {key: value for key, value in job.items() if key != "authorization"}
    config["scrape_configs"].append({**no_token, "job_name": "portal-without-token"})
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))

    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = Prometheus(f"http://127.0.0.1:{port}")
    try:
        server.wait_for("its API", lambda: process.poll() is None and server.api("status/buildinfo"), timeout=30)
        yield server
    except AssertionError:
        raise AssertionError(log.read_text()) from None
    finally:
        process.terminate()
        process.wait(timeout=30)


def targets(prometheus: Prometheus, job: str) -> list[dict[str, Any]]:
    return [target for target in prometheus.api("targets")["activeTargets"] if target["labels"]["job"] == job]


def test_prometheus_scrapes_the_portal_and_its_target_is_up(prometheus: Prometheus, portal: Portal):
    (target,) = prometheus.wait_for(
        "the portal target up", lambda: [t for t in targets(prometheus, "portal") if t["health"] == "up"]
    )
    assert target["scrapeUrl"] == f"http://127.0.0.1:{portal.port}/metrics"
    assert target["lastError"] == ""
    (up,) = prometheus.wait_for("up == 1", lambda: prometheus.query('up{job="portal"} == 1'))
    assert up["value"][1] == "1"


def test_the_portals_own_numbers_arrive(prometheus: Prometheus):
    (ready,) = prometheus.wait_for("portal_ready", lambda: prometheus.query('portal_ready{job="portal"}'))
    assert ready["value"][1] == "1"
    assert prometheus.wait_for(
        "the request counter",
        lambda: prometheus.query('django_http_requests_before_middlewares_total{job="portal"} > 0'),
    )


def test_a_scrape_without_the_token_is_refused(prometheus: Prometheus):
    # Waited for by its error: on a busy machine a scrape can also time out (1 s) now and then.
    (target,) = prometheus.wait_for(
        "the job without a token refused",
        lambda: [t for t in targets(prometheus, "portal-without-token") if "401" in t["lastError"]],
    )
    assert target["health"] == "down"


def test_every_alert_rule_loads_and_evaluates(prometheus: Prometheus):
    expected = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}

    def evaluated() -> list[dict[str, Any]]:
        rules = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
        return rules if rules and all(rule.get("lastEvaluation", "").startswith("20") for rule in rules) else []

    rules = prometheus.wait_for("every rule evaluated", evaluated)
    assert {rule["name"] for rule in rules} == expected
    assert all(rule["type"] == "alerting" for rule in rules)
    assert [rule["name"] for rule in rules if rule["health"] != "ok"] == []
    # A healthy portal: nothing fires, apart from what the example's target list cannot know.
    firing = [rule["name"] for rule in rules if rule["state"] == "firing"]
    assert firing == []
