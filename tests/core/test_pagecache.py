"""Render-once member pages (core/pagecache.py): a warm page comes from the cache at the cost of
the member's own query, with this response's CSRF token and CSP nonce; any write that changes
what it shows is on the next request. These tests commit for real (`transaction=True`), so the
services' `on_commit` invalidations run."""

from __future__ import annotations

import re

import pytest
from django.contrib.messages import constants
from django.test import Client

from core import pagecache
from core.cache import stats
from members.models import ApiToken, Member, TokenScope
from members.services import create_api_token, record_token_use, update_profile

pytestmark = pytest.mark.django_db(transaction=True)

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
NONCE = re.compile(r'nonce="([^"]+)"')


@pytest.fixture
def member_client(client: Client, alice: Member) -> Client:
    client.force_login(alice)
    client.get("/accounts/email/")  # the session's idle clock is set on the first request
    return client


def _hits() -> float:
    stats.flush()
    return stats.totals()["medium"]["hits"]


@pytest.mark.parametrize("path", ["/dashboard/", "/activity/", "/tokens/", "/profile/", "/subscription/"])
def test_a_warm_page_comes_from_the_cache_without_a_query(member_client: Client, path: str, django_assert_num_queries):
    first = member_client.get(path)
    hits = _hits()
    with django_assert_num_queries(0):  # the member too comes from the cache (members/authentication.py)
        second = member_client.get(path)

    assert _hits() == hits + 2  # the member's snapshot and the page
    assert second.status_code == 200
    assert "no-store" in second["Cache-Control"]

    # The same page, but for the per-response CSRF token and CSP nonce.
    def same(body: bytes) -> str:
        return NONCE.sub("", CSRF.sub("", body.decode()))

    assert same(first.content) == same(second.content)
    assert "pagecache-" not in second.content.decode()


def test_a_cached_pages_csrf_token_is_accepted(alice: Member):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    client.get("/dashboard/")
    page = client.get("/dashboard/").content.decode()  # from the cache
    [token, *_] = CSRF.findall(page)

    response = client.post("/accounts/logout/", {"csrfmiddlewaretoken": token})

    assert response.status_code == 302
    assert client.get("/dashboard/").status_code == 302  # logged out: to the login page


def test_each_cached_response_has_its_own_nonce_and_its_policy_names_it(member_client: Client, settings):
    settings.WEB_VITALS_SAMPLE_RATE = 1.0  # base.html's script tag carries the nonce
    member_client.get("/dashboard/")
    nonces = []
    for _ in range(2):
        response = member_client.get("/dashboard/")
        [nonce] = NONCE.findall(response.content.decode())
        assert f"'nonce-{nonce}'" in response["Content-Security-Policy"]
        nonces.append(nonce)
    assert nonces[0] != nonces[1]


def test_a_profile_change_shows_on_every_page_at_the_next_request(member_client: Client, alice: Member):
    for path in ("/dashboard/", "/profile/"):
        member_client.get(path)

    update_profile(member=alice, display_name="Alicia", bio="", time_zone="Asia/Tokyo", email_updates=False)

    assert "Welcome, Alicia<" in member_client.get("/dashboard/").content.decode()
    assert 'value="Alicia"' in member_client.get("/profile/").content.decode()


def test_a_created_token_and_its_use_show_on_the_next_tokens_page(member_client: Client, alice: Member):
    member_client.get("/tokens/")
    token, _plain = create_api_token(member=alice, name="deploy bot", scopes=[TokenScope.READ], expires_at=None)

    def row() -> str:
        return member_client.get("/tokens/").content.decode().split("deploy bot", 1)[1].split("</tr>")[0]

    unused = row()
    assert unused.count("Never") == 2  # never expires, never used

    record_token_use(token=ApiToken.objects.get(pk=token.pk), ip="203.0.113.9")  # an UPDATE: no signal

    used = row()
    assert used.count("Never") == 1  # still never expires; used now
    assert used.count("<time datetime=") == unused.count("<time datetime=") + 1


def test_a_write_around_the_services_shows_too(member_client: Client, alice: Member):
    member_client.get("/profile/")
    profile = alice.profile
    profile.display_name = "Set in the admin"
    profile.save()  # a plain ORM save, as the admin or a shell makes it

    assert 'value="Set in the admin"' in member_client.get("/profile/").content.decode()


def test_a_flash_message_is_shown_by_a_render_and_never_cached(member_client: Client):
    member_client.get("/activity/")
    shown = member_client.get("/activity/", {"before": "not-a-cursor"})  # the view warns
    assert "That page link is not valid" in shown.content.decode()

    again = member_client.get("/activity/", {"before": "not-a-cursor"}).content.decode()
    assert "That page link is not valid" in again  # rendered again, not a copy of the first


def test_a_message_waiting_from_a_redirect_is_shown_on_a_cached_page(member_client: Client, alice: Member):
    member_client.get("/tokens/")
    token, _ = create_api_token(member=alice, name="old", scopes=[TokenScope.READ], expires_at=None)
    member_client.get("/tokens/")  # cached again, with the new token

    response = member_client.post(f"/tokens/{token.pk}/revoke/", follow=True)

    assert response.redirect_chain[-1][0] == "/tokens/"
    assert any(message.level == constants.SUCCESS for message in response.context["messages"])
    assert "Revoked “old”" in response.content.decode()


def test_with_the_page_cache_off_every_page_renders(member_client: Client, settings, django_assert_num_queries):
    settings.PAGE_CACHE = False
    member_client.get("/activity/")
    with django_assert_num_queries(1):  # a page of the log (the member comes from the cache)
        member_client.get("/activity/")


def test_a_release_that_changes_only_the_stylesheet_uses_new_keys(tmp_path, settings):
    # Pages inline the stylesheet under its hash (portal/inline.py): a page cached by the last
    # release would carry a stylesheet the new policy refuses.
    (tmp_path / "templates").mkdir()
    (tmp_path / "static" / "css").mkdir(parents=True)
    stylesheet = tmp_path / "static" / "css" / "portal.css"
    stylesheet.write_text("body { color: black; }\n")
    settings.BASE_DIR = tmp_path
    try:
        pagecache.release.cache_clear()
        before = pagecache.release()
        stylesheet.write_text("body { color: darkslategray; }\n")
        pagecache.release.cache_clear()
        assert pagecache.release() != before
    finally:
        pagecache.release.cache_clear()
