"""A budget of Python function calls for a warm request to each member page and API endpoint:
a regression guard like the pinned query counts, deterministic where time is not. A change that
makes a page much more expensive to serve fails here; `python bench/request_cost.py PATH`
shows where the calls go.

Counted around the test client's request, so the client's own few hundred calls are in every
figure; the budgets stand about half above what each request costs today."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from members.models import Action, Member, TokenScope
from members.services import create_api_token, record_activity

# Path: most Python calls a warm request may make. Measured on SQLite and local memory and on
# PostgreSQL and Redis (the larger figure, plus half: a full suite run warms other caches than
# a run of this module alone). Warm member pages and GET /me and /activity come from the page
# cache with the member or token from theirs (core/pagecache.py, members/authentication.py):
# about 1,000 calls on SQLite and 1,300 on Redis; before, 4,000 to 20,000. The profile page
# was about 58,000 before its time zone select stopped rendering a template per option.
PAGE_BUDGETS = {
    "/dashboard/": 2_000,
    "/activity/": 2_000,
    "/tokens/": 2_000,
    "/subscription/": 2_000,
    "/profile/": 2_000,
}
LANDING_BUDGET = 1_300  # the anonymous landing page, from the page cache
API_BUDGETS = {
    "/api/v1/me": 2_800,
    "/api/v1/activity": 2_800,
    "/api/v1/tokens": 5_200,  # not cached: it marks the calling token, and its liveness moves with time
}


def python_calls_of(run: Callable[[], object]) -> int:
    """How many Python function calls `run()` makes (C functions are not counted)."""
    calls = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(count)
    try:
        run()
    finally:
        sys.setprofile(None)
    return calls


def python_calls(client: Client, path: str, **headers: Any) -> int:
    responses = []
    calls = python_calls_of(lambda: responses.append(client.get(path, **headers)))
    assert responses[0].status_code == 200, (path, responses[0].status_code)
    return calls


@pytest.fixture
def busy_alice(alice: Member) -> Member:
    for index in range(30):
        record_activity(member=alice, action=Action.LOGIN, ip=f"203.0.113.{index}", user_agent="Firefox")
    for index in range(3):
        create_api_token(member=alice, name=f"script {index}", scopes=[TokenScope.READ], expires_at=None)
    return alice


@pytest.mark.parametrize("path", PAGE_BUDGETS)
def test_a_warm_member_page_stays_within_its_call_budget(client: Client, busy_alice: Member, path: str):
    client.force_login(busy_alice)
    python_calls(client, path)  # warm: the cache filled, templates and URLconf loaded
    calls = python_calls(client, path)
    assert calls <= PAGE_BUDGETS[path], f"{path}: {calls} Python calls, budget {PAGE_BUDGETS[path]}"


@pytest.mark.parametrize("path", API_BUDGETS)
def test_a_warm_api_request_stays_within_its_call_budget(client: Client, busy_alice: Member, path: str):
    _, plain = create_api_token(member=busy_alice, name="bench", scopes=[TokenScope.READ], expires_at=None)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {plain}"}
    for _ in range(3):  # the token's member noted, its row kept (members/authentication.py), the cache filled
        python_calls(client, path, **auth)
    calls = python_calls(client, path, **auth)
    assert calls <= API_BUDGETS[path], f"{path}: {calls} Python calls, budget {API_BUDGETS[path]}"


def test_the_anonymous_landing_page_stays_within_its_call_budget(client: Client, db: None):
    python_calls(client, "/")
    calls = python_calls(client, "/")
    assert calls <= LANDING_BUDGET, f"/: {calls} Python calls, budget {LANDING_BUDGET}"
