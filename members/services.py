"""Writes on members and their data. Views, admin, API and commands all call these."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.utils import timezone

from members import tokens
from members.models import Action, ActivityLog, ApiToken, Member, TokenScope


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
    return Member.objects.create_user(
        email, password, display_name=display_name, is_staff=is_staff, is_superuser=is_superuser
    )


def record_activity(
    *,
    member: Member,
    action: Action,
    ip: str | None = None,
    user_agent: str = "",
    detail: dict[str, Any] | None = None,
) -> ActivityLog:
    return ActivityLog.objects.create(
        member=member,
        action=action,
        ip=ip,
        user_agent=user_agent[:400],
        detail=detail or {},
    )


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
    record_activity(
        member=member,
        action=Action.TOKEN_CREATED,
        ip=ip,
        user_agent=user_agent,
        detail={"token_id": token.pk, "name": name},
    )
    return token, new.plain


@transaction.atomic
def revoke_api_token(*, token: ApiToken, ip: str | None = None, user_agent: str = "") -> bool:
    """Revoke a live token. Returns False if it was already revoked (by a concurrent call too:
    the conditional UPDATE lets exactly one caller win and record the activity)."""
    now = timezone.now()
    if not ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now):
        return False
    token.revoked_at = now
    record_activity(
        member=token.member,
        action=Action.TOKEN_REVOKED,
        ip=ip,
        user_agent=user_agent,
        detail={"token_id": token.pk, "name": token.name},
    )
    return True
