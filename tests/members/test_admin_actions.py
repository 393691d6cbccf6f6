"""Staff actions in the admin: revoke a member's tokens, deactivate members, export to CSV.

Each is shown to have its effect, to be recorded in the activity log with the acting staff
member, and to be offered and run only for staff with the permission it needs."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse

import members.admin
import members.exports
from members.models import Action, ActivityLog, ApiToken, Member, MemberStatus, TokenScope
from members.services import create_api_token, create_member, record_activity, update_member
from tests.conftest import PASSWORD

MEMBERS = reverse("admin:members_member_changelist")


def staff_with(*codenames: str, email: str = "dave@example.com") -> Member:
    """A staff member (not a superuser) with only these permissions."""
    member = create_member(email=email, password=PASSWORD, is_staff=True)
    member.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return member


def tokens_of(member: Member, count: int = 2) -> list[str]:
    """`count` live tokens of `member`; returns their plain text."""
    return [
        create_api_token(member=member, name=f"script {i}", scopes=[TokenScope.READ], expires_at=None)[1]
        for i in range(count)
    ]


def run_action(client: Client, action: str, *members: Member, confirm: bool = True) -> Any:
    """Choose the action on the member list, then (with `confirm`) confirm it on the page it shows."""
    data = {"action": action, "_selected_action": [m.pk for m in members]}
    page = client.post(MEMBERS, {**data, "index": "0"})
    if not confirm:
        return page
    return client.post(MEMBERS, {**data, "confirm": "yes"}, follow=True)


def csv_rows(response: Any) -> list[list[str]]:
    assert isinstance(response, StreamingHttpResponse)
    body = b"".join(response.streaming_content).decode()  # type: ignore[arg-type]
    return list(csv.reader(io.StringIO(body)))


def bearer(plain: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {plain}"}


# --- Revoke all tokens ---------------------------------------------------------------------------


def test_revoking_all_tokens_asks_first_and_then_revokes_every_token_of_the_selected_members(
    client: Client, carol: Member, alice: Member, bob: Member
) -> None:
    alices = tokens_of(alice)
    bobs = tokens_of(bob, 1)
    client.force_login(carol)

    page = run_action(client, "revoke_all_tokens", alice, confirm=False)

    assert page.status_code == 200
    assert "alice@example.com" in page.content.decode()
    assert ApiToken.objects.live().filter(member=alice).count() == 2  # nothing yet

    response = run_action(client, "revoke_all_tokens", alice)

    assert "Revoked 2 tokens." in response.content.decode()
    assert not ApiToken.objects.live().filter(member=alice).exists()
    assert ApiToken.objects.live().filter(member=bob).count() == 1
    for plain in alices:
        assert client.get("/api/v1/me", headers=bearer(plain)).status_code == 401
    assert client.get("/api/v1/me", headers=bearer(bobs[0])).status_code == 200
    entries = ActivityLog.objects.filter(member=alice, action=Action.TOKEN_REVOKED)
    assert entries.count() == 2
    assert all(e.detail["actor"] == carol.pk and e.detail["actor_email"] == carol.email for e in entries)


def test_revoking_tokens_needs_the_permission_to_change_tokens(client: Client, alice: Member) -> None:
    tokens_of(alice)
    viewer = staff_with("view_member", "change_member", "view_apitoken")
    client.force_login(viewer)

    listed = client.get(MEMBERS)
    run_action(client, "revoke_all_tokens", alice)

    assert listed.status_code == 200
    assert "revoke_all_tokens" not in listed.content.decode()
    assert ApiToken.objects.live().filter(member=alice).count() == 2
    assert not ActivityLog.objects.filter(member=alice, action=Action.TOKEN_REVOKED).exists()


def test_staff_revoke_selected_tokens_from_the_token_list(
    client: Client, carol: Member, alice: Member, bob: Member
) -> None:
    tokens_of(alice)
    bobs, _ = create_api_token(member=bob, name="laptop", scopes=[TokenScope.READ], expires_at=None)
    client.force_login(carol)

    response = client.post(
        reverse("admin:members_apitoken_changelist"),
        {"action": "revoke_selected", "_selected_action": [bobs.pk], "index": "0"},
        follow=True,
    )

    assert "Revoked 1 token." in response.content.decode()
    bobs.refresh_from_db()
    assert bobs.revoked_at is not None
    assert ApiToken.objects.live().filter(member=alice).count() == 2
    entry = ActivityLog.objects.get(member=bob, action=Action.TOKEN_REVOKED)
    assert entry.detail == {"token_id": bobs.pk, "name": "laptop", "actor": carol.pk, "actor_email": carol.email}


def test_the_token_list_offers_revoking_only_to_staff_who_may_change_tokens(client: Client, alice: Member) -> None:
    token, _ = create_api_token(member=alice, name="laptop", scopes=[TokenScope.READ], expires_at=None)
    client.force_login(staff_with("view_apitoken"))

    listed = client.get(reverse("admin:members_apitoken_changelist"))
    client.post(
        reverse("admin:members_apitoken_changelist"),
        {"action": "revoke_selected", "_selected_action": [token.pk], "index": "0"},
    )

    assert "revoke_selected" not in listed.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is None


# --- Deactivate ----------------------------------------------------------------------------------


def test_deactivating_a_member_ends_their_sessions_and_tokens_at_once(
    client: Client, carol: Member, alice: Member, bob: Member, django_capture_on_commit_callbacks: Any
) -> None:
    alices_browser = Client()
    alices_browser.force_login(alice)
    assert alices_browser.get("/dashboard/").status_code == 200
    (plain,) = tokens_of(alice, 1)
    bobs_browser = Client()
    bobs_browser.force_login(bob)
    client.force_login(carol)

    with django_capture_on_commit_callbacks(execute=True):  # committed, as in production
        response = run_action(client, "deactivate_members", alice)

    assert "Deactivated 1 member." in response.content.decode()
    alice.refresh_from_db()
    assert alice.status == MemberStatus.DEACTIVATED
    # Her next request is logged out; her token is revoked, not just refused.
    assert alices_browser.get("/dashboard/")["Location"] == "/accounts/login/?next=/dashboard/"
    assert not ApiToken.objects.live().filter(member=alice).exists()
    assert client.get("/api/v1/me", headers=bearer(plain)).status_code == 401
    # bob is untouched.
    assert bobs_browser.get("/dashboard/").status_code == 200
    status = ActivityLog.objects.get(member=alice, action=Action.STATUS_CHANGED)
    assert status.detail == {"from": "active", "to": "deactivated", "actor": carol.pk, "actor_email": carol.email}
    revoked = ActivityLog.objects.get(member=alice, action=Action.TOKEN_REVOKED)
    assert revoked.detail["actor"] == carol.pk


def test_sessions_ended_by_deactivation_stay_ended_when_the_member_is_reactivated(
    client: Client, carol: Member, alice: Member
) -> None:
    alices_browser = Client()
    alices_browser.force_login(alice)
    client.force_login(carol)
    run_action(client, "deactivate_members", alice)

    alice.refresh_from_db()
    alice.status = MemberStatus.ACTIVE
    update_member(member=alice, fields=["status"], actor=carol)

    assert alices_browser.get("/dashboard/")["Location"] == "/accounts/login/?next=/dashboard/"
    # A fresh login works again.
    fresh = Client()
    fresh.force_login(alice)
    assert fresh.get("/dashboard/").status_code == 200


def test_staff_cannot_deactivate_themselves(client: Client, carol: Member, alice: Member) -> None:
    client.force_login(carol)

    response = run_action(client, "deactivate_members", carol, alice)

    html = response.content.decode()
    assert "Deactivated 1 member." in html
    assert "you cannot deactivate your own account" in html
    carol.refresh_from_db()
    assert carol.status == MemberStatus.ACTIVE
    assert client.get(MEMBERS).status_code == 200


def test_deactivating_needs_the_permission_to_change_members(client: Client, alice: Member) -> None:
    client.force_login(staff_with("view_member"))

    listed = client.get(MEMBERS)
    run_action(client, "deactivate_members", alice)

    assert "deactivate_members" not in listed.content.decode()
    alice.refresh_from_db()
    assert alice.status == MemberStatus.ACTIVE


def test_a_writing_action_refuses_more_members_than_the_limit(
    client: Client, carol: Member, alice: Member, bob: Member, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(members.admin, "MAX_MEMBERS_PER_ACTION", 1)
    client.force_login(carol)

    response = run_action(client, "deactivate_members", alice, bob)

    assert "Select at most 1 members for this action." in response.content.decode()
    assert Member.objects.filter(status=MemberStatus.DEACTIVATED).count() == 0


def test_member_page_offers_the_actions_as_buttons_for_that_member(
    client: Client, carol: Member, alice: Member
) -> None:
    client.force_login(carol)

    page = client.get(reverse("admin:members_member_change", args=[alice.pk])).content.decode()
    confirm = client.post(MEMBERS, {"action": "deactivate_members", "_selected_action": alice.pk})

    for action in ("comp_membership", "revoke_all_tokens", "deactivate_members"):
        assert f'name="action" value="{action}"' in page
    assert f'name="_selected_action" value="{alice.pk}"' in page
    assert confirm.status_code == 200
    assert confirm.context["title"] == "Deactivate members"


def test_the_member_list_keeps_the_comp_action_beside_the_member_actions(client: Client, carol: Member) -> None:
    client.force_login(carol)

    html = client.get(MEMBERS).content.decode()

    for action in ("comp_membership", "revoke_all_tokens", "deactivate_members", "export_csv"):
        assert f'value="{action}"' in html


# --- CSV export ----------------------------------------------------------------------------------


def test_exporting_selected_members_streams_a_csv_of_those_rows(
    client: Client, carol: Member, alice: Member, bob: Member
) -> None:
    client.force_login(carol)

    response: Any = client.post(MEMBERS, {"action": "export_csv", "_selected_action": [alice.pk], "index": "0"})

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="member-')
    rows = csv_rows(response)
    assert rows[0] == ["id", "email", "display name", "status", "tier", "staff", "joined", "last login"]
    assert [row[1] for row in rows[1:]] == ["alice@example.com"]
    assert rows[1][2:6] == ["Alice", "active", "free", "no"]
    entry = ActivityLog.objects.get(member=carol, action=Action.DATA_EXPORTED)
    assert entry.detail == {
        "model": "members.member",
        "rows": f"selected {alice.pk}",
        "actor": carol.pk,
        "actor_email": carol.email,
    }


def test_the_export_link_exports_the_list_as_filtered(
    client: Client, carol: Member, alice: Member, bob: Member
) -> None:
    bob.status = MemberStatus.SUSPENDED
    update_member(member=bob, fields=["status"], actor=carol)
    client.force_login(carol)
    export_url = reverse("admin:members_member_export")

    listed = client.get(MEMBERS, {"status__exact": "suspended"})
    response = client.get(export_url, {"status__exact": "suspended"})

    assert f'href="{export_url}?status__exact=suspended"' in listed.content.decode()
    assert [row[1] for row in csv_rows(response)[1:]] == ["bob@example.com"]
    entry = ActivityLog.objects.get(member=carol, action=Action.DATA_EXPORTED)
    assert entry.detail["rows"] == "list ?status__exact=suspended"


def test_cells_that_a_spreadsheet_would_run_as_formulas_are_quoted(client: Client, carol: Member) -> None:
    for i, name in enumerate(['=HYPERLINK("http://x")', "+1+1", "-2", "@SUM(A1)", "\tTab", "plain"]):
        create_member(email=f"m{i}@example.com", password=None, display_name=name)
    client.force_login(carol)

    rows = csv_rows(client.get(reverse("admin:members_member_export"), {"q": "m"}))

    names = sorted(row[2] for row in rows[1:])
    assert names == sorted(['\'=HYPERLINK("http://x")', "'+1+1", "'-2", "'@SUM(A1)", "'\tTab", "plain"])


# Each starts like a formula once leading blanks and invisible characters are skipped and
# full-width forms read as their ASCII signs, as a spreadsheet does.
DISGUISED_FORMULAS = [
    '  =HYPERLINK("http://x")',
    "\t\t+1+1",
    "\n-2",
    "\r\n@SUM(A1)",
    "\u200b=1+1",
    "\u200c\u200d=1+1",
    "\ufeff=1+1",
    "\u2060+1",
    " \u200b \ufeff -1",
    '\uff1dHYPERLINK("http://x")',  # full-width equals
    "\uff0b1+1",  # full-width plus
    "\uff0d2",  # full-width minus
    "\uff20SUM(A1)",  # full-width at
    "\u3000\uff1d1",  # ideographic space, then full-width equals
]


@pytest.mark.parametrize("text", DISGUISED_FORMULAS)
def test_formulas_behind_blanks_invisible_or_full_width_characters_are_quoted_whole(text: str) -> None:
    assert members.exports.safe_cell(text) == "'" + text


@pytest.mark.parametrize("text", ["plain", "  plain", "\u200bplain", "Zoë", "a=b", "1-2", "mail@example.com", ""])
def test_ordinary_text_is_left_as_it_is(text: str) -> None:
    assert members.exports.safe_cell(text) == text


def test_the_export_quotes_disguised_formulas_in_every_cell(client: Client, carol: Member) -> None:
    for i, name in enumerate(DISGUISED_FORMULAS):
        create_member(email=f"m{i}@example.com", password=None, display_name=name)
    create_member(email="plain@example.com", password=None, display_name="\u00a0Plain name")
    client.force_login(carol)

    rows = csv_rows(client.get(reverse("admin:members_member_export"), {"q": ""}))

    names = {row[1]: row[2] for row in rows[1:]}
    assert [names[f"m{i}@example.com"] for i in range(len(DISGUISED_FORMULAS))] == [
        "'" + name for name in DISGUISED_FORMULAS
    ]
    assert names["plain@example.com"] == "\u00a0Plain name"


def test_exports_hold_no_secret(client: Client, carol: Member, alice: Member) -> None:
    token, _ = create_api_token(member=alice, name="laptop", scopes=[TokenScope.READ], expires_at=None)
    record_activity(member=alice, action=Action.LOGIN, ip="192.0.2.1", user_agent="=cmd|' /C calc'!A0")
    client.force_login(carol)

    bodies = {
        model: "\n".join(",".join(row) for row in csv_rows(client.get(reverse(f"admin:members_{model}_export"))))
        for model in ("member", "apitoken", "activitylog")
    }

    assert token.token_hash not in bodies["apitoken"]
    assert f"{token.prefix}…{token.last_chars}" in bodies["apitoken"]
    assert alice.password not in bodies["member"]
    assert "'=cmd|' /C calc'!A0" in bodies["activitylog"]


def test_export_needs_the_permission_to_view_the_list(client: Client, alice: Member) -> None:
    client.force_login(staff_with("view_apitoken"))

    response = client.get(reverse("admin:members_member_export"))
    listed = client.get(reverse("admin:members_apitoken_changelist"))

    assert response.status_code == 403
    assert listed.status_code == 200
    assert "Export CSV" in listed.content.decode()  # tokens they may view, and so export


def test_an_export_with_a_malformed_filter_goes_back_to_the_list(client: Client, carol: Member) -> None:
    client.force_login(carol)

    response = client.get(reverse("admin:members_member_export"), {"created_at__gte": "2026-02-30"})

    assert response.status_code == 302
    assert response["Location"] == f"{MEMBERS}?e=1"
