"""The activity page: the member's own log, newest first, 50 a page by keyset cursor."""

from __future__ import annotations

import base64
import datetime as dt
import html
import re

import pytest
from django.test import Client
from django.utils import timezone

from core.cache import MEMBER, invalidate
from members.models import Action, ActivityLog, Member

# One page of rows (LIMIT 51): any page, any depth. The member comes from their cached snapshot
# (members/authentication.py) and the time zone from their cached profile (members/reads.py):
# one query more for each when the member's cache was invalidated.
ACTIVITY_QUERIES = 1
ACTIVITY_QUERIES_COLD = 3

USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
LINK = re.compile(r'<a href="(/activity/[^"]*)"(?: rel="(prev|next)")?>')


@pytest.fixture(autouse=True)
def _render_every_page(settings) -> None:
    """These tests pin what a render of the page costs and shows; serving it from the page cache
    is tested in tests/core/test_pagecache.py and tests/portal/test_cache_invalidation.py."""
    settings.PAGE_CACHE = False


def _add_rows(
    member: Member, count: int, *, same_instant: bool = False, action: Action | None = None
) -> list[ActivityLog]:
    """`count` rows, newest first in the returned list. With `same_instant`, every row shares
    one timestamp, so the order rests on the id alone."""
    now = timezone.now()
    rows = ActivityLog.objects.bulk_create(
        ActivityLog(
            member=member,
            action=action or (Action.LOGIN if i % 3 else Action.TOKEN_CREATED),
            created_at=now if same_instant else now - dt.timedelta(seconds=count - i),
            ip="198.51.100.4",
            user_agent=USER_AGENT,
        )
        for i in range(count)
    )
    return sorted(rows, key=lambda row: (row.created_at, row.pk), reverse=True)


def _links(body: str) -> dict[str, str]:
    """The pager's links by role: "older", "newer", "newest"."""
    pager = body.split('<nav class="pager"', 1)[1] if '<nav class="pager"' in body else ""
    found = {}
    for url, rel in LINK.findall(pager):
        role = {"next": "older", "prev": "newer", "": "newest"}[rel]
        found[role] = html.unescape(url)
    return found


def _ids(response) -> list[int]:
    return [entry.pk for entry, _ in response.context["entries"]]


@pytest.fixture
def logged_in(client: Client, alice: Member) -> Client:
    client.force_login(alice)
    client.get("/activity/")  # the session's idle clock is set on the first request
    ActivityLog.objects.filter(member=alice).delete()  # the login itself
    return client


@pytest.mark.parametrize("same_instant", [False, True], ids=["distinct-times", "one-instant"])
def test_paging_through_120_entries_takes_three_pages_without_gaps_or_repeats(
    logged_in: Client, alice: Member, bob: Member, same_instant: bool, django_assert_num_queries
):
    expected = [row.pk for row in _add_rows(alice, 120, same_instant=same_instant)]
    _add_rows(bob, 30, same_instant=same_instant)
    seen: list[int] = []
    sizes = []
    url = "/activity/"
    pages = []
    while url:
        with django_assert_num_queries(ACTIVITY_QUERIES):
            response = logged_in.get(url)
        assert response.status_code == 200
        pages.append(response)
        sizes.append(len(_ids(response)))
        seen.extend(_ids(response))
        url = _links(response.content.decode()).get("older", "")

    assert sizes == [50, 50, 20]
    assert seen == expected  # bob's rows never appear, no row twice, none missing

    # Back from the last page: the newer link gives the middle page again.
    newer = _links(pages[2].content.decode())["newer"]
    with django_assert_num_queries(ACTIVITY_QUERIES):
        middle = logged_in.get(newer)
    assert _ids(middle) == _ids(pages[1])
    assert _links(pages[2].content.decode())["newest"] == "/activity/"
    assert "newer" not in _links(pages[0].content.decode())


def test_the_query_count_is_the_same_with_few_and_many_entries(
    logged_in: Client, alice: Member, django_assert_num_queries
):
    _add_rows(alice, 10)
    with django_assert_num_queries(ACTIVITY_QUERIES):
        logged_in.get("/activity/")
    invalidate(MEMBER, alice.pk)
    with django_assert_num_queries(ACTIVITY_QUERIES_COLD):
        logged_in.get("/activity/")

    _add_rows(alice, 490)
    with django_assert_num_queries(ACTIVITY_QUERIES):
        first = logged_in.get("/activity/")
    deep = logged_in.get(_links(first.content.decode())["older"])
    for _ in range(5):
        deep = logged_in.get(_links(deep.content.decode())["older"])
    with django_assert_num_queries(ACTIVITY_QUERIES):
        logged_in.get(_links(deep.content.decode())["older"])


