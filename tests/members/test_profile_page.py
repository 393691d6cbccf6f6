"""The profile page: view and edit the member's profile."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client

from members.models import Action, ActivityLog, Member, Profile

# The profile; the session and the member come from the cache (members/authentication.py).
PROFILE_QUERIES = 1
# Profile, then the service: savepoint, profile locked, profile saved, activity recorded,
# savepoint released.
PROFILE_SAVE_QUERIES = 6


@pytest.fixture(autouse=True)
def _render_every_page(settings) -> None:
    """These tests pin what a render of the page costs and shows; serving it from the page cache
    is tested in tests/core/test_pagecache.py and tests/portal/test_cache_invalidation.py."""
    settings.PAGE_CACHE = False


def _form(**changes: Any) -> dict[str, Any]:
    data = {"display_name": "Alice", "bio": "", "time_zone": "UTC"}
    data.update(changes)
    return data


def _updates(member: Member) -> list[ActivityLog]:
    return list(ActivityLog.objects.filter(member=member, action=Action.PROFILE_UPDATED))


@pytest.fixture
def logged_in(client: Client, alice: Member) -> Client:
    client.force_login(alice)
    client.get("/profile/")  # the session's idle clock is set on the first request
    return client


def test_the_profile_page_shows_the_current_values(logged_in: Client, alice: Member, django_assert_num_queries):
    Profile.objects.filter(member=alice).update(bio="Bird watcher", time_zone="Europe/Paris")

    with django_assert_num_queries(PROFILE_QUERIES):
        response = logged_in.get("/profile/")

    body = response.content.decode()
    assert response.status_code == 200
    assert 'value="Alice"' in body
    assert "Bird watcher</textarea>" in body
    assert '<option value="Europe/Paris" selected>Paris</option>' in body
    assert "<label" in body and 'name="csrfmiddlewaretoken"' in body


def test_saving_the_profile_records_which_fields_changed(logged_in: Client, alice: Member, django_assert_num_queries):
    with django_assert_num_queries(PROFILE_SAVE_QUERIES):
        response = logged_in.post(
            "/profile/",
            _form(display_name="Alice Liddell", bio="Curious.\r\nVery.", time_zone="Europe/London"),
            REMOTE_ADDR="192.0.2.7",
            HTTP_USER_AGENT="Firefox",
        )

    assert response.status_code == 302 and response["Location"] == "/profile/"
    profile = Profile.objects.get(member=alice)
    assert (profile.display_name, profile.bio, profile.time_zone) == (
        "Alice Liddell",
        "Curious.\nVery.",
        "Europe/London",
    )
    [entry] = _updates(alice)
    # The names of the fields, never their values.
    assert entry.detail == {"fields": ["display_name", "bio", "time_zone"]}
    assert (entry.ip, entry.user_agent) == ("192.0.2.7", "Firefox")
    assert "Your profile is saved." in logged_in.get("/profile/").content.decode()


def test_a_preference_is_saved_without_losing_the_others(logged_in: Client, alice: Member):
    Profile.objects.filter(member=alice).update(preferences={"theme": "dark"})

    logged_in.post("/profile/", _form(email_updates="on"))

    assert Profile.objects.get(member=alice).preferences == {"theme": "dark", "email_updates": True}
    [entry] = _updates(alice)
    assert entry.detail == {"fields": ["email_updates"]}
    assert "checked" in logged_in.get("/profile/").content.decode()


def test_saving_an_unchanged_profile_records_nothing(logged_in: Client, alice: Member):
    before = Profile.objects.get(member=alice).updated_at

    response = logged_in.post("/profile/", _form(), follow=True)

    assert "Nothing changed" in response.content.decode()
    assert _updates(alice) == []
    assert Profile.objects.get(member=alice).updated_at == before


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        (
            {"time_zone": "Mars/Olympus_Mons"},
            "Select a valid choice. Mars/Olympus_Mons is not one of the available choices.",
        ),
        ({"display_name": "A" * 81}, "Ensure this value has at most 80 characters (it has 81)."),
        ({"bio": "b" * 2001}, "Ensure this value has at most 2000 characters (it has 2001)."),
    ],
)
def test_invalid_input_is_shown_again_with_its_error_and_changes_nothing(
    logged_in: Client, alice: Member, changes: dict[str, str], error: str
):
    before = Profile.objects.values().get(member=alice)

    response = logged_in.post("/profile/", _form(**{"bio": "New bio", **changes}))

    assert response.status_code == 200
    body = response.content.decode()
    assert error in body
    assert "Nothing was saved." in body
    assert 'aria-invalid="true"' in body
    assert "New bio" in body or "b" * 2001 in body  # what the member typed is kept in the form
    assert Profile.objects.values().get(member=alice) == before
    assert _updates(alice) == []


def test_a_time_zone_set_elsewhere_stays_selected_and_unchanged(logged_in: Client, alice: Member):
    # The admin accepts any IANA name, aliases too; the form offers only canonical zones.
    Profile.objects.filter(member=alice).update(time_zone="US/Eastern")

    body = logged_in.get("/profile/").content.decode()
    logged_in.post("/profile/", _form(time_zone="US/Eastern"))

    assert '<option value="US/Eastern" selected>US/Eastern</option>' in body
    assert Profile.objects.get(member=alice).time_zone == "US/Eastern"
    assert _updates(alice) == []


def test_pages_show_times_in_the_members_time_zone(logged_in: Client, alice: Member):
    Profile.objects.filter(member=alice).update(time_zone="Asia/Tokyo")
    ActivityLog.objects.filter(member=alice).delete()
    ActivityLog.objects.create(
        member=alice, action=Action.LOGIN, created_at=dt.datetime(2030, 1, 1, 23, 30, tzinfo=dt.UTC)
    )

    body = logged_in.get("/activity/").content.decode()

    assert "2 Jan 2030, 08:30:00" in body
    assert "Times are in Asia/Tokyo" in body
