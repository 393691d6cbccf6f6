"""Who may change privileges (staff and superuser status, groups, permissions) and staff
credentials (email, password) in the admin: superusers only. Staff with `members.change_member`
see those fields read-only, a POST that sets them changes nothing, and a staff member's password
page answers 403. Every privilege change lands in the target's activity with the actor."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import reverse

from members.models import Action, ActivityLog, Member
from members.services import create_member, set_member_privileges, update_member
from tests.conftest import PASSWORD
from tests.members.test_admin import _change_form_data
from tests.members.test_admin_actions import staff_with

NEW_PASSWORD = "a new long passphrase"


def change_url(member: Member) -> str:
    return reverse("admin:members_member_change", args=[member.pk])


def password_url(member: Member) -> str:
    return reverse("admin:auth_user_password_change", args=[member.pk])


def support_staff() -> Member:
    """Dave: staff, not a superuser, with what the Deactivate action needs."""
    return staff_with("view_member", "change_member")


def with_privileges_set(data: dict[str, Any], group: Group) -> dict[str, Any]:
    """The change form's data with every privilege field set to grant everything."""
    return {
        **data,
        "is_staff": "on",
        "is_superuser": "on",
        "groups": [group.pk],
        "user_permissions": list(Permission.objects.values_list("pk", flat=True)),
    }


def privileges(member: Member) -> tuple[bool, bool, set[int], set[int]]:
    member.refresh_from_db()
    return (
        member.is_staff,
        member.is_superuser,
        set(member.groups.values_list("pk", flat=True)),
        set(member.user_permissions.values_list("pk", flat=True)),
    )


@pytest.fixture
def admins(db: None) -> Group:
    group = Group.objects.create(name="admins")
    group.permissions.set(Permission.objects.all())
    return group


# --- Staff who are not superusers --------------------------------------------------------------


@pytest.mark.parametrize("target", ["themselves", "a member", "another staff member"])
def test_staff_who_may_change_members_cannot_change_any_privilege_field(
    client: Client, alice: Member, admins: Group, target: str
) -> None:
    dave = support_staff()
    eve = staff_with("view_member", email="eve@example.com")
    member = {"themselves": dave, "a member": alice, "another staff member": eve}[target]
    before = privileges(member)
    client.force_login(dave)
    page = client.get(change_url(member))
    form = page.context["adminform"].form

    response = client.post(change_url(member), with_privileges_set(_change_form_data(page), admins))

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert not {"is_staff", "is_superuser", "groups", "user_permissions"} & set(form.fields)
    assert privileges(member) == before
    assert not ActivityLog.objects.filter(action=Action.PRIVILEGES_CHANGED).exists()


def test_staff_who_may_change_members_still_change_a_members_status_and_email(client: Client, alice: Member) -> None:
    dave = support_staff()
    client.force_login(dave)
    data = {**_change_form_data(client.get(change_url(alice))), "status": "suspended", "email": "alice@new.example"}

    response = client.post(change_url(alice), data)

    assert response.status_code == 302
    alice.refresh_from_db()
    assert (alice.status, alice.email) == ("suspended", "alice@new.example")


@pytest.mark.parametrize("target", ["themselves", "another staff member", "a superuser"])
def test_staff_who_may_change_members_cannot_change_a_staff_members_email(
    client: Client, carol: Member, target: str
) -> None:
    dave = support_staff()
    eve = staff_with("view_member", email="eve@example.com")
    member = {"themselves": dave, "another staff member": eve, "a superuser": carol}[target]
    email = member.email
    client.force_login(dave)
    data = {**_change_form_data(client.get(change_url(member))), "email": "attacker@evil.example"}

    response = client.post(change_url(member), data)

    assert response.status_code == 302
    member.refresh_from_db()
    assert member.email == email