def test_the_action_filter_is_kept_across_pages(logged_in: Client, alice: Member):
    logins = [row.pk for row in _add_rows(alice, 60, action=Action.LOGIN)]
    _add_rows(alice, 60, action=Action.LOGOUT)

    first = logged_in.get("/activity/", {"action": "login"})
    older = _links(first.content.decode())["older"]
    second = logged_in.get(older)

    assert "action=login" in older
    assert _ids(first) + _ids(second) == logins
    assert "action=login" in _links(second.content.decode())["newer"]
    assert "action=login" in _links(second.content.decode())["newest"]
    assert '<option value="login" selected>Logged in</option>' in second.content.decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "!!!!",
        "",
        "x" * 5000,
        base64.urlsafe_b64encode(b"1.999999999999999999.1").decode(),  # beyond the year 9999
        base64.urlsafe_b64encode(b"1.1700000000000000.99999999999999999999").decode(),  # beyond bigint
        base64.urlsafe_b64encode(b"1.1700000000000000.0").decode(),
        base64.urlsafe_b64encode(b"2.1700000000000000.5").decode(),  # unknown version
        base64.urlsafe_b64encode(b"1.1_700.5").decode(),
        base64.urlsafe_b64encode("1.\u0661\u0667\u0660\u0660.5".encode()).decode(),  # Arabic-Indic digits
        "%00%ff",
    ],
)
@pytest.mark.parametrize("direction", ["before", "after"])
def test_a_tampered_cursor_shows_the_first_page_with_a_message(
    logged_in: Client, alice: Member, cursor: str, direction: str
):
    newest = [row.pk for row in _add_rows(alice, 60)][:50]

    response = logged_in.get("/activity/", {direction: cursor})

    assert response.status_code == 200
    assert "That page link is not valid, so here are your newest entries." in response.content.decode()
    assert _ids(response) == newest


@pytest.mark.parametrize(
    "raw",
    [
        b"1.253402300799999999.9223372036854775807",  # the last microsecond of 9999, the largest id
        b"1.-62135596800000000.1",  # the first instant of the year 1
        b"1.4102444800000000.1",
    ],
)
@pytest.mark.parametrize("direction", ["before", "after"])
def test_an_invented_cursor_only_ever_reaches_the_members_own_rows(
    logged_in: Client, alice: Member, bob: Member, raw: bytes, direction: str
):
    bobs = _add_rows(bob, 5)
    _add_rows(alice, 5)

    response = logged_in.get("/activity/", {direction: base64.urlsafe_b64encode(raw).decode()})

    assert response.status_code == 200
    assert not set(_ids(response)) & {row.pk for row in bobs}


def test_an_unknown_action_filter_is_reported_and_ignored(logged_in: Client, alice: Member):
    _add_rows(alice, 3)

    response = logged_in.get("/activity/", {"action": "drop table"})

    assert response.status_code == 200
    assert "Select a valid choice." in response.content.decode()
    assert len(_ids(response)) == 3


def test_each_entry_shows_action_time_ip_and_a_shortened_user_agent(logged_in: Client, alice: Member):
    ActivityLog.objects.create(
        member=alice,
        action=Action.PROFILE_UPDATED,
        ip="203.0.113.5",
        user_agent="A" * 300,
        detail={"fields": ["display_name", "bio"]},
        created_at=dt.datetime(2030, 5, 6, 7, 8, 9, tzinfo=dt.UTC),
    )

    body = logged_in.get("/activity/").content.decode()

    assert "Updated profile" in body
    assert "6 May 2030, 07:08:09" in body
    assert "203.0.113.5" in body
    assert "A" * 59 + "…" in body and "A" * 61 + "<" not in body
    assert "display name, bio" in body


def test_an_empty_log_says_so(logged_in: Client):
    response = logged_in.get("/activity/")

    assert "Nothing yet." in response.content.decode()
    assert _links(response.content.decode()) == {}


def test_an_anonymous_visitor_is_sent_to_log_in(client: Client, db: None):
    response = client.get("/activity/?action=login")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/activity/%3Faction%3Dlogin"


@pytest.mark.postgres
@pytest.mark.usefixtures("scale_rows")
@pytest.mark.django_db
def test_a_newer_page_reads_the_member_index_backwards():
    member = Member.objects.get(email="m2500@scale.example")
    cursor = ActivityLog.objects.for_member(member).recent()[200]

    plan = ActivityLog.objects.for_member(member).after(cursor.created_at, cursor.pk)[:51].explain()

    assert "activity_member_recent_idx" in plan
    assert "Sort" not in plan
