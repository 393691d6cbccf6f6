"""Session lifetime: idle and absolute timeouts, and suspended members losing their session."""

from __future__ import annotations

import datetime as dt

import time_machine
from django.conf import settings
from django.contrib.auth import SESSION_KEY

from members.models import MemberStatus

START = dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.UTC)


def test_a_session_ends_after_the_idle_timeout(client, alice):
    with time_machine.travel(START, tick=False) as clock:
        client.force_login(alice)
        assert client.get("/dashboard/").status_code == 200
        clock.shift(settings.SESSION_IDLE_TIMEOUT - 60)
        assert client.get("/dashboard/").status_code == 200  # activity resets the idle clock
        clock.shift(settings.SESSION_IDLE_TIMEOUT - 60)
        assert client.get("/dashboard/").status_code == 200
        clock.shift(settings.SESSION_IDLE_TIMEOUT + 1)
        response = client.get("/dashboard/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_a_session_ends_after_the_absolute_timeout_however_busy(client, alice):
    step = settings.SESSION_IDLE_TIMEOUT // 2
    with time_machine.travel(START, tick=False) as clock:
        client.force_login(alice)
        elapsed = 0
        while elapsed + step < settings.SESSION_ABSOLUTE_TIMEOUT:
            assert client.get("/dashboard/").status_code == 200
            clock.shift(step)
            elapsed += step
        clock.shift(settings.SESSION_ABSOLUTE_TIMEOUT - elapsed + 1)
        assert client.get("/dashboard/").status_code == 302


def test_a_suspended_member_is_logged_out_at_their_next_request(client, alice, django_capture_on_commit_callbacks):
    client.force_login(alice)
    assert client.get("/dashboard/").status_code == 200
    # Committed, as in production: the commit invalidates the member's cached snapshot.
    with django_capture_on_commit_callbacks(execute=True):
        alice.status = MemberStatus.SUSPENDED
        alice.save(update_fields=["status"])
    response = client.get("/dashboard/")
    assert response.status_code == 302
    assert SESSION_KEY not in client.session


def test_the_session_key_changes_at_login(client, alice):
    from allauth.account.models import EmailAddress

    EmailAddress.objects.create(user=alice, email=alice.email, verified=True, primary=True)
    client.get("/accounts/login/")
    before = client.session.session_key
    client.post("/accounts/login/", {"login": "alice@example.com", "password": "correct horse battery staple"})
    assert client.session.session_key != before
    assert client.session[SESSION_KEY] == str(alice.pk)
