"""Writes on members and their data. Views, admin, API and commands all call these."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from core.cache import MEMBER, STAFF, Namespace, invalidate_on_commit
from members import tokens
from members.models import Action, ActivityLog, ApiToken, Member, MemberStatus, Profile, TokenScope

# When the member's tokens were last used (`record_token_use`); scope: the member's id.
TOKEN_USE = Namespace("token_use")


def create_member(
    *,
    email: str,
    password: str | None,
    display_name: str = "",
    is_staff: bool = False,
    is_superuser: bool = False,
) -> Member:
    """A member with their profile (see `MemberManager.create_user`). A `None` password makes
    the account unusable for password login until one is set."""
    member = Member.objects.create_user(
        email, password, display_name=display_name, is_staff=is_staff, is_superuser=is_superuser
    )
    invalidate_on_commit(STAFF)
    return member


def record_activity(
    *,
    member: Member,
    action: Action,
    ip: str | None = None,
    user_agent: str = "",
    detail: dict[str, Any] | None = None,
) -> ActivityLog:
    entry = ActivityLog.objects.create(
        member=member,
        action=action,
        ip=ip,
        user_agent=user_agent[:400],
        detail=detail or {},
    )
    # The dashboard shows the latest entries.
    invalidate_on_commit(MEMBER, member.pk)
    return entry


@transaction.atomic
def create_api_token(
    *,
    member: Member,
    name: str,
    scopes: list[TokenScope],
    expires_at: dt.datetime | None,
    ip: str | None = None,
    user_agent: str = "",
) -> tuple[ApiToken, str]:
    """Create a token and return it with its plain text, which is never stored or shown again."""
    new = tokens.generate()
    token = ApiToken.objects.create(
        member=member,
        name=name,
        prefix=new.prefix,
        last_chars=new.last_chars,
        token_hash=new.hash,
        scopes=sorted({str(scope) for scope in scopes}),
        expires_at=expires_at,
    )
    record_activity(  # also invalidates what is cached for the member
        member=member,
        action=Action.TOKEN_CREATED,
        ip=ip,
        user_agent=user_agent,
        detail={"token_id": token.pk, "name": name},
    )
    return token, new.plain


def record_token_use(*, token: ApiToken, ip: str | None) -> None:
    """When and from where `token` was last used: one conditional UPDATE by primary key, never a
    read-modify-write of the row. An address the column cannot store (none, for a Unix socket,
    or a peer name) is recorded as unknown."""
    try:
        ipaddress.ip_address(ip or "")
    except ValueError:
        ip = None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now(), last_used_ip=ip)
    # Only the tokens page shows it: its own namespace, so API use leaves the rest cached.
    invalidate_on_commit(TOKEN_USE, token.member_id)


def actor_detail(actor: Member | None) -> dict[str, Any]:
    """Who did it, for the detail of an activity entry that staff caused: the staff member's id
    and email (their email as it was then, should the account change or go)."""
    if actor is None:
        return {}
    return {"actor": actor.pk, "actor_email": actor.email}


@transaction.atomic
def revoke_api_token(
    *, token: ApiToken, ip: str | None = None, user_agent: str = "", actor: Member | None = None
) -> bool:
    """Revoke a live token. Returns False if it was already revoked (by a concurrent call too:
    the conditional UPDATE lets exactly one caller win and record the activity). `actor` is the
    staff member who revoked it, when it was not the token's owner."""
    now = timezone.now()
    if not ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now):
        return False
    token.revoked_at = now
    record_activity(  # also invalidates what is cached for the member
        member=token.member,
        action=Action.TOKEN_REVOKED,
        ip=ip,
        user_agent=user_agent,
        detail={"token_id": token.pk, "name": token.name, **actor_detail(actor)},
    )
    return True


@transaction.atomic
def revoke_member_api_tokens(
    *, member: Member, actor: Member | None, ip: str | None = None, user_agent: str = ""
) -> int:
    """Revoke every token of `member` that is not revoked yet (expired ones too, so none can
    come back), each recorded as `revoke_api_token` records it. Returns how many."""
    revoked = 0
    for token in ApiToken.objects.filter(member=member, revoked_at__isnull=True).select_related("member"):
        revoked += revoke_api_token(token=token, ip=ip, user_agent=user_agent, actor=actor)
    return revoked


@transaction.atomic
def update_profile(
    *,
    member: Member,
    display_name: str,
    bio: str,
    time_zone: str,
    email_updates: bool,
    ip: str | None = None,
    user_agent: str = "",
) -> list[str]:
    """Save the member's profile and return the names of the fields that changed.

    Records one `PROFILE_UPDATED` entry naming the changed fields, never their values (a bio
    may hold anything); nothing is written when nothing changed. The row is locked while it is
    compared and saved, so two saves at once cannot lose each other's preference keys.
    Values are expected clean (`members.forms.ProfileForm`)."""
    profile = Profile.objects.select_for_update().get(member=member)
    changed: list[str] = []
    columns: set[str] = set()
    for field, value in (("display_name", display_name), ("bio", bio), ("time_zone", time_zone)):
        if getattr(profile, field) != value:
            setattr(profile, field, value)
            changed.append(field)
            columns.add(field)
    if bool(profile.preferences.get("email_updates", False)) != email_updates:
        profile.preferences = {**profile.preferences, "email_updates": email_updates}
        changed.append("email_updates")
        columns.add("preferences")
    if not changed:
        return []
    profile.save(update_fields=[*sorted(columns), "updated_at"])
    record_activity(  # also invalidates what is cached for the member
        member=member,
        action=Action.PROFILE_UPDATED,
        ip=ip,
        user_agent=user_agent,
        detail={"fields": changed},
    )
    return changed


