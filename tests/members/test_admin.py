"""The staff admin for members, profiles, API tokens and the activity log."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin import ModelAdmin
from django.contrib.auth.hashers import identify_hasher
from django.db import connection
from django.db.models import Model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from core.admin import CappedCountPaginator
from members.admin import ActivityLogAdmin, LatestActivityInline
from members.models import Action, ActivityLog, ApiToken, Member, MemberStatus, Profile, Tier, TokenScope
from members.services import create_api_token, create_member, record_activity
from subscriptions.models import Subscription, SubscriptionStatus
from tests.conftest import PASSWORD, make_plan


def _populate(rows: int) -> Member:
    """`rows` members, each with a profile, a token, a subscription and some activity. The first
    also has `rows` tokens, subscriptions and activity entries of its own, so that a query per
    row on any page shows up as a count that grows with `rows`. Returns that first member."""
    plan = make_plan(code="pro", name="Pro", tier=Tier.PRO, price_cents=1200, stripe_price_id="price_pro")
    members = [
        # No password: hashing with Argon2 would only slow the test down.
        create_member(email=f"member{i}@example.com", password=None, display_name=f"Member {i}")
        for i in range(rows)
    ]
    for member in members:
        create_api_token(member=member, name="laptop", scopes=[TokenScope.READ], expires_at=None)
        Subscription.objects.create(member=member, plan=plan, status=SubscriptionStatus.ACTIVE)
        record_activity(member=member, action=Action.LOGIN, ip="192.0.2.1", user_agent="Firefox")
    first = members[0]
    for i in range(rows - 1):
        create_api_token(member=first, name=f"script {i}", scopes=[TokenScope.READ, TokenScope.WRITE], expires_at=None)
        Subscription.objects.create(member=first, plan=plan, status=SubscriptionStatus.CANCELED)
    return first


def _change_form_data(response: Any) -> dict[str, Any]:
    """The POST data a browser would send back from an admin change page, unchanged."""
    data: dict[str, Any] = {}
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        forms.append(inline.formset.management_form)
        forms.extend(inline.formset.forms)
    for form in forms:
        for bound in form:
            if bound.field.disabled:
                continue
            value = bound.value()
            if value is None or value is False:
                continue
            data[bound.html_name] = value
    return data


# --- Access -----------------------------------------------------------------------------------


def test_member_without_staff_status_is_sent_to_admin_login(client: Client, alice: Member) -> None:
    client.force_login(alice)

    response = client.get("/admin/")

    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/admin/"


def test_member_without_staff_status_cannot_open_member_list(client: Client, alice: Member) -> None:
    client.force_login(alice)

    response = client.get(reverse("admin:members_member_changelist"))

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


# --- Every page answers, in a fixed number of queries -------------------------------------------

ESTIMATE_QUERIES = 1 if connection.vendor == "postgresql" else 0


# Queries per page for a logged-in superuser, the same at 3 rows and at 10. Every page starts with
# 1 query for the staff user (the session comes from the cache). Changelists add 3: the
# paginator's count (capped; on PostgreSQL an unfiltered list reads the table's estimate
# instead), the page's rows, and the related rows of that page (the member's profile, the
# others' member), loaded in one query rather than joined (see `PagePrefetchChangeList`).
# On PostgreSQL the unfiltered list first reads the table's estimate from the catalogue, and
# counts only when that is under the cap, as it is here: one query more (`ESTIMATE_QUERIES`).
CHANGELIST_QUERIES: list[tuple[type[Model], int]] = [
    (Member, 4),
    (Profile, 4),
    (ApiToken, 4),
    (ActivityLog, 4),
]


@pytest.mark.parametrize("rows", [3, 10])
@pytest.mark.parametrize(("model", "queries"), CHANGELIST_QUERIES)
@pytest.mark.usefixtures("warm_content_types")
def test_changelist_query_count_does_not_grow_with_rows(
    client: Client, carol: Member, django_assert_num_queries: Any, rows: int, model: type[Model], queries: int
) -> None:
    _populate(rows)
    client.force_login(carol)

    with django_assert_num_queries(queries + ESTIMATE_QUERIES):
        response = client.get(reverse(f"admin:members_{model._meta.model_name}_changelist"))

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == model._default_manager.count() > rows


def _change_page_urls(first: Member) -> dict[str, str]:
    token = ApiToken.objects.filter(member=first).latest("id")
    activity = ActivityLog.objects.filter(member=first).latest("id")
    return {
        "member": reverse("admin:members_member_change", args=[first.pk]),
        "profile": reverse("admin:members_profile_change", args=[first.profile.pk]),
        "token": reverse("admin:members_apitoken_change", args=[token.pk]),
        "activity": reverse("admin:members_activitylog_change", args=[activity.pk]),
    }


# Change pages add the object with its member joined in. The member's page also reads their
# groups and permissions, each inline (profile, subscriptions, tokens, the latest activity) in
# one query, and the choices of the groups and permissions widgets: 10.
CHANGE_PAGE_QUERIES = {
    "member": 10,
    "profile": 2,
    "token": 2,
    "activity": 2,
}


@pytest.mark.parametrize("rows", [3, 10])
@pytest.mark.parametrize(("page", "queries"), CHANGE_PAGE_QUERIES.items())
@pytest.mark.usefixtures("warm_content_types")
def test_change_page_query_count_does_not_grow_with_rows(
    client: Client, carol: Member, django_assert_num_queries: Any, rows: int, page: str, queries: int
) -> None:
    first = _populate(rows)
    url = _change_page_urls(first)[page]
    client.force_login(carol)

    with django_assert_num_queries(queries):
        response = client.get(url)

    assert response.status_code == 200


# --- Adding and changing members ---------------------------------------------------------------


def test_adding_a_member_creates_their_profile_and_hashes_the_password(client: Client, carol: Member) -> None:
    client.force_login(carol)

    response = client.post(
        reverse("admin:members_member_add"),
        {
            "email": "Dave@Example.com",
            "display_name": "Dave",
            "usable_password": "true",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )

    dave = Member.objects.get(email="dave@example.com")
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:members_member_change", args=[dave.pk])
    assert Profile.objects.get(member=dave).display_name == "Dave"
    assert identify_hasher(dave.password).algorithm == "argon2"
    assert dave.check_password(PASSWORD)
    assert dave.status == MemberStatus.ACTIVE


def test_adding_a_member_without_password_login_leaves_the_password_unusable(client: Client, carol: Member) -> None:
    client.force_login(carol)

    response = client.post(
        reverse("admin:members_member_add"),
        {"email": "erin@example.com", "display_name": "", "usable_password": "false"},
    )

    erin = Member.objects.get(email="erin@example.com")
    assert response.status_code == 302
    assert not erin.has_usable_password()
    assert Profile.objects.filter(member=erin).exists()


def test_adding_a_member_whose_email_differs_only_in_case_is_refused(
    client: Client, carol: Member, alice: Member
) -> None:
    client.force_login(carol)

    response = client.post(
        reverse("admin:members_member_add"),
        {
            "email": "ALICE@example.com",
            "usable_password": "true",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )

    assert response.status_code == 200
    assert "email" in response.context["adminform"].form.errors
    assert Member.objects.filter(email="alice@example.com").count() == 1


def test_staff_change_status_but_tier_stays_with_the_subscription(client: Client, carol: Member, alice: Member) -> None:
    client.force_login(carol)
    url = reverse("admin:members_member_change", args=[alice.pk])
    data = _change_form_data(client.get(url))
    data.update(status=MemberStatus.SUSPENDED, tier=Tier.PRO)

    response = client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    alice.refresh_from_db()
    assert alice.status == MemberStatus.SUSPENDED
    assert not alice.is_active
    assert alice.tier == Tier.FREE


def test_member_page_links_to_the_password_page_where_staff_set_a_new_one(
    client: Client, carol: Member, alice: Member
) -> None:
    client.force_login(carol)
    change_url = reverse("admin:members_member_change", args=[alice.pk])
    password_url = reverse("admin:auth_user_password_change", args=[alice.pk])

    page = client.get(change_url)
    response = client.post(password_url, {"password1": "a new long passphrase", "password2": "a new long passphrase"})

    assert 'href="../password/"' in page.content.decode()
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("a new long passphrase")
    assert identify_hasher(alice.password).algorithm == "argon2"


def test_members_are_not_deleted_from_the_admin(client: Client, carol: Member, alice: Member) -> None:
    client.force_login(carol)

    response = client.post(reverse("admin:members_member_delete", args=[alice.pk]), {"post": "yes"})

    assert response.status_code == 403
    assert Member.objects.filter(pk=alice.pk).exists()


# --- Search --------------------------------------------------------------------------------------


def test_search_finds_a_member_by_the_start_of_their_email_in_any_case(
    client: Client, carol: Member, alice: Member, bob: Member
) -> None:
    client.force_login(carol)

    response = client.get(reverse("admin:members_member_changelist"), {"q": "ALICE@EX"})

    assert list(response.context["cl"].result_list) == [alice]


def test_search_matches_the_start_of_the_email_only(client: Client, carol: Member, alice: Member) -> None:
    # A prefix match is what the email index serves; a match anywhere would scan every member.
    client.force_login(carol)

    response = client.get(reverse("admin:members_member_changelist"), {"q": "lice@"})

    assert list(response.context["cl"].result_list) == []


def test_token_search_finds_tokens_by_their_members_email(
    client: Client, carol: Member, alice: Member, bob: Member
) -> None:
    token, _ = create_api_token(member=alice, name="laptop", scopes=[TokenScope.READ], expires_at=None)
    create_api_token(member=bob, name="laptop", scopes=[TokenScope.READ], expires_at=None)
    client.force_login(carol)

    response = client.get(reverse("admin:members_apitoken_changelist"), {"q": "Alice"})

    assert list(response.context["cl"].result_list) == [token]


# --- Tokens --------------------------------------------------------------------------------------


def test_token_hash_appears_on_no_admin_page(client: Client, carol: Member) -> None:
    first = _populate(3)
    token_hashes = list(ApiToken.objects.values_list("token_hash", flat=True))
    urls = [
        reverse("admin:index"),
        reverse("admin:members_member_changelist"),
        reverse("admin:members_profile_changelist"),
        reverse("admin:members_apitoken_changelist"),
        reverse("admin:members_activitylog_changelist"),
        *_change_page_urls(first).values(),
        *(reverse("admin:members_apitoken_change", args=[pk]) for pk in ApiToken.objects.values_list("pk", flat=True)),
        *(reverse("admin:members_apitoken_history", args=[pk]) for pk in ApiToken.objects.values_list("pk", flat=True)),
    ]
    client.force_login(carol)

    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert not any(token_hash in html for token_hash in token_hashes), url


def test_token_shows_its_prefix_and_last_characters(client: Client, carol: Member, alice: Member) -> None:
    token, _ = create_api_token(member=alice, name="laptop", scopes=[TokenScope.READ], expires_at=None)
    client.force_login(carol)

    response = client.get(reverse("admin:members_apitoken_change", args=[token.pk]))

    assert f"{token.prefix}…{token.last_chars}" in response.content.decode()


def test_tokens_are_read_only_in_the_admin(client: Client, carol: Member, alice: Member) -> None:
    token, _ = create_api_token(member=alice, name="laptop", scopes=[TokenScope.READ], expires_at=None)
    client.force_login(carol)

    add = client.get(reverse("admin:members_apitoken_add"))
    change = client.post(reverse("admin:members_apitoken_change", args=[token.pk]), {"name": "renamed"})

    assert add.status_code == 403
    assert change.status_code == 403
    token.refresh_from_db()
    assert token.name == "laptop"


def test_expiry_filter_lists_expired_tokens(client: Client, carol: Member, alice: Member) -> None:
    now = timezone.now()
    expired, _ = create_api_token(
        member=alice, name="old", scopes=[TokenScope.READ], expires_at=now - dt.timedelta(days=1)
    )
    create_api_token(member=alice, name="current", scopes=[TokenScope.READ], expires_at=now + dt.timedelta(days=30))
    create_api_token(member=alice, name="forever", scopes=[TokenScope.READ], expires_at=None)
    client.force_login(carol)

    response = client.get(reverse("admin:members_apitoken_changelist"), {"expiry": "expired"})

    assert list(response.context["cl"].result_list) == [expired]


# --- Activity ------------------------------------------------------------------------------------


def test_member_page_links_to_all_their_activity(client: Client, carol: Member, alice: Member, bob: Member) -> None:
    alice_login = record_activity(member=alice, action=Action.LOGIN)
    record_activity(member=bob, action=Action.LOGIN)
    client.force_login(carol)
    activity_url = f"{reverse('admin:members_activitylog_changelist')}?member__id__exact={alice.pk}"

    page = client.get(reverse("admin:members_member_change", args=[alice.pk]))
    activity = client.get(activity_url)

    assert f'href="{activity_url}"' in page.content.decode()
    assert list(activity.context["cl"].result_list) == [alice_login]


def test_member_page_lists_their_latest_activity_newest_first(
    client: Client, carol: Member, alice: Member, bob: Member
) -> None:
    now = timezone.now()
    rows = ActivityLog.objects.bulk_create(
        ActivityLog(member=alice, action=Action.LOGIN, created_at=now - dt.timedelta(minutes=i), ip="192.0.2.7")
        for i in range(LatestActivityInline.rows + 5)
    )
    record_activity(member=bob, action=Action.LOGOUT)
    client.force_login(carol)

    response = client.get(reverse("admin:members_member_change", args=[alice.pk]))

    (inline,) = [i for i in response.context["inline_admin_formsets"] if i.opts.model is ActivityLog]
    shown = [form.original.pk for form in inline]
    assert shown == [row.pk for row in rows[: LatestActivityInline.rows]]


# --- Lists at scale: date ranges, search, counts, autocomplete -----------------------------------


def test_members_filter_by_a_range_of_sign_up_dates(client: Client, carol: Member) -> None:
    days = {day: create_member(email=f"joined{day}@example.com", password=None) for day in (1, 2, 3)}
    for day, member in days.items():
        Member.objects.filter(pk=member.pk).update(created_at=dt.datetime(2026, 3, day, 12, tzinfo=dt.UTC))
    client.force_login(carol)

    response = client.get(
        reverse("admin:members_member_changelist"), {"created_at__gte": "2026-03-02", "created_at__lt": "2026-03-03"}
    )

    assert list(response.context["cl"].result_list) == [days[2]]
    html = response.content.decode()
    assert 'name="created_at__gte" value="2026-03-02"' in html


def test_a_date_range_left_open_on_one_side_filters_on_the_other(client: Client, carol: Member) -> None:
    old = create_member(email="old@example.com", password=None)
    Member.objects.filter(pk=old.pk).update(created_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    client.force_login(carol)

    response = client.get(
        reverse("admin:members_member_changelist"), {"created_at__gte": "", "created_at__lt": "2021-01-01"}
    )

    assert list(response.context["cl"].result_list) == [old]


def test_a_date_that_does_not_exist_is_reported_not_a_crash(client: Client, carol: Member) -> None:
    client.force_login(carol)

    response = client.get(reverse("admin:members_activitylog_changelist"), {"created_at__gte": "2026-02-30"})

    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


def test_activity_filters_by_date_range(client: Client, carol: Member, alice: Member) -> None:
    inside = ActivityLog.objects.create(
        member=alice, action=Action.LOGIN, created_at=dt.datetime(2026, 5, 10, 8, tzinfo=dt.UTC)
    )
    ActivityLog.objects.create(member=alice, action=Action.LOGIN, created_at=dt.datetime(2026, 5, 12, 8, tzinfo=dt.UTC))
    client.force_login(carol)

    response = client.get(
        reverse("admin:members_activitylog_changelist"),
        {"created_at__gte": "2026-05-10", "created_at__lt": "2026-05-11"},
    )

    assert list(response.context["cl"].result_list) == [inside]


def test_activity_search_finds_a_members_rows_by_their_whole_email(
    client: Client, carol: Member, alice: Member, bob: Member
) -> None:
    alices = record_activity(member=alice, action=Action.LOGIN)
    record_activity(member=bob, action=Action.LOGIN)
    client.force_login(carol)
    url = reverse("admin:members_activitylog_changelist")

    found = client.get(url, {"q": " Alice@Example.com "})
    prefix = client.get(url, {"q": "alice@"})

    assert list(found.context["cl"].result_list) == [alices]
    assert list(prefix.context["cl"].result_list) == []


def test_pages_stop_at_the_count_cap(
    client: Client, carol: Member, alice: Member, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CappedCountPaginator, "cap", 4)
    monkeypatch.setattr(ActivityLogAdmin, "list_per_page", 2)
    for _ in range(9):
        record_activity(member=alice, action=Action.LOGIN)
    client.force_login(carol)
    url = reverse("admin:members_activitylog_changelist")

    last = client.get(url, {"p": "2"})
    beyond = client.get(url, {"p": "3"})

    assert last.status_code == 200
    assert last.context["cl"].paginator.num_pages == 2
    assert beyond.status_code == 302  # past the cap: back to the list with an error flag
    assert beyond["Location"].endswith("?e=1")


@pytest.mark.parametrize("model", ["activitylog", "apitoken", "profile"])
@pytest.mark.usefixtures("warm_content_types")
def test_member_autocomplete_matches_the_start_of_the_email(
    client: Client, carol: Member, alice: Member, bob: Member, django_assert_num_queries: Any, model: str
) -> None:
    client.force_login(carol)
    params = {"app_label": "members", "model_name": model, "field_name": "member", "term": "ALI"}

    # The staff user, the count of matches (for "more results"; capped like the lists'), the page.
    with django_assert_num_queries(3):
        response = client.get(reverse("admin:autocomplete"), params)

    assert response.json()["results"] == [{"id": str(alice.pk), "text": "alice@example.com"}]


def test_activity_is_listed_newest_first(client: Client, carol: Member, alice: Member) -> None:
    now = timezone.now()
    older = ActivityLog.objects.create(member=alice, action=Action.LOGIN, created_at=now - dt.timedelta(hours=1))
    newer = ActivityLog.objects.create(member=alice, action=Action.LOGOUT, created_at=now)
    tied = ActivityLog.objects.create(member=alice, action=Action.LOGIN, created_at=now)
    client.force_login(carol)  # records carol's own login: look at alice's rows only

    response = client.get(reverse("admin:members_activitylog_changelist"), {"member__id__exact": alice.pk})

    assert list(response.context["cl"].result_list) == [tied, newer, older]


def test_activity_filters_by_action(client: Client, carol: Member, alice: Member) -> None:
    login = record_activity(member=alice, action=Action.LOGIN)
    record_activity(member=alice, action=Action.LOGOUT)
    client.force_login(carol)

    response = client.get(
        reverse("admin:members_activitylog_changelist"),
        {"action__exact": str(Action.LOGIN), "member__id__exact": str(alice.pk)},
    )

    assert list(response.context["cl"].result_list) == [login]


def test_activity_list_counts_no_further_than_the_cap(
    client: Client, carol: Member, alice: Member, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CappedCountPaginator, "cap", 5)
    for _ in range(8):
        record_activity(member=alice, action=Action.LOGIN)
    client.force_login(carol)

    response = client.get(reverse("admin:members_activitylog_changelist"))

    assert response.context["cl"].result_count == 5


def test_staff_cannot_add_change_or_delete_activity(client: Client, carol: Member, alice: Member) -> None:
    entry = record_activity(member=alice, action=Action.LOGIN)
    client.force_login(carol)

    add = client.get(reverse("admin:members_activitylog_add"))
    change = client.post(reverse("admin:members_activitylog_change", args=[entry.pk]), {"action": Action.LOGOUT})
    delete = client.post(reverse("admin:members_activitylog_delete", args=[entry.pk]), {"post": "yes"})

    assert (add.status_code, change.status_code, delete.status_code) == (403, 403, 403)
    entry.refresh_from_db()
    assert entry.action == Action.LOGIN


def test_the_fast_row_checkbox_is_the_one_django_renders(alice: Member) -> None:
    # The admin's JavaScript (select all, the action counter) finds rows by this markup.
    entry = record_activity(member=alice, action=Action.LOGIN)
    model_admin = admin.site.get_model_admin(ActivityLog)

    assert model_admin.action_checkbox(entry) == ModelAdmin.action_checkbox(model_admin, entry)
