"""Under gunicorn with two workers, the counters add up: every request is counted once, by
whichever worker served it, and what a dead worker counted is still in the sum."""

from __future__ import annotations

import http.client
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import types
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from unittest.mock import patch

import pytest

from tests.monitoring.servers import NOT_INHERITED, ROOT, TOKEN, Portal, start_portal

# A cheap path that Django serves (liveness probes are answered before Django: portal/wsgi.py).
API_HEALTH = (("method", "GET"), ("status", "200"), ("view", "api-health"))


def served(portal: Portal) -> float:
    return portal.scrape().get(("django_http_responses_total_by_status_view_method_total", API_HEALTH), 0.0)


def send(portal: Portal, requests: int) -> None:
    # Several at once, so that both workers serve some (a sync worker serves one at a time).
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: portal.get("/api/health")[0], range(requests)))
    assert statuses == [200] * requests


def test_the_metrics_directory_is_emptied_when_the_server_starts(portal: Portal):
    assert not (portal.multiproc_dir / "counter_999999.db").exists()


def test_metrics_are_refused_without_the_token(portal: Portal):
    assert portal.get("/metrics", via_proxy=False)[0] == 401
    assert portal.get("/metrics", token="not-the-token", via_proxy=False)[0] == 401


def test_metrics_and_probes_are_served_over_plain_http_where_pages_redirect_to_https(portal: Portal):
    # Prometheus scrapes, and the orchestrator probes, each instance directly; members' pages
    # still go to https.
    assert portal.get("/metrics", token=TOKEN, via_proxy=False)[0] == 200
    statuses = {}
    for path in ("/health/live", "/health/ready", "/dashboard/"):
        connection = http.client.HTTPConnection("127.0.0.1", portal.port, timeout=10)
        connection.request("GET", path)
        response = connection.getresponse()
        statuses[path] = (response.status, response.headers.get("Location", "")[:8])
        connection.close()
    assert statuses == {"/health/live": (200, ""), "/health/ready": (200, ""), "/dashboard/": (301, "https://")}


SECURITY_HEADERS = (
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "Referrer-Policy",
    "X-Frame-Options",
    "Cross-Origin-Opener-Policy",
    "Permissions-Policy",
)


def _headers(portal: Portal, path: str, *, via_proxy: bool) -> dict[str, str | None]:
    connection = http.client.HTTPConnection("127.0.0.1", portal.port, timeout=10)
    connection.request("GET", path, headers={"X-Forwarded-Proto": "https"} if via_proxy else {})
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status == 200, path
    return {name: response.headers.get(name) for name in (*SECURITY_HEADERS, "Content-Security-Policy")}


