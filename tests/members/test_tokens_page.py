"""The API tokens page: list, create (shown once), revoke with confirmation."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.apps import apps
from django.contrib.sessions.models import Session
from django.db import connection, models
from django.test import Client
from django.utils import timezone

from members import tokens
from members.models import Action, ActivityLog, ApiToken, Member, TokenScope
from members.services import create_api_token, revoke_api_token
from members.views import TOKENS_LISTED

# The listed tokens; the member comes from their cached snapshot (members/authentication.py)
# and the time zone from their cached profile (members/reads.py).
TOKENS_PAGE_QUERIES = 1
# The service: savepoint, token inserted, activity recorded, savepoint released; then the
# listed tokens. (The service invalidates the member's cache on commit, which a test's
# transaction never reaches: in production the member and the time zone are read once more, 7.)
TOKEN_CREATE_QUERIES = 5
# The token (ownership).
REVOKE_CONFIRM_QUERIES = 1
# The token (ownership); the service: savepoint, conditional update, activity recorded,
# savepoint released.
REVOKE_QUERIES = 5

PLAIN_TOKEN = re.compile(r"mpt_[0-9A-Za-z]{36}")


@pytest.fixture(autouse=True)
def _render_every_page(settings) -> None:
    """These tests pin what a render of the page costs and shows; serving it from the page cache
    is tested in tests/core/test_pagecache.py and tests/portal/test_cache_invalidation.py."""
    settings.PAGE_CACHE = False


@pytest.fixture
def logged_in(client: Client, alice: Member) -> Client:
    client.force_login(alice)
    client.get("/tokens/")  # the session's idle clock is set on the first request
    return client


def _token(member: Member, name: str = "laptop", expires_at: dt.datetime | None = None) -> ApiToken:
    token, _ = create_api_token(member=member, name=name, scopes=[TokenScope.READ], expires_at=expires_at)
    return token


def _text_columns_containing(needle: str) -> list[str]:
    """Every text-like column of every table that holds `needle`, as `table.column`."""
    found = []
    text_fields = (models.CharField, models.TextField, models.JSONField)
    with connection.cursor() as cursor:
        for model in apps.get_models():
            table = model._meta.db_table
            for field in model._meta.concrete_fields:
                if not isinstance(field, text_fields):
                    continue
                column = connection.ops.quote_name(str(field.column))
                cursor.execute(
                    f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)} WHERE CAST({column} AS TEXT) LIKE %s",  # noqa: S608
                    [f"%{needle}%"],
                )
                if cursor.fetchone()[0]:
                    found.append(f"{table}.{field.column}")
    return found


def test_a_created_token_is_shown_once_and_only_its_hash_is_stored(logged_in: Client, alice: Member):
    response = logged_in.post("/tokens/", {"name": "backup script", "scopes": ["read", "write"], "expiry": "90"})

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]
    assert "messages" not in response.cookies  # not carried to another request either
    body = response.content.decode()
    assert "Copy it now: it won't be shown again." in body
    [plain] = set(PLAIN_TOKEN.findall(body))
    assert tokens.is_well_formed(plain)
    token = ApiToken.objects.get(member=alice)
    assert token.token_hash == tokens.hash_token(plain)
    assert (token.name, token.scopes) == ("backup script", ["read", "write"])

    later = logged_in.get("/tokens/").content.decode()

    assert plain not in later
    assert f"{token.prefix}…{token.last_chars}" in later
    assert _text_columns_containing(plain) == []
    assert all(plain not in str(session.get_decoded()) for session in Session.objects.all())


def test_the_chosen_expiry_is_applied(logged_in: Client, alice: Member):
    logged_in.post("/tokens/", {"name": "month", "scopes": ["read"], "expiry": "30"})
    logged_in.post("/tokens/", {"name": "forever", "scopes": ["read"], "expiry": "never"})

    month = ApiToken.objects.get(member=alice, name="month")
    assert month.expires_at is not None
    assert abs(month.expires_at - (timezone.now() + dt.timedelta(days=30))) < dt.timedelta(minutes=1)
    assert ApiToken.objects.get(member=alice, name="forever").expires_at is None


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"name": "no scope", "expiry": "90"}, "Choose at least one scope."),
        ({"name": "bad scope", "scopes": ["admin"], "expiry": "90"}, "Select a valid choice. admin is not one of"),
        ({"name": "", "scopes": ["read"], "expiry": "90"}, "This field is required."),
        ({"name": "bad expiry", "scopes": ["read"], "expiry": "7"}, "Select a valid choice. 7 is not one of"),
    ],
)
def test_a_form_error_creates_nothing(logged_in: Client, alice: Member, data: dict[str, object], error: str):
    activity_before = ActivityLog.objects.filter(member=alice).count()

    response = logged_in.post("/tokens/", data)

    assert response.status_code == 200
    body = response.content.decode()
    assert error in body
    assert "No token was created." in body
    assert not PLAIN_TOKEN.search(body)
    assert not ApiToken.objects.exists()
    assert ActivityLog.objects.filter(member=alice).count() == activity_before


def test_the_list_shows_each_tokens_status_newest_first(logged_in: Client, alice: Member):
    now = timezone.now()
    expired = _token(alice, "expired", expires_at=now - dt.timedelta(days=2))
    revoked = _token(alice, "revoked")
    revoke_api_token(token=revoked)
    live = _token(alice, "live", expires_at=now + dt.timedelta(days=5))
    ancient = _token(alice, "ancient")
    ApiToken.objects.filter(pk=ancient.pk).update(revoked_at=now - dt.timedelta(days=40))

    response = logged_in.get("/tokens/")

    assert [token.name for token in response.context["tokens"]] == ["live", "revoked", "expired"]
    body = response.content.decode()
    assert '<span class="status status-live">Live</span>' in body
    assert '<span class="status status-revoked">Revoked</span>' in body
    assert '<span class="status status-expired">Expired</span>' in body
    assert "ancient" not in body  # ended more than 30 days ago
    assert f'href="/tokens/{live.pk}/revoke/"' in body
    assert f'href="/tokens/{revoked.pk}/revoke/"' not in body
    assert f"/tokens/{expired.pk}/revoke/" in body  # an expired token can still be revoked for good


def test_the_list_is_capped(logged_in: Client, alice: Member, django_assert_num_queries):
    ApiToken.objects.bulk_create(
        ApiToken(member=alice, name=f"t{i}", prefix="mpt_abcd", last_chars="wxyz", token_hash=f"{i:064x}")
        for i in range(TOKENS_LISTED + 5)
    )

    with django_assert_num_queries(TOKENS_PAGE_QUERIES):
        response = logged_in.get("/tokens/")

    assert len(response.context["tokens"]) == TOKENS_LISTED
    assert f"Only your newest {TOKENS_LISTED} tokens are listed." in response.content.decode()


def test_page_query_counts_are_pinned(logged_in: Client, alice: Member, bob: Member, django_assert_num_queries):
    for i in range(5):
        _token(alice, f"script {i}", expires_at=timezone.now() + dt.timedelta(days=i + 1))
    revoke_api_token(token=_token(alice, "revoked"))
    _token(bob, "bob's")
    token = _token(alice, "to revoke")

    with django_assert_num_queries(TOKENS_PAGE_QUERIES):
        assert logged_in.get("/tokens/").status_code == 200
    with django_assert_num_queries(TOKEN_CREATE_QUERIES):
        assert logged_in.post("/tokens/", {"name": "new", "scopes": ["read"], "expiry": "30"}).status_code == 200
    with django_assert_num_queries(REVOKE_CONFIRM_QUERIES):
        assert logged_in.get(f"/tokens/{token.pk}/revoke/").status_code == 200
    with django_assert_num_queries(REVOKE_QUERIES):
        assert logged_in.post(f"/tokens/{token.pk}/revoke/").status_code == 302


def test_revoking_asks_for_confirmation_then_revokes(logged_in: Client, alice: Member):
    token = _token(alice, "ci runner")

    confirm = logged_in.get(f"/tokens/{token.pk}/revoke/")

    assert confirm.status_code == 200
    body = confirm.content.decode()
    assert "Revoke “ci runner”?" in body
    assert f'<form method="post" action="/tokens/{token.pk}/revoke/">' in body
    assert ApiToken.objects.live().filter(pk=token.pk).exists()  # a GET changes nothing

    response = logged_in.post(f"/tokens/{token.pk}/revoke/", REMOTE_ADDR="192.0.2.9", follow=True)

    assert response.redirect_chain == [("/tokens/", 302)]
    assert "Revoked “ci runner”." in response.content.decode()
    assert not ApiToken.objects.live().filter(pk=token.pk).exists()
    entry = ActivityLog.objects.get(member=alice, action=Action.TOKEN_REVOKED)
    assert entry.ip == "192.0.2.9"


def test_revoking_a_revoked_token_says_so(logged_in: Client, alice: Member):
    token = _token(alice, "twice")
    revoke_api_token(token=token)

    confirm = logged_in.get(f"/tokens/{token.pk}/revoke/").content.decode()
    response = logged_in.post(f"/tokens/{token.pk}/revoke/", follow=True)

    assert "This token was already revoked" in confirm
    assert "“twice” was already revoked." in response.content.decode()
    assert ActivityLog.objects.filter(member=alice, action=Action.TOKEN_REVOKED).count() == 1


def test_another_members_token_is_not_found(logged_in: Client, bob: Member):
    token = _token(bob, "bob's script")

    assert logged_in.get(f"/tokens/{token.pk}/revoke/").status_code == 404
    assert logged_in.post(f"/tokens/{token.pk}/revoke/").status_code == 404
    assert ApiToken.objects.live().filter(pk=token.pk).exists()
    assert not ActivityLog.objects.filter(action=Action.TOKEN_REVOKED).exists()
    assert "bob&#x27;s script" not in logged_in.get("/tokens/").content.decode()


def test_a_token_that_does_not_exist_is_not_found(logged_in: Client):
    assert logged_in.get("/tokens/999999/revoke/").status_code == 404


def test_an_anonymous_visitor_is_sent_to_log_in(client: Client, alice: Member):
    token = _token(alice)

    for path in ("/tokens/", f"/tokens/{token.pk}/revoke/"):
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"] == f"/accounts/login/?next={path}"
    assert client.post(f"/tokens/{token.pk}/revoke/").status_code == 302
    assert ApiToken.objects.live().filter(pk=token.pk).exists()
