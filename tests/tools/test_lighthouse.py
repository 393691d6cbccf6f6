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


def preset(lighthouse: ModuleType, name: str) -> Any:
    return next(preset for preset in lighthouse.PRESETS if preset.name == name)


def test_a_page_within_budget_has_nothing_to_say(lighthouse: ModuleType):
    page = lighthouse.PAGES[2]
    mobile = preset(lighthouse, "mobile")
    result = lighthouse.read_report(mobile, page, "http://127.0.0.1/dashboard/", report())
    assert (result.preset, result.best_practices) == ("mobile", 0.96)
    assert result.over_budget(mobile.budget) == []


def test_each_metric_over_budget_is_named(lighthouse: ModuleType):
    page = lighthouse.PAGES[4]
    desktop = preset(lighthouse, "desktop")
    result = lighthouse.read_report(
        desktop, page, "http://127.0.0.1/activity/", report(performance=0.94, lcp=1000, cls=0.05, weight=150_000)
    )
    assert (result.preset, result.page) == ("desktop", "activity")
    assert result.over_budget(desktop.budget) == [
        "performance score 94 is under 95",
        "LCP 1000 ms is not under 1000 ms",
        "CLS 0.050 is not under 0.05",
        "total weight 150.0 KB is not under 150 KB",
    ]


def test_a_category_lighthouse_could_not_score_stops_the_run(lighthouse: ModuleType):
    broken = report()
    broken["categories"]["performance"]["score"] = None
    with pytest.raises(SystemExit, match=r"landing \(mobile\): no performance score"):
        lighthouse.read_report(preset(lighthouse, "mobile"), lighthouse.PAGES[0], "http://127.0.0.1/", broken)


def test_the_budgets_are_the_issues(lighthouse: ModuleType):
    # Every page under both presets: mobile (Lighthouse's default emulation, issue 21) and desktop.
    assert [(p.name, p.flags) for p in lighthouse.PRESETS] == [("mobile", ()), ("desktop", ("--preset=desktop",))]
    for each in lighthouse.PRESETS:
        budget = each.budget
        assert (budget.performance, budget.accessibility, budget.best_practices) == (0.95, 0.95, 0.95)
        assert (budget.lcp_ms, budget.cls, budget.weight_bytes) == (1000, 0.05, 150_000)
    # Landing and login hold 1.0 s on a phone; the member pages' larger HTML gets 1.5 s there.
    landing, dashboard = lighthouse.PAGES[0], lighthouse.PAGES[2]
    mobile, desktop = lighthouse.PRESETS
    assert mobile.budget_for(landing).lcp_ms == desktop.budget_for(dashboard).lcp_ms == 1000
    assert mobile.budget_for(dashboard) == lighthouse.Budget(lcp_ms=1500)
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


def test_the_table_reports_each_page_under_each_preset(lighthouse: ModuleType):
    results = [
        lighthouse.read_report(each, page, f"http://127.0.0.1{page.path}", report(lcp=lcp))
        for each, lcp in zip(lighthouse.PRESETS, (650, 210), strict=True)
        for page in lighthouse.PAGES[:2]
    ]
    rows = [line.split() for line in lighthouse.table(results).splitlines()[1:]]
    assert [(row[0], row[1], row[5]) for row in rows] == [
        ("mobile", "landing", "650"),
        ("mobile", "login", "650"),
        ("desktop", "landing", "210"),
        ("desktop", "login", "210"),
    ]
