"""A member downloads their data, and deletes their account after a grace period; both are in
their activity log. Stripe's part (a paid subscription) is in tests/subscriptions/test_account_deletion.py."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.core import mail
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from members.models import Action, ActivityLog, ApiToken, Member, Profile, TokenScope
from members.services import create_api_token, record_activity, revoke_api_token, set_member_privileges
from subscriptions.models import Subscription
from subscriptions.services import comp_membership
from tests.conftest import PASSWORD, make_plan

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def actions_of(member: Member) -> list[str]:
    return list(ActivityLog.objects.for_member(member).order_by("id").values_list("action", flat=True))


def download(client: Client) -> tuple[Any, dict[str, Any]]:
    response: Any = client.post("/profile/export/")
    body = b"".join(response.streaming_content).decode()
    return response, json.loads(body)


# --- Export -----------------------------------------------------------------------------------


def test_a_member_downloads_everything_held_about_them_without_any_secret(client: Client, alice: Member) -> None:
    kept, kept_plain = create_api_token(member=alice, name="laptop", scopes=[TokenScope.READ], expires_at=None)
    gone, _ = create_api_token(member=alice, name="old script", scopes=[TokenScope.WRITE], expires_at=None)
    revoke_api_token(token=gone)
    comp_membership(member=alice, plan=make_plan(code="pro"), until=timezone.now() + dt.timedelta(days=30), actor=None)
    Profile.objects.filter(member=alice).update(bio="Rows boats.", preferences={"email_updates": True})
    client.force_login(alice)

    response, data = download(client)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].startswith('attachment; filename="member-portal-data-')
    assert data["format"] == 1
    assert data["account"]["email"] == "alice@example.com"
    assert data["account"]["tier"] == "pro"
    assert data["profile"] == {
        "display_name": "Alice",
        "bio": "Rows boats.",
        "time_zone": "UTC",
        "preferences": {"email_updates": True},
        "updated_at": data["profile"]["updated_at"],
    }
    assert [(s["plan"], s["status"]) for s in data["subscriptions"]] == [("Pro", "comped")]
    tokens = {token["name"]: token for token in data["api_tokens"]}
    assert tokens["laptop"]["shown_as"] == f"{kept.prefix}…{kept.last_chars}"
    assert tokens["laptop"]["revoked_at"] is None and tokens["old script"]["revoked_at"] is not None
    # Every activity entry, oldest first, ending with this download.
    assert [entry["action"] for entry in data["activity"]] == actions_of(alice)
    assert data["activity"][-1]["action"] == Action.ACCOUNT_EXPORTED
    # No secret: not the token, not its hash, not the password's hash.
    body = json.dumps(data)
    assert kept_plain not in body
    assert kept.token_hash not in body
    assert alice.password not in body


def test_the_download_says_staff_acted_but_never_which_staff_member(
    client: Client, alice: Member, carol: Member
) -> None:
    by_staff, _ = create_api_token(member=alice, name="laptop", scopes=[TokenScope.READ], expires_at=None)
    by_alice, _ = create_api_token(member=alice, name="phone", scopes=[TokenScope.READ], expires_at=None)
    revoke_api_token(token=by_staff, actor=carol)
    revoke_api_token(token=by_alice, actor=alice)
    comp_membership(member=alice, plan=make_plan(code="pro"), until=timezone.now() + dt.timedelta(days=30), actor=carol)
    set_member_privileges(member=alice, groups=[Group.objects.create(name="volunteers")], actor=carol)
    client.force_login(alice)

    _, data = download(client)

    body = json.dumps(data)
    assert carol.email not in body
    assert "actor_email" not in body
    details = {entry["action"]: entry["detail"] for entry in data["activity"] if entry["detail"].get("name") != "phone"}
    assert details[Action.TOKEN_REVOKED] == {"token_id": by_staff.pk, "name": "laptop", "actor": "staff"}
    assert details[Action.SUBSCRIPTION_CHANGED]["actor"] == "staff"
    assert details[Action.PRIVILEGES_CHANGED] == {
        "groups": {"added": ["volunteers"], "removed": []},
        "actor": "staff",
    }
    # What the member did themselves names no one.
    revoked_by_alice = [entry["detail"] for entry in data["activity"] if entry["detail"].get("name") == "phone"][-1]
    assert revoked_by_alice == {"token_id": by_alice.pk, "name": "phone"}


def test_the_download_reads_a_long_activity_log_in_chunks_with_a_fixed_number_of_queries(
    client: Client, alice: Member, django_assert_num_queries: Any
) -> None:
    ActivityLog.objects.bulk_create(ActivityLog(member=alice, action=Action.LOGIN) for _ in range(4500))
    client.force_login(alice)
    response: Any = client.post("/profile/export/")
    # Profile, subscriptions, tokens, and the 4,502 rows in one query read 2,000 at a time
    # (on PostgreSQL through a server-side cursor).
    with django_assert_num_queries(4):
        rows = json.loads(b"".join(response.streaming_content))["activity"]
    assert len(rows) == 4502  # with the login and the download themselves


def test_the_download_is_a_post_of_the_member_and_only_of_their_own_data(
    client: Client, alice: Member, bob: Member
) -> None:
    assert client.post("/profile/export/")["Location"] == "/accounts/login/?next=/profile/export/"
    client.force_login(bob)
    assert client.get("/profile/export/").status_code == 405
    _, data = download(client)
    assert data["account"]["email"] == "bob@example.com"
    assert "alice" not in json.dumps(data)
    assert Action.ACCOUNT_EXPORTED not in actions_of(alice)


# --- Deletion ---------------------------------------------------------------------------------


def test_a_wrong_password_deletes_nothing(client: Client, alice: Member) -> None:
    client.force_login(alice)

    response = client.post("/profile/delete/", {"password": "not my password"})

    assert response.status_code == 400
    assert "That is not your password." in response.content.decode()
    alice.refresh_from_db()
    assert alice.deletion_scheduled_for is None
    assert client.get("/dashboard/").status_code == 200


def test_asking_to_delete_ends_every_session_and_token_and_schedules_the_deletion(
    client: Client, alice: Member, django_capture_on_commit_callbacks: Any
) -> None:
    _, plain = create_api_token(member=alice, name="script", scopes=[TokenScope.READ], expires_at=None)
    elsewhere = Client()
    elsewhere.force_login(alice)
    client.force_login(alice)
    assert "Download my data" in client.get("/profile/").content.decode()

    with time_machine.travel(NOW, tick=False), django_capture_on_commit_callbacks(execute=True):
        response = client.post("/profile/delete/", {"password": PASSWORD}, follow=True)

    assert response.redirect_chain == [("/accounts/login/", 302)]
    assert "Your account will be deleted on 12 December 2026." in response.content.decode()
    alice.refresh_from_db()
    assert alice.deletion_scheduled_for == NOW + dt.timedelta(days=14)
    # Logged out here and on the other device; the token no longer opens the API.
    assert client.get("/dashboard/").status_code == 302
    assert elsewhere.get("/dashboard/").status_code == 302
    assert Client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {plain}").status_code == 401
    assert not ApiToken.objects.live().filter(member=alice).exists()
    assert actions_of(alice)[-3:] == [Action.TOKEN_REVOKED, Action.DELETION_REQUESTED, Action.LOGOUT]
    (message,) = mail.outbox
    assert message.to == ["alice@example.com"]
    assert message.subject == "[Member Portal] Your account will be deleted on 12 December 2026"


def test_during_the_grace_period_the_member_logs_in_and_keeps_their_account(
    client: Client, alice: Member, django_capture_on_commit_callbacks: Any
) -> None:
    client.force_login(alice)
    client.post("/profile/delete/", {"password": PASSWORD})
    alice.refresh_from_db()
    client.force_login(alice)  # logged out by the request, she logs in again

    page = client.get("/dashboard/").content.decode()
    assert "Your account will be deleted on" in page
    assert client.get("/profile/delete/")["Location"] == "/profile/"  # already asked
    with django_capture_on_commit_callbacks(execute=True):  # committed, as in production
        response = client.post("/profile/keep/", follow=True)

    assert "Your account will not be deleted." in response.content.decode()
    alice.refresh_from_db()
    assert alice.deletion_scheduled_for is None
    assert Action.DELETION_CANCELLED in actions_of(alice)
    assert "Your account will be deleted on" not in client.get("/dashboard/").content.decode()


def test_the_purge_deletes_due_accounts_with_everything_theirs_and_nothing_else(
    alice: Member, bob: Member, carol: Member
) -> None:
    comp_membership(member=alice, plan=make_plan(code="basic"), until=NOW + dt.timedelta(days=90), actor=None)
    create_api_token(member=alice, name="script", scopes=[TokenScope.READ], expires_at=None)
    record_activity(member=alice, action=Action.LOGIN)
    alice_id = alice.pk
    with time_machine.travel(NOW, tick=False):
        Client().force_login(alice)
        client = Client()
        client.force_login(alice)
        client.post("/profile/delete/", {"password": PASSWORD})
        client.force_login(bob)
        client.post("/profile/delete/", {"password": PASSWORD})
        bob.refresh_from_db()
        client.force_login(bob)  # logged out by the request: he logs in again and changes his mind
        client.post("/profile/keep/")

    with time_machine.travel(NOW + dt.timedelta(days=13, hours=23), tick=False):
        call_command("purge_deleted_members")
    assert Member.objects.filter(pk=alice_id).exists()  # not due yet

    with time_machine.travel(NOW + dt.timedelta(days=14, minutes=1), tick=False):
        call_command("purge_deleted_members")
        call_command("purge_deleted_members")  # a second run finds nothing more

    assert not Member.objects.filter(pk=alice_id).exists()
    for model in (Profile, ApiToken, ActivityLog, Subscription):
        assert not model.objects.filter(member_id=alice_id).exists(), model
    assert set(Member.objects.values_list("email", flat=True)) == {"bob@example.com", "carol@example.com"}


def test_the_purge_command_reports_what_it_deleted(alice: Member, capsys: pytest.CaptureFixture[str]) -> None:
    Member.objects.filter(pk=alice.pk).update(deletion_scheduled_for=timezone.now() - dt.timedelta(seconds=1))
    call_command("purge_deleted_members")
    assert capsys.readouterr().out == "Deleted 1 account whose deletion was due.\n"
    with pytest.raises(Member.DoesNotExist):
        alice.refresh_from_db()


def test_guessing_the_password_on_the_deletion_form_is_limited(client: Client, alice: Member) -> None:
    client.force_login(alice)
    for _ in range(5):
        assert client.post("/profile/delete/", {"password": "a guess"}).status_code == 400

    refused = client.post("/profile/delete/", {"password": PASSWORD})

    assert refused.status_code == 429
    assert "Too many attempts. Try again in" in refused.content.decode()
    alice.refresh_from_db()
    assert alice.deletion_scheduled_for is None