def test_liveness_probes_carry_the_security_headers_of_every_other_response(portal: Portal):
    # /health/live is answered before Django (portal/wsgi.py); /health/ready goes through it.
    for via_proxy in (True, False):
        live = _headers(portal, "/health/live", via_proxy=via_proxy)
        page = _headers(portal, "/health/ready", via_proxy=via_proxy)
        assert {name: live[name] for name in SECURITY_HEADERS} == {name: page[name] for name in SECURITY_HEADERS}
        assert live["X-Content-Type-Options"] == "nosniff"
        assert live["X-Frame-Options"] == "DENY"
        assert "camera=()" in (live["Permissions-Policy"] or "")
        assert live["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
        # HSTS as Django sends it: on requests that came over TLS (the proxy says so), with DEBUG off.
        expected_hsts = "max-age=31536000; includeSubDomains; preload" if via_proxy else None
        assert live["Strict-Transport-Security"] == expected_hsts


def test_the_access_log_leaves_out_reset_and_confirmation_keys(portal: Portal):
    portal.get("/accounts/confirm-email/MTE:1uXyZk:access-log-confirm-key/")
    portal.get("/accounts/password/reset/key/4-access-log-reset-key/")

    # The access log's lines (Django's own error log, without collected static files here, is not
    # the subject).
    text = portal.log_once(r'"GET /accounts/(confirm-email|password/reset/key)/.* pid=<', count=2)
    log = "\n".join(line for line in text.splitlines() if " pid=<" in line)
    assert '"GET /accounts/confirm-email/[redacted]/ HTTP/1.1"' in log
    assert '"GET /accounts/password/reset/key/[redacted]/ HTTP/1.1"' in log
    assert "access-log-confirm-key" not in log
    assert "access-log-reset-key" not in log


def test_the_request_counter_equals_the_requests_sent_across_two_workers(portal: Portal):
    before = portal.scrape()
    send(portal, 60)
    after = portal.scrape()

    assert (
        after[("django_http_responses_total_by_status_view_method_total", API_HEALTH)]
        - before.get(("django_http_responses_total_by_status_view_method_total", API_HEALTH), 0.0)
        == 60
    )
    # Every request, the second scrape included (it is counted before it is answered).
    total = ("django_http_requests_before_middlewares_total", ())
    assert after[total] - before[total] == 60 + 1
    # Both workers served some: the access log names the worker of each request.
    pids = set(
        re.findall(pattern := r'"GET /api/health HTTP/1.1" 200 .* pid=<(\d+)>', portal.log_once(pattern, count=60))
    )
    assert len(pids) == 2, pids


def beacon(portal: Portal, body: bytes) -> int:
    """A Web Vitals beacon as a member's browser sends it, through the TLS proxy."""
    request = urllib.request.Request(portal.url + "/vitals/", data=body, method="POST")  # noqa: S310 (loopback)
    request.add_header("Content-Type", "text/plain;charset=UTF-8")
    request.add_header("Origin", f"https://127.0.0.1:{portal.port}")
    request.add_header("X-Forwarded-Proto", "https")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
        return int(response.status)


def test_web_vitals_histograms_add_up_across_the_workers(portal: Portal):
    # Multiprocess mode: each worker observes into its own files, the scrape sums them.
    labels = (("member_tier", "basic"), ("page", "tokens"))
    count, total = ("portal_web_vitals_lcp_seconds_count", labels), ("portal_web_vitals_lcp_seconds_sum", labels)
    before = portal.scrape()
    body = b'{"page": "tokens", "tier": "basic", "metrics": [{"name": "LCP", "value": 500}]}'
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: beacon(portal, body), range(40)))
    assert statuses == [204] * 40
    after = portal.scrape()
    assert after[count] - before.get(count, 0.0) == 40
    assert after[total] - before.get(total, 0.0) == pytest.approx(20.0)
    pids = set(
        re.findall(pattern := r'"POST /vitals/ HTTP/1.1" 204 .* pid=<(\d+)>', portal.log_once(pattern, count=40))
    )
    assert len(pids) == 2, pids


def test_gauges_read_at_scrape_time_are_not_multiplied_by_the_workers(portal: Portal):
    status, body = portal.get("/metrics", token=TOKEN, via_proxy=False)
    assert status == 200
    lines = body.decode().splitlines()
    # One sample each, from the process that answered, not one per worker (nor a `pid` label).
    assert [line for line in lines if line.startswith("portal_ready")] == ["portal_ready 1.0"]
    assert len([line for line in lines if line.startswith('portal_health_check{check="database",state="ok"}')]) == 1
    assert not [line for line in lines if 'pid="' in line]


def test_what_a_dead_worker_counted_stays_in_the_sum(portal: Portal):
    before = served(portal)
    send(portal, 20)
    victim = min(portal.worker_pids())
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # gunicorn replaces it
        pids = portal.worker_pids()
        if victim not in pids and len(pids) == 2:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("gunicorn did not replace the killed worker")
    time.sleep(1)  # the new worker loads the app
    send(portal, 10)
    assert served(portal) - before == 30


def _gunicorn_conf() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("gunicorn_conf", ROOT / "deploy" / "gunicorn.conf.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with patch.dict(os.environ):  # loading it sets PROMETHEUS_MULTIPROC_DIR: keep that out of this process
        spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("200000 100000\n", 2),  # --cpus=2
        ("150000 100000\n", 1),  # 1.5 CPUs: rounded down
        ("50000 100000\n", 1),  # half a CPU: at least one
    ],
)
def test_workers_are_counted_from_a_containers_cpu_limit(tmp_path, cpu_max, expected):
    limit = tmp_path / "cpu.max"
    limit.write_text(cpu_max)
    assert _gunicorn_conf()._cpus(limit) == expected


