"""Two portal instances, as a load balancer would have them: separate gunicorn servers on their
own loopback ports, sharing one PostgreSQL database and one Redis. Whatever one instance does
must hold on the other, because a member's next request may land on either."""

from __future__ import annotations

import gzip
import json
import os
import re
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
import redis

from tests.monitoring.servers import ROOT, Portal, Visitor, manage, migrate, scratch_database, start_portal

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

EMAIL = "ada@example.com"
PASSWORD = "a-long-password-for-two-instances"
TOKEN_QUOTA = 6  # API requests a minute per token: low, so the shared count shows quickly

SETUP = f"""
from allauth.account.models import EmailAddress
from members.models import TokenScope
from members.services import create_api_token, create_member
member = create_member(email={EMAIL!r}, password={PASSWORD!r}, display_name="Ada")
EmailAddress.objects.create(user=member, email=member.email, primary=True, verified=True)
_, plain = create_api_token(member=member, name="instances", scopes=[TokenScope.READ], expires_at=None)
print(plain)
"""


@dataclass
class Pair:
    a: Portal
    b: Portal
    api_token: str


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    redis_url = os.environ["REDIS_URL"]
    name = urlsplit(os.environ["DATABASE_URL"]).path.lstrip("/") + "_instances"
    with scratch_database(name) as database:
        migrate(database)
        manage(database, "collectstatic", "--no-input", "-v", "0")  # as `make serve` does
        token = manage(database, "shell", "-c", SETUP).split()[-1]  # after the shell's own notes
        redis.Redis.from_url(redis_url).flushdb()  # no counts or sessions from earlier tests
        extra = {"REDIS_URL": redis_url, "API_RATE_LIMIT_PER_TOKEN": str(TOKEN_QUOTA)}
        root = tmp_path_factory.mktemp("instances")
        a = start_portal(root / "a", database, workers=1, **extra)
        try:
            b = start_portal(root / "b", database, workers=1, **extra)
            try:
                yield Pair(a, b, token)
            finally:
                b.stop()
        finally:
            a.stop()


def log_in(visitor: Visitor, portal: Portal) -> None:
    visitor.get(portal, "/accounts/login/")  # the CSRF cookie
    status, headers, _ = visitor.post(portal, "/accounts/login/", {"login": EMAIL, "password": PASSWORD})
    assert (status, headers.get("Location")) == (302, "/dashboard/")


def api_get(portal: Portal, path: str, token: str) -> tuple[int, bytes]:
    return portal.get(path, token=token)


def test_a_login_on_one_instance_is_valid_on_the_other_and_so_is_a_logout(pair: Pair) -> None:
    visitor = Visitor()
    log_in(visitor, pair.a)
    status, _, body = visitor.get(pair.b, "/dashboard/")
    assert status == 200
    assert "Welcome, Ada" in body

    status, headers, _ = visitor.post(pair.b, "/accounts/logout/", {})
    assert status == 302
    status, headers, _ = visitor.get(pair.a, "/dashboard/")
    assert (status, headers["Location"]) == (302, "/accounts/login/?next=/dashboard/")


def test_a_write_through_one_instance_is_read_fresh_through_the_other(pair: Pair) -> None:
    visitor = Visitor()
    log_in(visitor, pair.a)
    # Instance B reads the profile and caches it (in the shared Redis), on both its page and the API.
    assert "Welcome, Ada" in visitor.get(pair.b, "/dashboard/")[2]
    status, body = api_get(pair.b, "/api/v1/me", pair.api_token)
    assert status == 200
    assert json.loads(body)["display_name"] == "Ada"

    status, _, _ = visitor.post(
        pair.a, "/profile/", {"display_name": "Ada L.", "bio": "", "time_zone": "UTC", "email_updates": "on"}
    )
    assert status == 302

    # A's write invalidated what B had cached: B's next reads are fresh.
    assert "Welcome, Ada L." in visitor.get(pair.b, "/dashboard/")[2]
    status, body = api_get(pair.b, "/api/v1/me", pair.api_token)
    assert json.loads(body)["display_name"] == "Ada L."


def test_api_rate_limits_count_requests_to_both_instances(pair: Pair) -> None:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    for key in client.scan_iter(match="*:rl:*"):  # a fresh count
        client.delete(key)
    answers: dict[str, list[int]] = {"a": [], "b": []}
    for index in range(2 * TOKEN_QUOTA - 2):
        name, portal = ("a", pair.a) if index % 2 == 0 else ("b", pair.b)
        answers[name].append(api_get(portal, "/api/v1/me", pair.api_token)[0])

    allowed = answers["a"].count(200) + answers["b"].count(200)
    # Counted per instance, each would allow all of its 5 requests. Counted together, the quota
    # holds across both (one more may pass if a minute turns over mid-test: the window slides).
    assert TOKEN_QUOTA <= allowed <= TOKEN_QUOTA + 1, answers
    assert 429 in answers["a"] and 429 in answers["b"], answers
    assert set(answers["a"] + answers["b"]) == {200, 429}


def test_each_instance_serves_its_own_metrics(pair: Pair) -> None:
    before_a, before_b = _ready_count(pair.a), _ready_count(pair.b)
    for _ in range(3):
        assert pair.a.get("/health/ready", via_proxy=False)[0] == 200
    assert pair.b.get("/health/ready", via_proxy=False)[0] == 200

    # Each instance counts the requests it served, and only those: Prometheus scrapes each one
    # and adds them up.
    assert _ready_count(pair.a) - before_a == 3
    assert _ready_count(pair.b) - before_b == 1
    # Both see the shared database and Redis.
    for portal in (pair.a, pair.b):
        samples = portal.scrape()
        assert samples[("portal_ready", ())] == 1
        for check in ("database", "cache"):
            assert samples[("portal_health_check", (("check", check), ("state", "ok")))] == 1


def _ready_count(portal: Portal) -> float:
    samples = portal.scrape()
    return sum(
        value
        for (name, labels), value in samples.items()
        if name == "django_http_requests_total_by_view_transport_method_total"
        and dict(labels).get("view") == "health-ready"
    )


def test_static_files_have_hashed_names_and_are_cached_for_good_by_either_instance(pair: Pair) -> None:
    # The stylesheet is inlined (portal/inline.py); the page names the Web Vitals library it loads.
    _, _, page = Visitor().get(pair.a, "/accounts/login/")
    match = re.search(r'data-library="(/static/js/vendor/web-vitals\.iife\.[0-9a-f]{12}\.js)"', page)
    assert match, "the library's name carries its content hash"
    for portal in (pair.a, pair.b):
        status, headers, _ = Visitor().get(portal, match.group(1))
        assert status == 200
        assert headers["Cache-Control"] == "max-age=315360000, public, immutable"
    # A browser that accepts gzip gets the compressed copy made at collectstatic.
    headers = {"Accept-Encoding": "gzip", "X-Forwarded-Proto": "https"}
    request = urllib.request.Request(pair.b.url + match.group(1), headers=headers)  # noqa: S310 (loopback)
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
        assert response.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(response.read()) == (ROOT / "static/js/vendor/web-vitals.iife.js").read_bytes()


def test_the_instances_are_separate_processes(pair: Pair) -> None:
    assert pair.a.port != pair.b.port
    assert pair.a.process.pid != pair.b.process.pid
    assert not pair.a.worker_pids() & pair.b.worker_pids()