@transaction.atomic
def save_profile(*, profile: Profile, fields: list[str], actor: Member | None) -> list[str]:
    """Save the given fields of a profile as staff edit them in the admin (any preference key,
    not only those of the member's own form) and return those that really changed, compared
    with the row, locked meanwhile. Recorded like the member's own edit, one `PROFILE_UPDATED`
    entry naming the fields (never their values), with the staff member who made it; nothing is
    written when nothing changed."""
    stored = Profile.objects.select_for_update().filter(pk=profile.pk).values(*fields).first() or {}
    changed = sorted(name for name in set(fields) if stored.get(name) != getattr(profile, name))
    if not changed:
        return []
    profile.save(update_fields=[*changed, "updated_at"])
    record_activity(  # also invalidates what is cached for the member
        member=profile.member,
        action=Action.PROFILE_UPDATED,
        detail={"fields": changed, **actor_detail(actor)},
    )
    return changed


@transaction.atomic
def set_member_tier(*, member: Member, tier: str) -> bool:
    """Give `member` the tier that their billing grants (`subscriptions.services` decides it).
    True when it changed; what is cached for the member and the staff numbers follow."""
    if member.tier == tier:
        return False
    member.tier = tier
    member.save(update_fields=["tier"])
    invalidate_on_commit(MEMBER, member.pk)
    invalidate_on_commit(STAFF)
    return True


# The fields that grant access to the admin and what may be done there.
PRIVILEGE_FLAGS = ("is_staff", "is_superuser")
PRIVILEGE_RELATIONS = ("groups", "user_permissions")
PRIVILEGE_FIELDS = PRIVILEGE_FLAGS + PRIVILEGE_RELATIONS


def _check_may_change_privileges(actor: Member | None) -> None:
    """Only a superuser changes privileges (`actor=None`: code that runs without a person,
    such as a management command). The admin shows these fields read-only to everyone else;
    this refuses them again here, so no other caller can grant what the admin would not."""
    if actor is not None and not actor.is_superuser:
        raise PermissionDenied("Only a superuser may change staff privileges.")


@transaction.atomic
def update_member(*, member: Member, fields: list[str], actor: Member | None = None) -> None:
    """Save the given fields of a member (as staff edit them in the admin). A status change is
    recorded in the member's activity log with the staff member who made it, and so is a
    change of staff or superuser status, which only a superuser may make."""
    previous = Member.objects.filter(pk=member.pk).values("status", *PRIVILEGE_FLAGS).first() or {}
    flags = {
        name: {"from": previous[name], "to": getattr(member, name)}
        for name in PRIVILEGE_FLAGS
        if name in fields and name in previous and previous[name] != getattr(member, name)
    }
    if flags:
        _check_may_change_privileges(actor)
    member.save(update_fields=fields)
    invalidate_on_commit(MEMBER, member.pk)
    invalidate_on_commit(STAFF)
    if "status" in fields and previous.get("status") != member.status:
        record_activity(
            member=member,
            action=Action.STATUS_CHANGED,
            detail={"from": previous.get("status"), "to": MemberStatus(member.status).value, **actor_detail(actor)},
        )
    if flags:
        record_activity(member=member, action=Action.PRIVILEGES_CHANGED, detail={**flags, **actor_detail(actor)})


@transaction.atomic
def set_member_privileges(
    *,
    member: Member,
    groups: Iterable[Group] | None = None,
    user_permissions: Iterable[Permission] | None = None,
    actor: Member | None,
) -> None:
    """Replace the member's groups and/or permissions (None leaves that one alone). What was
    added and removed is recorded in their activity log with the superuser who did it, by name
    (`members.change_member`, a group's name), as it was then; nothing is written when nothing
    changed."""
    detail: dict[str, Any] = {}
    wanted: dict[str, Iterable[Group] | Iterable[Permission] | None] = {
        "groups": groups,
        "user_permissions": user_permissions,
    }
    for name, values in wanted.items():
        if values is None:
            continue
        current = member.groups.all() if name == "groups" else member.user_permissions.select_related("content_type")
        before = {row.pk: _privilege_name(row) for row in current}
        after = {row.pk: _privilege_name(row) for row in values}
        if before.keys() == after.keys():
            continue
        _check_may_change_privileges(actor)
        getattr(member, name).set(list(after))
        detail[name] = {
            "added": sorted(after[pk] for pk in after.keys() - before.keys()),
            "removed": sorted(before[pk] for pk in before.keys() - after.keys()),
        }
    if detail:
        invalidate_on_commit(STAFF)
        record_activity(member=member, action=Action.PRIVILEGES_CHANGED, detail={**detail, **actor_detail(actor)})


