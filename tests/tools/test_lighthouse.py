"""The budgets of `make lighthouse` (tools/lighthouse/run.py): what a report is read as, and how a
page over budget is named. The run itself is `make lighthouse`, in CI as its own step."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from portal.demo_data import DEMO_PASSWORD

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lighthouse() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lighthouse_run", ROOT / "tools" / "lighthouse" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["lighthouse_run"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def report(*, performance: float = 1, lcp: float = 400, cls: float = 0, weight: int = 15_000) -> dict[str, Any]:
    return {
        "categories": {
            "performance": {"score": performance},
            "accessibility": {"score": 1},
            "best-practices": {"score": 0.96},
        },
        "audits": {
            "largest-contentful-paint": {"numericValue": lcp},
            "cumulative-layout-shift": {"numericValue": cls},
            "total-byte-weight": {"numericValue": weight},
        },
    }


def test_a_page_within_budget_has_nothing_to_say(lighthouse: ModuleType):
    page = lighthouse.PAGES[2]
    result = lighthouse.read_report(page, "http://127.0.0.1/dashboard/", report())
    assert result.best_practices == 0.96
    assert result.over_budget(lighthouse.BUDGET) == []


def test_each_metric_over_budget_is_named(lighthouse: ModuleType):
    page = lighthouse.PAGES[4]
    result = lighthouse.read_report(
        page, "http://127.0.0.1/activity/", report(performance=0.94, lcp=1000, cls=0.05, weight=150_000)
    )
    assert result.page == "activity"
    assert result.over_budget(lighthouse.BUDGET) == [
        "performance score 94 is under 95",
        "LCP 1000 ms is not under 1000 ms",
        "CLS 0.050 is not under 0.05",
        "total weight 150.0 KB is not under 150 KB",
    ]


def test_a_category_lighthouse_could_not_score_stops_the_run(lighthouse: ModuleType):
    broken = report()
    broken["categories"]["performance"]["score"] = None
    with pytest.raises(SystemExit, match="no performance score"):
        lighthouse.read_report(lighthouse.PAGES[0], "http://127.0.0.1/", broken)


def test_the_budgets_are_the_issues(lighthouse: ModuleType):
    budget = lighthouse.BUDGET
    assert (budget.performance, budget.accessibility, budget.best_practices) == (0.95, 0.95, 0.95)
    assert (budget.lcp_ms, budget.cls, budget.weight_bytes) == (1000, 0.05, 150_000)
    assert [page.path for page in lighthouse.PAGES] == [
        "/",
        "/accounts/login/",
        "/dashboard/",
        "/tokens/",
        "/activity/",
    ]


def test_it_logs_in_as_a_demo_member_with_the_published_password(lighthouse: ModuleType):
    assert lighthouse.DEMO_PASSWORD == DEMO_PASSWORD


def test_lighthouse_is_pinned_exactly_and_locked(lighthouse: ModuleType):
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["lighthouse"]
    locked = json.loads((ROOT / "package-lock.json").read_text())["packages"]["node_modules/lighthouse"]["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned)
    assert pinned == locked
