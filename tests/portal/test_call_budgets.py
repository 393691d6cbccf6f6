"""A budget of Python function calls for a warm request to each member page and API endpoint:
a regression guard like the pinned query counts, deterministic where time is not. A change that
makes a page much more expensive to serve fails here; `python bench/request_cost.py PATH`
shows where the calls go.

Counted around the test client's request, so the client's own few hundred calls are in every
figure; the budgets stand about 25% above what each request costs today."""

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
# a run of this module alone). The profile page was about 58,000
# before its time zone select stopped rendering a template per option: this catches that.
PAGE_BUDGETS = {
    "/dashboard/": 10_000,
    "/activity/": 30_000,
    "/tokens/": 22_000,
    "/subscription/": 10_000,
    "/profile/": 15_000,
}
API_BUDGETS = {
    "/api/v1/me": 6_500,
    "/api/v1/activity": 14_000,
    "/api/v1/tokens": 9_000,
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
    python_calls(client, path, **auth)
    calls = python_calls(client, path, **auth)
    assert calls <= API_BUDGETS[path], f"{path}: {calls} Python calls, budget {API_BUDGETS[path]}"