@pytest.mark.parametrize("target", ["themselves", "another staff member", "a superuser"])
def test_staff_who_may_change_members_get_403_on_a_staff_members_password_page(
    client: Client, carol: Member, target: str
) -> None:
    dave = support_staff()
    eve = staff_with("view_member", email="eve@example.com")
    member = {"themselves": dave, "another staff member": eve, "a superuser": carol}[target]
    client.force_login(dave)

    page = client.get(password_url(member))
    post = client.post(password_url(member), {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    change_page = client.get(change_url(member)).content.decode()

    assert (page.status_code, post.status_code) == (403, 403)
    member.refresh_from_db()
    assert member.check_password(PASSWORD)
    assert 'href="../password/"' not in change_page
    assert "Only a superuser can change the password of a staff member." in change_page


def test_staff_who_may_change_members_still_set_a_members_password(client: Client, alice: Member) -> None:
    client.force_login(support_staff())

    response = client.post(password_url(alice), {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password(NEW_PASSWORD)


def test_the_services_refuse_privileges_from_staff_who_are_not_superusers(alice: Member, admins: Group) -> None:
    dave = support_staff()
    alice.is_superuser = True

    with pytest.raises(PermissionDenied):
        update_member(member=alice, fields=["is_superuser"], actor=dave)
    with pytest.raises(PermissionDenied):
        set_member_privileges(member=alice, groups=[admins], actor=dave)

    assert privileges(alice) == (False, False, set(), set())


# --- Superusers ----------------------------------------------------------------------------------


def test_a_superuser_changes_every_privilege_and_each_change_is_in_the_members_activity(
    client: Client, carol: Member, alice: Member, admins: Group
) -> None:
    client.force_login(carol)
    data = _change_form_data(client.get(change_url(alice)))
    change_member = Permission.objects.get(codename="change_member")

    response = client.post(
        change_url(alice),
        {**data, "is_staff": "on", "is_superuser": "on", "groups": [admins.pk], "user_permissions": [change_member.pk]},
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert privileges(alice) == (True, True, {admins.pk}, {change_member.pk})
    entries = list(ActivityLog.objects.filter(member=alice, action=Action.PRIVILEGES_CHANGED).order_by("id"))
    actor = {"actor": carol.pk, "actor_email": carol.email}
    assert [entry.detail for entry in entries] == [
        {"is_staff": {"from": False, "to": True}, "is_superuser": {"from": False, "to": True}, **actor},
        {
            "groups": {"added": ["admins"], "removed": []},
            "user_permissions": {"added": ["members.change_member"], "removed": []},
            **actor,
        },
    ]


def test_a_superuser_taking_privileges_away_is_recorded_too(carol: Member, admins: Group) -> None:
    dave = create_member(email="dave@example.com", password=None, is_staff=True)
    dave.groups.add(admins)

    dave.is_staff = False
    update_member(member=dave, fields=["is_staff"], actor=carol)
    set_member_privileges(member=dave, groups=[], user_permissions=[], actor=carol)

    details = list(
        ActivityLog.objects.filter(member=dave, action=Action.PRIVILEGES_CHANGED)
        .order_by("id")
        .values_list("detail", flat=True)
    )
    assert details == [
        {"is_staff": {"from": True, "to": False}, "actor": carol.pk, "actor_email": carol.email},
        {"groups": {"added": [], "removed": ["admins"]}, "actor": carol.pk, "actor_email": carol.email},
    ]


def test_saving_a_member_without_changing_privileges_records_none(client: Client, carol: Member, alice: Member) -> None:
    client.force_login(carol)

    response = client.post(change_url(alice), _change_form_data(client.get(change_url(alice))))

    assert response.status_code == 302
    assert not ActivityLog.objects.filter(action=Action.PRIVILEGES_CHANGED).exists()


def test_a_superuser_still_sets_a_staff_members_password_and_email(client: Client, carol: Member) -> None:
    dave = support_staff()
    client.force_login(carol)

    password = client.post(password_url(dave), {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    data = {**_change_form_data(client.get(change_url(dave))), "email": "dave@new.example"}
    change = client.post(change_url(dave), data)

    assert (password.status_code, change.status_code) == (302, 302)
    dave.refresh_from_db()
    assert dave.check_password(NEW_PASSWORD)
    assert dave.email == "dave@new.example"
