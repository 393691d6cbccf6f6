"""The logged-in member from the cache (members/authentication.py): no query on a warm request,
no password hash in the cache, and every change that must end or change a session seen on the
next request, as Django's own authentication middleware would.

Writes are committed where a test needs their invalidation (`django_capture_on_commit_callbacks`
runs what the commit would): a test's transaction never commits by itself.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY
from django.core.cache import cache
from django.test import Client

from core.cache import MEMBER, invalidate
from members import authentication
from members.models import Member, MemberStatus
from tests.conftest import PASSWORD

LOGIN = "/accounts/login/?next=/dashboard/"


@pytest.fixture
def browser(client: Client, alice: Member) -> Client:
    client.force_login(alice)
    assert client.get("/dashboard/").status_code == 200  # the member's snapshot is cached from here on
    return client


def _snapshot(member: Member) -> Any:
    return cache.get(authentication._key(member.pk))


def test_a_warm_request_reads_the_member_from_the_cache(browser: Client, alice: Member, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = browser.get("/health/live")  # a view that reads nothing, past SessionTimeoutMiddleware

    assert response.status_code == 200
    assert _snapshot(alice).member.pk == alice.pk


def test_the_cache_holds_no_password_hash_and_the_member_loads_it_when_asked(
    browser: Client, alice: Member, django_assert_num_queries
):
    snapshot = _snapshot(alice)
    assert alice.password not in pickle.dumps(snapshot).decode("latin-1")
    assert "password" in snapshot.member.get_deferred_fields()

    member = snapshot.member
    with django_assert_num_queries(1):  # the deferred field, from the database
        assert member.check_password(PASSWORD)


def test_a_saved_snapshot_writes_only_what_it_holds(browser: Client, alice: Member):
    member = _snapshot(alice).member
    member.status = MemberStatus.SUSPENDED
    member.save()

    alice.refresh_from_db()
    assert alice.status == MemberStatus.SUSPENDED
    assert alice.check_password(PASSWORD)  # the password was not written over


def test_a_password_changed_elsewhere_ends_the_session_at_its_next_request(
    browser: Client, alice: Member, django_capture_on_commit_callbacks: Any
):
    with django_capture_on_commit_callbacks(execute=True):
        alice.set_password("a different battery staple")
        alice.save()

    assert browser.get("/dashboard/")["Location"] == LOGIN
    assert SESSION_KEY not in browser.session


def test_a_write_that_is_not_committed_yet_leaves_the_snapshot_in_use(browser: Client, alice: Member):
    # Until the commit, other requests still see the committed row, as they would in the database.
    alice.status = MemberStatus.SUSPENDED
    alice.save(update_fields=["status"])

    assert browser.get("/dashboard/").status_code == 200
    invalidate(MEMBER, alice.pk)  # what the commit does
    assert browser.get("/dashboard/")["Location"] == LOGIN


def test_a_forged_session_hash_is_refused_even_with_the_snapshot_cached(browser: Client, alice: Member):
    session = browser.session
    session[HASH_SESSION_KEY] = "0" * 64
    session.save()

    assert browser.get("/dashboard/")["Location"] == LOGIN


def test_a_session_signed_with_a_fallback_key_is_moved_to_the_new_key(browser: Client, alice: Member, settings):
    old = settings.SECRET_KEY
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "a new secret key " * 4, [old]

    assert browser.get("/dashboard/").status_code == 200
    assert browser.session[HASH_SESSION_KEY] == Member.objects.get(pk=alice.pk).get_session_auth_hash()

    settings.SECRET_KEY_FALLBACKS = []  # the old key retired: the session was moved off it
    assert browser.get("/dashboard/").status_code == 200


def test_a_session_signed_with_a_retired_key_ends_though_its_snapshot_was_cached(browser: Client, settings):
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "a new secret key " * 4, []

    assert browser.get("/dashboard/")["Location"] == LOGIN


def test_another_members_session_never_gets_this_members_snapshot(
    browser: Client, alice: Member, bob: Member, django_assert_num_queries
):
    other = Client()
    other.force_login(bob)

    assert "Welcome, Bob" in other.get("/dashboard/").content.decode()
    assert "Welcome, Alice" in browser.get("/dashboard/").content.decode()
    assert _snapshot(bob).member.pk == bob.pk != _snapshot(alice).member.pk
