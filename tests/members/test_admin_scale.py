"""On PostgreSQL, with enough rows, the admin lists never count a whole big table and read their
pages through indexes (the `scale_rows` fixture: 5,000 members, about 200,000 activity rows)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from core.admin import CappedCountPaginator
from members.models import ActivityLog, Member

pytestmark = [pytest.mark.postgres, pytest.mark.django_db, pytest.mark.usefixtures("scale_rows", "warm_content_types")]

ACTIVITY = reverse("admin:members_activitylog_changelist")
# A COUNT over a table with no LIMIT inside it: what reads every row.
WHOLE_COUNT = re.compile(r"COUNT\(\*\)(?!.*\bLIMIT\b)", re.DOTALL)


def counts_of(queries: CaptureQueriesContext, table: str) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"] and table in q["sql"]]


def get(client: Client, url: str, params: dict[str, Any] | None = None) -> tuple[Any, CaptureQueriesContext]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, params or {})
    assert response.status_code == 200
    return response, queries


def test_the_unfiltered_activity_list_shows_the_estimate_and_counts_nothing(client: Client, carol: Member) -> None:
    client.force_login(carol)

    response, queries = get(client, ACTIVITY)

    assert counts_of(queries, "members_activitylog") == []
    assert any("pg_class" in q["sql"] for q in queries.captured_queries)
    assert 180_000 < response.context["cl"].result_count < 220_000  # 200,400 rows, estimated
    # The pages still stop at the cap, so OFFSET never goes deep.
    assert response.context["cl"].paginator.num_pages == CappedCountPaginator.cap // 100


def test_a_filtered_activity_list_counts_no_further_than_the_cap(client: Client, carol: Member) -> None:
    client.force_login(carol)

    response, queries = get(client, ACTIVITY, {"action__exact": "login"})

    (count,) = counts_of(queries, "members_activitylog")
    assert not WHOLE_COUNT.search(count)
    assert f"LIMIT {CappedCountPaginator.cap}" in count
    assert response.context["cl"].result_count == CappedCountPaginator.cap


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"action__exact": "logout"},
        {"created_at__gte": "2026-01-01"},
        {"q": "m2500@scale.example"},
        {"p": "100"},
    ],
    ids=["plain", "action", "date", "member-search", "last-page"],
)
def test_no_activity_list_counts_the_whole_table(client: Client, carol: Member, params: dict[str, str]) -> None:
    client.force_login(carol)

    _, queries = get(client, ACTIVITY, params)

    assert not any(WHOLE_COUNT.search(sql) for sql in counts_of(queries, "members_activitylog"))


# On PostgreSQL as on SQLite: the staff user, the count (here the table's estimate), the page's
# rows, the page's members. A search for a member's email looks the member up first: one more.
@pytest.mark.parametrize(
    ("params", "queries"), [({}, 4), ({"action__exact": "login"}, 4), ({"q": "m1@scale.example"}, 5)]
)
def test_activity_list_query_count_on_postgresql(
    client: Client, carol: Member, django_assert_num_queries: Any, params: dict[str, str], queries: int
) -> None:
    client.force_login(carol)

    with django_assert_num_queries(queries):
        response = client.get(ACTIVITY, params)

    assert response.status_code == 200


# (The fixture's members have no profile rows: the profile list is covered on SQLite.)
@pytest.mark.parametrize("name", ["member", "apitoken"])
def test_the_member_sized_lists_count_no_further_than_the_cap(client: Client, carol: Member, name: str) -> None:
    client.force_login(carol)

    response, queries = get(client, reverse(f"admin:members_{name}_changelist"))

    assert not any(WHOLE_COUNT.search(q["sql"]) for q in queries.captured_queries if "COUNT(" in q["sql"])
    assert len(response.context["cl"].result_list) == 100


def test_a_deep_activity_page_is_read_through_the_date_index_without_the_member_join() -> None:
    page = ActivityLog.objects.order_by("-created_at", "-id")[9_900:10_000]

    plan = page.explain()

    assert "activity_created_idx" in plan
    assert "Seq Scan" not in plan
    assert "members_member" not in str(page.query)


def test_a_date_range_of_activity_uses_the_date_index() -> None:
    since = timezone.now() - dt.timedelta(days=2)

    plan = ActivityLog.objects.filter(created_at__gte=since).order_by("-created_at", "-id")[:100].explain()

    assert "activity_created_idx" in plan
    assert "Seq Scan" not in plan


def test_a_searched_members_activity_is_read_from_their_index_in_order() -> None:
    member = Member.objects.get(email="m2500@scale.example")

    plan = ActivityLog.objects.filter(member_id=member.pk).order_by("-created_at", "-id")[:100].explain()

    assert "activity_member_recent_idx" in plan
    assert "Sort" not in plan