def test_without_a_cpu_limit_workers_are_counted_from_the_cpus_it_may_use(tmp_path):
    unlimited = tmp_path / "cpu.max"
    unlimited.write_text("max 100000\n")
    conf = _gunicorn_conf()
    assert conf._cpus(unlimited) == conf._cpus(tmp_path / "missing") == len(os.sched_getaffinity(0))


def test_the_config_checks_out_on_a_fresh_checkout_without_var(tmp_path):
    # A fresh clone has no var/ (nor var/prometheus, where the config points the metric files).
    # The project's files, as git tracks them; CI's embedded run works in a plain copy of them
    # (no .git), so there the tree is copied without what a run leaves behind.
    checkout = tmp_path / "checkout"
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False)
    if listed.returncode == 0:
        for name in listed.stdout.decode().split("\0"):
            if name and (ROOT / name).is_file():
                (checkout / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, checkout / name)
    else:
        left_by_runs = ("var", ".venv", "node_modules", "test-artifacts", "__pycache__", ".*_cache", ".hypothesis")
        shutil.copytree(ROOT, checkout, ignore=shutil.ignore_patterns(*left_by_runs), symlinks=True)
    assert not (checkout / "var").exists()
    env = {name: value for name, value in os.environ.items() if name not in NOT_INHERITED}

    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--check-config", "-c", "deploy/gunicorn.conf.py", "portal.wsgi"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert (checkout / "var" / "prometheus").is_dir()


@pytest.fixture
def one_thread(tmp_path, migrated_sqlite) -> Iterator[Portal]:
    """The portal under gunicorn with one worker of one thread: a second request waits for the first."""
    database = tmp_path / "db.sqlite3"
    shutil.copy(migrated_sqlite, database)
    server = start_portal(tmp_path, database, workers=1, GUNICORN_THREADS="1")
    yield server
    server.stop()


def _slower_than(scrape: dict[tuple[str, tuple[tuple[str, str], ...]], float], bucket: str) -> float:
    """Anonymous requests observed above the histogram bucket `bucket` (its `le`)."""
    labels = (("member_tier", "anonymous"),)
    count = scrape.get(("portal_request_duration_seconds_count", labels), 0.0)
    return count - scrape.get(("portal_request_duration_seconds_bucket", (("le", bucket), *labels)), 0.0)


def test_the_latency_histogram_counts_the_wait_for_a_free_worker_thread(one_thread: Portal):
    one_thread.scrape()  # the first scrape of a fresh worker is slow, and the next one counts it
    before = one_thread.scrape()
    # A beacon whose body arrives slowly holds the only thread for three seconds...
    body = b'{"page": "tokens", "tier": "basic", "metrics": [{"name": "LCP", "value": 500}]}'
    slow = socket.create_connection(("127.0.0.1", one_thread.port), timeout=20)
    slow.sendall(
        b"POST /vitals/ HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{one_thread.port}\r\nOrigin: https://127.0.0.1:{one_thread.port}\r\n".encode()
        + b"X-Forwarded-Proto: https\r\nContent-Type: text/plain;charset=UTF-8\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body[:10]
    )
    time.sleep(0.3)  # the thread has it, and waits for the rest of the body
    # ...while a quick request arrives behind it and waits for that thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        quick = pool.submit(one_thread.get, "/api/health")
        time.sleep(3)
        slow.sendall(body[10:])
        answer = slow.recv(1024)
        slow.close()
        assert answer.startswith(b"HTTP/1.1 204"), answer
        assert quick.result()[0] == 200
    after = one_thread.scrape()

    # Both took over 2.5 s as their clients saw it, and both are counted so: the quick one was
    # served in milliseconds once the thread was free, but waited three seconds for it.
    assert _slower_than(after, "2.5") - _slower_than(before, "2.5") == 2