def _privilege_name(row: Group | Permission) -> str:
    if isinstance(row, Permission):
        return f"{row.content_type.app_label}.{row.codename}"
    return row.name


@transaction.atomic
def deactivate_member(*, member: Member, actor: Member, ip: str | None = None, user_agent: str = "") -> int:
    """Close a member's account at once: status `deactivated`, every session ended, every API
    token revoked. Returns how many tokens were revoked.

    Sessions cannot be found by member (they are keyed by a random id), so they are ended
    through the hash each one holds: moving `session_epoch` changes it, and Django logs the
    session out on its next request (it would refuse an inactive member anyway, but this way a
    later reactivation does not bring old sessions back). The member row is locked so two
    staff deactivating at once record one status change. Their subscription is left alone:
    a paid one is cancelled in Stripe by staff, on purpose, not as a side effect."""
    if member.pk == actor.pk:
        raise ValueError("Staff cannot deactivate their own account.")
    locked = Member.objects.select_for_update().get(pk=member.pk)
    locked.status = MemberStatus.DEACTIVATED
    locked.session_epoch += 1
    update_member(member=locked, fields=["status", "session_epoch"], actor=actor)
    revoked = revoke_member_api_tokens(member=locked, actor=actor, ip=ip, user_agent=user_agent)
    member.status, member.session_epoch = locked.status, locked.session_epoch
    return revoked


def record_export(*, actor: Member, model: str, rows: str, ip: str | None = None, user_agent: str = "") -> None:
    """Note on the staff member's own log that they exported `model` rows from the admin;
    `rows` says which (the selected ids, or the list's filters)."""
    record_activity(
        member=actor,
        action=Action.DATA_EXPORTED,
        ip=ip,
        user_agent=user_agent,
        detail={"model": model, "rows": rows, **actor_detail(actor)},
    )


# --- Deleting an account ---------------------------------------------------------------------


@transaction.atomic
def schedule_deletion(*, member: Member, at: dt.datetime, ip: str | None = None, user_agent: str = "") -> bool:
    """The member asked to delete their account: it is deleted at `at` (by `delete_member`,
    from `purge_deleted_members`) unless they log in and keep it before then. Every session
    ends and every API token is revoked now, so nothing acts for them in the meantime. Returns
    False, changing nothing, if a deletion is already scheduled (a double submit)."""
    locked = Member.objects.select_for_update().get(pk=member.pk)
    if locked.deletion_scheduled_for is not None:
        return False
    locked.deletion_scheduled_for = at
    locked.session_epoch += 1
    update_member(member=locked, fields=["deletion_scheduled_for", "session_epoch"])
    revoked = revoke_member_api_tokens(member=locked, actor=None, ip=ip, user_agent=user_agent)
    record_activity(
        member=locked,
        action=Action.DELETION_REQUESTED,
        ip=ip,
        user_agent=user_agent,
        detail={"scheduled_for": at.isoformat(), "tokens_revoked": revoked},
    )
    member.deletion_scheduled_for, member.session_epoch = locked.deletion_scheduled_for, locked.session_epoch
    return True


@transaction.atomic
def cancel_deletion(*, member: Member, ip: str | None = None, user_agent: str = "") -> bool:
    """The member keeps their account. Returns False if no deletion was scheduled. Revoked
    tokens stay revoked: the member makes new ones."""
    locked = Member.objects.select_for_update().get(pk=member.pk)
    scheduled = locked.deletion_scheduled_for
    if scheduled is None:
        return False
    locked.deletion_scheduled_for = None
    update_member(member=locked, fields=["deletion_scheduled_for"])
    record_activity(
        member=locked,
        action=Action.DELETION_CANCELLED,
        ip=ip,
        user_agent=user_agent,
        detail={"was_scheduled_for": scheduled.isoformat()},
    )
    member.deletion_scheduled_for = None
    return True


def members_due_for_deletion(*, at: dt.datetime) -> list[int]:
    return list(
        Member.objects.filter(deletion_scheduled_for__lte=at)
        .order_by("deletion_scheduled_for")
        .values_list("pk", flat=True)
    )


@transaction.atomic
def delete_member(*, member_id: int, at: dt.datetime) -> bool:
    """Delete a member whose deletion is due, with everything that is theirs: profile, tokens,
    activity log, subscriptions, email addresses and second factors (by cascade). Returns False
    if it is not due (any more): they kept the account, or another run deleted it first."""
    member = Member.objects.select_for_update().filter(pk=member_id, deletion_scheduled_for__lte=at).first()
    if member is None:
        return False
    member.delete()
    invalidate_on_commit(MEMBER, member_id)
    invalidate_on_commit(STAFF)
    return True
