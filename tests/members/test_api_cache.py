"""The API from the cache: the token's row (members/authentication.py) and the JSON bodies of
GET /me and /activity (core/pagecache.py `cached_response`). What the cache serves is what the
API renders, a committed write shows at the next request, and no token outlives its revocation,
its expiry or its member's deactivation because it was cached.

Writes are committed where a test needs their invalidation (`django_capture_on_commit_callbacks`
runs what the commit would): a test's transaction never commits by itself.
"""

from __future__ import annotations

import datetime as dt
import pickle
from typing import Any

import pytest
import time_machine
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from members import authentication, tokens
from members.models import Action, ApiToken, Member, MemberStatus, TokenScope
from members.services import create_api_token, record_activity, revoke_api_token, update_profile

PATHS = ["/api/v1/me", "/api/v1/activity", "/api/v1/activity?limit=1", "/api/v1/activity?action=token_created"]


def _bearer(plain: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {plain}"}


def _token(member: Member, **fields: Any) -> tuple[ApiToken, str]:
    return create_api_token(member=member, name="script", scopes=[TokenScope.READ, TokenScope.WRITE], **fields)


def _warm(client: Client, plain: str, path: str = "/api/v1/me") -> None:
    for _ in range(3):  # the token's member noted, its row kept, then served from the cache
        assert client.get(path, headers=_bearer(plain)).status_code == 200


@pytest.mark.parametrize("path", PATHS)
def test_a_cached_body_is_the_body_the_api_renders(client: Client, alice: Member, settings, path: str):
    _, plain = _token(alice, expires_at=None)
    _warm(client, plain, path)
    cached = client.get(path, headers=_bearer(plain))

    settings.PAGE_CACHE = False
    rendered = client.get(path, headers=_bearer(plain))

    assert cached.content == rendered.content
    assert cached["ETag"] == rendered["ETag"]
    assert cached["Content-Type"] == rendered["Content-Type"] == "application/json; charset=utf-8"


def test_a_warm_request_makes_no_query(client: Client, alice: Member, django_assert_num_queries):
    _, plain = _token(alice, expires_at=None)
    _warm(client, plain)

    client.get("/api/v1/activity", headers=_bearer(plain))  # reads and keeps its page

    with django_assert_num_queries(0):
        assert client.get("/api/v1/me", headers=_bearer(plain)).status_code == 200
        assert client.get("/api/v1/activity", headers=_bearer(plain)).status_code == 200


def test_each_query_string_is_its_own_entry(client: Client, alice: Member):
    _, plain = _token(alice, expires_at=None)
    record_activity(member=alice, action=Action.LOGIN, ip="198.51.100.4", user_agent="")

    one = client.get("/api/v1/activity?limit=1", headers=_bearer(plain)).json()
    every = client.get("/api/v1/activity", headers=_bearer(plain)).json()

    assert len(one["items"]) == 1 and one["next_cursor"] is not None
    assert len(every["items"]) == 2 and every["next_cursor"] is None


def test_a_committed_write_shows_at_the_next_request(
    client: Client, alice: Member, django_capture_on_commit_callbacks: Any
):
    _, plain = _token(alice, expires_at=None)
    _warm(client, plain)
    _warm(client, plain, "/api/v1/activity")

    with django_capture_on_commit_callbacks(execute=True):
        record_activity(member=alice, action=Action.LOGIN, ip="198.51.100.4", user_agent="")
        update_profile(member=alice, display_name="Alice Liddell", bio="", time_zone="UTC", email_updates=False)

    assert client.get("/api/v1/me", headers=_bearer(plain)).json()["display_name"] == "Alice Liddell"
    assert client.get("/api/v1/activity", headers=_bearer(plain)).json()["items"][0]["action"] == "profile_updated"


def test_another_members_token_never_gets_this_members_body(client: Client, alice: Member, bob: Member):
    _, alices = _token(alice, expires_at=None)
    _, bobs = _token(bob, expires_at=None)
    _warm(client, alices)

    assert client.get("/api/v1/me", headers=_bearer(bobs)).json()["email"] == "bob@example.com"
    assert client.get("/api/v1/me", headers=_bearer(alices)).json()["email"] == "alice@example.com"


def test_a_revoked_token_is_refused_at_its_next_request(
    client: Client, alice: Member, django_capture_on_commit_callbacks: Any
):
    token, plain = _token(alice, expires_at=None)
    _warm(client, plain)

    with django_capture_on_commit_callbacks(execute=True):
        revoke_api_token(token=token, ip=None, user_agent="")

    assert client.get("/api/v1/me", headers=_bearer(plain)).status_code == 401


def test_a_deactivated_members_token_is_refused_at_its_next_request(
    client: Client, alice: Member, django_capture_on_commit_callbacks: Any
):
    _, plain = _token(alice, expires_at=None)
    _warm(client, plain)

    with django_capture_on_commit_callbacks(execute=True):
        alice.status = MemberStatus.SUSPENDED
        alice.save(update_fields=["status"])

    assert client.get("/api/v1/me", headers=_bearer(plain)).status_code == 401


def test_an_expired_token_is_refused_though_its_row_is_cached(client: Client, alice: Member):
    expiry = timezone.now() + dt.timedelta(hours=1)
    _, plain = _token(alice, expires_at=expiry)
    _warm(client, plain)

    with time_machine.travel(expiry + dt.timedelta(seconds=1)):
        assert client.get("/api/v1/me", headers=_bearer(plain)).status_code == 401


def test_the_cached_token_holds_neither_the_secret_nor_a_password_hash(client: Client, alice: Member):
    _, plain = _token(alice, expires_at=None)
    _warm(client, plain)

    entry = cache.get(authentication._token_key(tokens.hash_token(plain)))
    stored = pickle.dumps(entry).decode("latin-1")

    assert entry.token is not None and entry.member_id == alice.pk
    assert plain not in stored
    assert alice.password not in stored
