"""The members' API (`/api/v1/me`, `/activity`, `/tokens`): authentication, scopes, ownership,
query counts, validation and caching, as an integrator's script sees them."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.test import Client
from django.utils import timezone

from members import tokens
from members.models import Action, ActivityLog, ApiToken, Member, MemberStatus, Profile, TokenScope
from members.services import create_api_token, revoke_api_token, update_member

READ_WRITE = [TokenScope.READ, TokenScope.WRITE]

# Pinned query counts. "Warm": the token's last use was recorded in the last minute (so no
# UPDATE), its row is in the cache and so is the operation's response or cached read.
# The token with its member, one indexed lookup: on a token's first two uses (the first notes
# its member, the second keeps its row: members/authentication.py), and after its member's data
# changed; from then on, none.
AUTHENTICATE = 1
AUTHENTICATE_WARM = 0
RECORD_USE = 1  # UPDATE last_used_at, last_used_ip: the first request of each minute
ME_COLD = AUTHENTICATE + RECORD_USE + 1  # + the profile
ME_WARM = AUTHENTICATE_WARM  # the response from the cache
ACTIVITY_PAGE = AUTHENTICATE_WARM + 1  # + one keyset page, at any depth
TOKENS = AUTHENTICATE + 1  # + the member's tokens
# + SAVEPOINT, the profile locked for the merge, SAVEPOINT, the profile locked again by
# `update_profile`, UPDATE profile, INSERT activity, RELEASE, RELEASE. The four savepoint
# statements exist only because each test runs in a transaction; in production they are a
# BEGIN/COMMIT that Django does not count.
PATCH_ME = AUTHENTICATE_WARM + 8
# + the token, then in `revoke_api_token`: SAVEPOINT, UPDATE token, INSERT activity, RELEASE.
REVOKE = AUTHENTICATE + 1 + 4


def bearer(plain: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {plain}"}


def make_token(member: Member, scopes: list[TokenScope] | None = None, **kwargs: Any) -> tuple[ApiToken, str]:
    return create_api_token(
        member=member,
        name=kwargs.pop("name", "script"),
        scopes=READ_WRITE if scopes is None else scopes,
        expires_at=kwargs.pop("expires_at", None),
    )


@pytest.fixture
def alices_token(alice: Member) -> tuple[ApiToken, str]:
    return make_token(alice)


@pytest.fixture
def alices_plain(alices_token: tuple[ApiToken, str]) -> str:
    return alices_token[1]


def patch_me(client: Client, plain: str, body: Any, **extra: Any) -> Any:
    return client.patch(
        "/api/v1/me", data=json.dumps(body), content_type="application/json", headers=bearer(plain), **extra
    )


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code
    assert body["message"]
    return body


# --- Authentication --------------------------------------------------------------------------


def test_a_token_reads_its_members_profile(client: Client, alice: Member, alices_plain: str):
    response = client.get("/api/v1/me", headers=bearer(alices_plain))

    assert response.status_code == 200
    assert response.json() == {
        "email": "alice@example.com",
        "display_name": "Alice",
        "bio": "",
        "time_zone": "UTC",
        "email_updates": False,
        "tier": "free",
        "status": "active",
        "created_at": DjangoJSONEncoder().default(alice.created_at),
    }


def test_without_a_header_the_answer_is_not_authenticated(client: Client, db: None, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/api/v1/me")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Basic YWxpY2U6c2VjcmV0", "Token abc", "Bearer", "Bearer   ", "mpt_abc"])
def test_another_scheme_or_an_empty_bearer_is_not_authenticated(client: Client, db: None, header: str):
    response = client.get("/api/v1/me", HTTP_AUTHORIZATION=header)
    assert_error(response, 401, "not_authenticated")


def test_a_logged_in_browser_session_is_no_substitute_for_a_token(client: Client, alice: Member):
    client.force_login(alice)
    assert client.get("/dashboard/").status_code == 200  # the session works for the pages

    response = client.get("/api/v1/me")

    assert_error(response, 401, "not_authenticated")


@pytest.mark.parametrize(
    "query",
    ["token={plain}", "access_token={plain}", "api_key={plain}", "token=", "limit=5&note={plain}", "{plain}"],
)
def test_a_token_in_the_query_string_is_refused_even_beside_a_valid_header(
    client: Client, alices_plain: str, query: str, django_assert_num_queries
):
    with django_assert_num_queries(0):
        response = client.get("/api/v1/activity?" + query.format(plain=alices_plain), headers=bearer(alices_plain))
    body = assert_error(response, 401, "token_in_query")
    assert "Authorization" in body["message"]
    assert alices_plain not in response.content.decode()
    assert ApiToken.objects.get(last_chars=alices_plain[-4:]).last_used_at is None


def _mistyped(plain: str) -> str:
    position = 10
    return plain[:position] + ("A" if plain[position] != "A" else "B") + plain[position + 1 :]


@pytest.mark.parametrize(
    "make",
    [
        lambda plain: "not-a-token",
        lambda plain: plain[:-1],  # truncated
        lambda plain: plain + "x",
        lambda plain: "ghp_" + plain[4:],
        _mistyped,  # the checksum no longer matches
        lambda plain: plain[:-1] + "!",
    ],
    ids=["garbage", "truncated", "too-long", "other-prefix", "wrong-checksum", "bad-character"],
)
def test_a_malformed_token_is_refused_without_a_query(
    client: Client, alices_plain: str, make: Any, django_assert_num_queries
):
    with django_assert_num_queries(0):
        response = client.get("/api/v1/me", headers=bearer(make(alices_plain)))
    body = assert_error(response, 401, "invalid_token")
    assert 'error="invalid_token"' in response["WWW-Authenticate"]
    assert body["details"] is None


def test_an_unknown_well_formed_token_costs_one_query(client: Client, db: None, django_assert_num_queries):
    with django_assert_num_queries(1):
        response = client.get("/api/v1/me", headers=bearer(tokens.generate().plain))
    assert_error(response, 401, "invalid_token")


def test_expired_and_revoked_tokens_are_refused_with_the_same_answer(client: Client, alice: Member):
    unknown = tokens.generate().plain
    _, expired = make_token(alice, expires_at=timezone.now() - dt.timedelta(seconds=1))
    revoked_token, revoked = make_token(alice)
    revoke_api_token(token=revoked_token)

    answers = [client.get("/api/v1/me", headers=bearer(plain)) for plain in (unknown, expired, revoked)]

    for response in answers:
        assert_error(response, 401, "invalid_token")
    assert len({response.content for response in answers}) == 1


@pytest.mark.parametrize("status", [MemberStatus.SUSPENDED, MemberStatus.DEACTIVATED])
def test_the_token_of_a_member_who_is_not_active_is_refused(
    client: Client, alice: Member, alices_plain: str, status: MemberStatus
):
    alice.status = status
    update_member(member=alice, fields=["status"])

    assert_error(client.get("/api/v1/me", headers=bearer(alices_plain)), 401, "invalid_token")


def test_a_token_with_only_the_read_scope_cannot_write(client: Client, alice: Member, bob: Member):
    _, read_only = make_token(alice, [TokenScope.READ])
    alices_other, _ = make_token(alice)

    response = patch_me(client, read_only, {"display_name": "Mallory"})
    body = assert_error(response, 403, "insufficient_scope")
    assert "write" in body["message"]
    assert 'error="insufficient_scope"' in response["WWW-Authenticate"]
    assert Profile.objects.get(member=alice).display_name == "Alice"

    assert_error(
        client.delete(f"/api/v1/tokens/{alices_other.pk}", headers=bearer(read_only)), 403, "insufficient_scope"
    )
    assert ApiToken.objects.live().filter(pk=alices_other.pk).exists()

    assert client.get("/api/v1/me", headers=bearer(read_only)).status_code == 200


def test_a_token_with_only_the_write_scope_cannot_read(client: Client, alice: Member):
    _, write_only = make_token(alice, [TokenScope.WRITE])

    for path in ("/api/v1/me", "/api/v1/activity", "/api/v1/tokens", "/api/v1/subscription", "/api/v1/plans"):
        assert_error(client.get(path, headers=bearer(write_only)), 403, "insufficient_scope")
    assert patch_me(client, write_only, {"bio": "Writes only."}).status_code == 200


def test_the_scheme_name_is_case_insensitive(client: Client, alices_plain: str):
    assert client.get("/api/v1/me", HTTP_AUTHORIZATION=f"bearer {alices_plain}").status_code == 200


# --- Last use --------------------------------------------------------------------------------


def test_the_last_use_is_recorded_at_most_once_a_minute(
    client: Client, alices_token: tuple[ApiToken, str], django_assert_num_queries, monkeypatch: pytest.MonkeyPatch
):
    token, plain = alices_token
    # Mid-minute, so the first two requests fall in the same minute window.
    mid_minute = (time.time() // 60) * 60 + 20
    monkeypatch.setattr(time, "time", lambda: mid_minute)  # what the rate limiter reads
    with django_assert_num_queries(ME_COLD):
        client.get("/api/v1/me", REMOTE_ADDR="203.0.113.9", headers=bearer(plain))
    token.refresh_from_db()
    first_use = token.last_used_at
    assert first_use is not None
    assert token.last_used_ip == "203.0.113.9"

    # Within the minute: no write, whatever the address (the token's second use reads its row).
    with django_assert_num_queries(AUTHENTICATE):
        client.get("/api/v1/me", REMOTE_ADDR="198.51.100.4", headers=bearer(plain))
    token.refresh_from_db()
    assert (token.last_used_at, token.last_used_ip) == (first_use, "203.0.113.9")

    # The first request of the next minute window of the token's rate limit writes.
    monkeypatch.setattr(time, "time", lambda: mid_minute + 60)
    with django_assert_num_queries(ME_WARM + RECORD_USE):
        client.get("/api/v1/me", REMOTE_ADDR="198.51.100.4", headers=bearer(plain))
    token.refresh_from_db()
    assert token.last_used_ip == "198.51.100.4"
    assert token.last_used_at is not None and token.last_used_at >= first_use


def test_recording_the_last_use_writes_only_those_two_columns(
    client: Client, alices_token: tuple[ApiToken, str], django_assert_num_queries
):
    _, plain = alices_token
    with django_assert_num_queries(ME_COLD) as captured:
        client.get("/api/v1/me", headers=bearer(plain))
    updates = [query["sql"] for query in captured.captured_queries if query["sql"].startswith("UPDATE")]
    assert len(updates) == 1
    assert "last_used_at" in updates[0] and "last_used_ip" in updates[0]
    assert "name" not in updates[0].split("WHERE")[0] and "revoked_at" not in updates[0]


# --- /me -------------------------------------------------------------------------------------


def test_me_is_cached_and_a_patch_shows_at_once(
    client: Client, alice: Member, alices_plain: str, django_assert_num_queries, django_capture_on_commit_callbacks
):
    with django_assert_num_queries(ME_COLD):
        first = client.get("/api/v1/me", headers=bearer(alices_plain))
    with django_assert_num_queries(AUTHENTICATE):  # the token's second use; the response from the cache
        again = client.get("/api/v1/me", headers=bearer(alices_plain))
    with django_assert_num_queries(ME_WARM):
        assert client.get("/api/v1/me", headers=bearer(alices_plain)).content == first.content
    assert first.content == again.content
    assert first["ETag"] == again["ETag"]

    # The test's transaction never commits: run the commit hooks (the cache invalidation) by hand.
    with django_assert_num_queries(PATCH_ME), django_capture_on_commit_callbacks(execute=True):
        patched = patch_me(client, alices_plain, {"display_name": "Alice Liddell", "time_zone": "Europe/London"})
    assert patched.status_code == 200
    assert patched.json()["display_name"] == "Alice Liddell"
    assert patched.json()["time_zone"] == "Europe/London"

    after = client.get("/api/v1/me", headers=bearer(alices_plain))
    assert after.json() == patched.json()
    assert after["ETag"] != first["ETag"]


def test_a_patch_changes_only_the_fields_sent_and_records_them(client: Client, alice: Member, alices_plain: str):
    patch_me(client, alices_plain, {"bio": "Line one\r\nline two", "email_updates": True}, REMOTE_ADDR="203.0.113.9")

    profile = Profile.objects.get(member=alice)
    assert profile.display_name == "Alice"
    assert profile.bio == "Line one\nline two"  # as the profile form saves it
    assert profile.preferences["email_updates"] is True
    entry = ActivityLog.objects.filter(member=alice, action=Action.PROFILE_UPDATED).get()
    assert entry.detail == {"fields": ["bio", "email_updates"]}
    assert entry.ip == "203.0.113.9"


def test_a_patch_that_changes_nothing_writes_nothing(client: Client, alice: Member, alices_plain: str):
    for body in ({}, {"display_name": "Alice"}):
        response = patch_me(client, alices_plain, body)
        assert response.status_code == 200
        assert response.json()["display_name"] == "Alice"
    assert not ActivityLog.objects.filter(member=alice, action=Action.PROFILE_UPDATED).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"time_zone": "Mars/Olympus_Mons"}, "time_zone"),
        ({"display_name": "x" * 81}, "display_name"),
        ({"bio": "x" * 2001}, "bio"),
        ({"display_name": "nul\x00"}, "display_name"),
        ({"display_name": 42}, "display_name"),
        ({"email_updates": "yes"}, "email_updates"),
        ({"bio": None}, "bio"),
        ({"displayname": "typo"}, "displayname"),
    ],
)
def test_invalid_profile_input_is_a_422_naming_the_field(
    client: Client, alice: Member, alices_plain: str, body: dict[str, Any], field: str
):
    response = patch_me(client, alices_plain, body)

    error = assert_error(response, 422, "validation_error")
    assert [(item["field"], item["location"]) for item in error["details"]] == [(field, "body")]
    assert field in error["message"]
    assert Profile.objects.get(member=alice).display_name == "Alice"


def test_a_lone_surrogate_is_refused_not_stored(client: Client, alice: Member, alices_plain: str):
    response = client.patch(
        "/api/v1/me", data='{"bio": "\\ud800"}', content_type="application/json", headers=bearer(alices_plain)
    )
    error = assert_error(response, 422, "validation_error")
    assert error["details"][0]["field"] == "bio"


def test_a_member_keeps_a_time_zone_the_list_does_not_offer(client: Client, alice: Member, alices_plain: str):
    # The admin accepts any IANA name, aliases too; the form keeps the current one selectable.
    Profile.objects.filter(member=alice).update(time_zone="US/Eastern")

    response = patch_me(client, alices_plain, {"time_zone": "US/Eastern", "display_name": "Al"})

    assert response.status_code == 200
    assert response.json()["time_zone"] == "US/Eastern"


# --- /activity -------------------------------------------------------------------------------


def _add_rows(member: Member, count: int, *, same_instant: bool = False, action: Action | None = None) -> list[int]:
    """`count` rows, their ids newest first."""
    now = timezone.now()
    rows = ActivityLog.objects.bulk_create(
        ActivityLog(
            member=member,
            action=action or (Action.LOGIN if i % 3 else Action.TOKEN_CREATED),
            created_at=now if same_instant else now - dt.timedelta(seconds=count - i),
            ip="198.51.100.4",
            user_agent="curl/8.5",
            detail={"method": "password", "by": 7},
        )
        for i in range(count)
    )
    return [row.pk for row in sorted(rows, key=lambda row: (row.created_at, row.pk), reverse=True)]


@pytest.fixture
def quiet_alice(alice: Member, alices_plain: str, client: Client) -> str:
    """alice's token, used twice (so its last use is recorded and its row cached), with an
    empty activity log."""
    for _ in range(2):
        client.get("/api/v1/me", headers=bearer(alices_plain))
    ActivityLog.objects.filter(member=alice).delete()
    return alices_plain


@pytest.mark.parametrize("same_instant", [False, True], ids=["distinct-times", "one-instant"])
def test_paging_through_120_entries_takes_three_pages_without_gaps_or_repeats(
    client: Client, alice: Member, bob: Member, quiet_alice: str, same_instant: bool, django_assert_num_queries
):
    expected = _add_rows(alice, 120, same_instant=same_instant)
    _add_rows(bob, 30, same_instant=same_instant)
    seen: list[int] = []
    sizes = []
    url = "/api/v1/activity"
    while url:
        with django_assert_num_queries(ACTIVITY_PAGE):
            response = client.get(url, headers=bearer(quiet_alice))
        assert response.status_code == 200
        page = response.json()
        sizes.append(len(page["items"]))
        seen.extend(item["id"] for item in page["items"])
        url = f"/api/v1/activity?cursor={page['next_cursor']}" if page["next_cursor"] else ""

    assert sizes == [50, 50, 20]
    assert seen == expected


def test_an_entry_shows_its_action_time_and_origin_but_not_who_on_staff(
    client: Client, alice: Member, quiet_alice: str
):
    _add_rows(alice, 1, action=Action.LOGIN)

    item = client.get("/api/v1/activity", headers=bearer(quiet_alice)).json()["items"][0]

    assert item["action"] == "login"
    assert item["description"] == "Logged in"
    assert item["ip"] == "198.51.100.4"
    assert item["user_agent"] == "curl/8.5"
    assert item["detail"] == {"method": "password"}


def test_activity_filters_by_action_and_time_range(client: Client, alice: Member, quiet_alice: str):
    start = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    rows = ActivityLog.objects.bulk_create(
        ActivityLog(member=alice, action=action, created_at=start + dt.timedelta(hours=hour))
        for hour, action in enumerate([Action.LOGIN, Action.LOGOUT, Action.LOGIN, Action.LOGIN, Action.LOGOUT])
    )

    def ids(query: str) -> list[int]:
        response = client.get(f"/api/v1/activity?{query}", headers=bearer(quiet_alice))
        assert response.status_code == 200, response.content
        return [item["id"] for item in response.json()["items"]]

    assert ids("action=login") == [rows[3].pk, rows[2].pk, rows[0].pk]
    # `since` is inclusive, `until` exclusive; offsets are honoured (13:00+01:00 is 12:00Z).
    assert ids("since=2026-03-01T13:00:00Z&until=2026-03-01T15:00:00Z") == [rows[2].pk, rows[1].pk]
    assert ids("since=2026-03-01T13:00:00%2B01:00&until=2026-03-01T13:00:00Z&action=login") == [rows[0].pk]
    # At the calendar's ends, an offset can take a time past what UTC can show: still no error.
    assert len(ids("until=9999-12-31T23:59:59-05:00&since=0001-01-01T00:00:00%2B05:00")) == 5


def test_the_filters_apply_across_pages(client: Client, alice: Member, quiet_alice: str):
    _add_rows(alice, 30, action=Action.LOGIN)
    _add_rows(alice, 30, action=Action.LOGOUT)

    first = client.get("/api/v1/activity?action=logout&limit=20", headers=bearer(quiet_alice)).json()
    second = client.get(
        f"/api/v1/activity?action=logout&limit=20&cursor={first['next_cursor']}", headers=bearer(quiet_alice)
    )

    assert {item["action"] for item in first["items"] + second.json()["items"]} == {"logout"}
    assert len(second.json()["items"]) == 10
    assert second.json()["next_cursor"] is None


def test_another_members_activity_is_never_listed(client: Client, alice: Member, bob: Member, quiet_alice: str):
    _add_rows(bob, 5)
    assert client.get("/api/v1/activity", headers=bearer(quiet_alice)).json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=1.0", "limit"),
        ("limit=1e2", "limit"),
        ("action=rebooted", "action"),
        ("since=1772366400", "since"),
        ("since=2026-03-01", "since"),
        ("until=2026-03-01T12:00:00", "until"),  # no offset: ambiguous
        ("cursor=bm90LWEtY3Vyc29y", "cursor"),
        ("cursor=" + "A" * 65, "cursor"),
    ],
)
def test_invalid_activity_parameters_are_a_422_naming_them(client: Client, quiet_alice: str, query: str, field: str):
    response = client.get(f"/api/v1/activity?{query}", headers=bearer(quiet_alice))

    error = assert_error(response, 422, "validation_error")
    assert [(item["field"], item["location"]) for item in error["details"]] == [(field, "query")]


# --- /tokens ---------------------------------------------------------------------------------


def test_the_token_list_shows_the_members_tokens_but_never_a_secret(
    client: Client, alice: Member, bob: Member, alices_token: tuple[ApiToken, str], django_assert_num_queries
):
    token, plain = alices_token
    client.get("/api/v1/me", headers=bearer(plain))
    old, old_plain = make_token(alice, [TokenScope.READ], name="old laptop")
    revoke_api_token(token=old)
    long_gone, long_gone_plain = make_token(alice, name="long gone")
    ApiToken.objects.filter(pk=long_gone.pk).update(revoked_at=timezone.now() - dt.timedelta(days=31))
    _, bobs_plain = make_token(bob, name="bob's")

    with django_assert_num_queries(TOKENS):
        response = client.get("/api/v1/tokens", headers=bearer(plain))

    assert response.status_code == 200
    listed = response.json()
    assert [item["name"] for item in listed["items"]] == ["old laptop", "script"]
    current, revoked = listed["items"][1], listed["items"][0]
    assert current["id"] == token.pk
    assert current["current"] is True and current["live"] is True
    assert current["scopes"] == ["read", "write"]
    assert current["display"] == f"{token.prefix}…{token.last_chars}"
    assert current["last_used_at"] is not None
    assert revoked["live"] is False and revoked["revoked_at"] is not None and revoked["current"] is False
    assert listed["has_more"] is False
    body = response.content.decode()
    for secret in (plain, old_plain, long_gone_plain, bobs_plain, token.token_hash):
        assert secret not in body
    assert "token_hash" not in body


def test_revoking_a_token_takes_effect_at_once(
    client: Client, alice: Member, alices_plain: str, django_assert_num_queries
):
    other, other_plain = make_token(alice, name="ci")
    client.get("/api/v1/me", headers=bearer(alices_plain))

    with django_assert_num_queries(REVOKE):
        response = client.delete(f"/api/v1/tokens/{other.pk}", headers=bearer(alices_plain), REMOTE_ADDR="203.0.113.9")

    assert response.status_code == 204
    assert response.content == b""
    assert_error(client.get("/api/v1/me", headers=bearer(other_plain)), 401, "invalid_token")
    entry = ActivityLog.objects.filter(member=alice, action=Action.TOKEN_REVOKED).get()
    assert entry.detail["token_id"] == other.pk and entry.ip == "203.0.113.9"
    # Revoking it again changes nothing and still succeeds.
    assert client.delete(f"/api/v1/tokens/{other.pk}", headers=bearer(alices_plain)).status_code == 204
    assert ActivityLog.objects.filter(member=alice, action=Action.TOKEN_REVOKED).count() == 1


def test_a_token_can_revoke_itself(client: Client, alices_token: tuple[ApiToken, str]):
    token, plain = alices_token
    assert client.delete(f"/api/v1/tokens/{token.pk}", headers=bearer(plain)).status_code == 204
    assert_error(client.get("/api/v1/me", headers=bearer(plain)), 401, "invalid_token")


def test_another_members_token_is_not_found_and_stays_live(
    client: Client, alice: Member, bob: Member, alices_plain: str
):
    bobs_token, bobs_plain = make_token(bob)
    missing_id = ApiToken.objects.order_by("-pk").values_list("pk", flat=True)[0] + 1000

    bobs = client.delete(f"/api/v1/tokens/{bobs_token.pk}", headers=bearer(alices_plain))
    missing = client.delete(f"/api/v1/tokens/{missing_id}", headers=bearer(alices_plain))

    assert_error(bobs, 404, "not_found")
    assert bobs.content == missing.content  # nothing tells the two apart
    assert ApiToken.objects.live().filter(pk=bobs_token.pk).exists()
    assert client.get("/api/v1/me", headers=bearer(bobs_plain)).json()["email"] == "bob@example.com"
    assert not ActivityLog.objects.filter(member=bob, action=Action.TOKEN_REVOKED).exists()
    # bob's token is not in alice's list either.
    assert bobs_token.pk not in [
        item["id"] for item in client.get("/api/v1/tokens", headers=bearer(alices_plain)).json()["items"]
    ]


@pytest.mark.parametrize("token_id", ["0", "-1", "abc", "1.0", "99999999999999999999"])
def test_a_token_id_that_cannot_exist_is_a_422(client: Client, alices_plain: str, token_id: str):
    response = client.delete(f"/api/v1/tokens/{token_id}", headers=bearer(alices_plain))
    error = assert_error(response, 422, "validation_error")
    assert error["details"][0]["field"] == "token_id"
    assert error["details"][0]["location"] == "path"
