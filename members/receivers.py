"""Activity log entries for account events that django-allauth and Django signal.

Connected in `MembersConfig.ready`. Writes of our own (profile, tokens) record their activity
in their service function instead. Also: every ORM save or delete of a member's rows invalidates
what is cached for them (`on_member_data_saved`)."""

from __future__ import annotations

from typing import Any

from allauth.account import signals as account_signals
from allauth.mfa import signals as mfa_signals
from allauth.mfa.models import Authenticator
from django.contrib.auth import signals as auth_signals
from django.db.models import Model
from django.db.models.signals import post_delete, post_save
from django.http import HttpRequest
from django.utils import timezone

from core.cache import MEMBER, invalidate_on_commit
from members.http import origin
from members.middleware import AUTHENTICATED_AT, LAST_SEEN_AT
from members.models import Action, ActivityLog, ApiToken, Member, Profile
from members.services import record_activity


def _record(request: HttpRequest | None, member: Member | None, action: Action, **detail: Any) -> None:
    if member is None or member.pk is None:
        return
    where = origin(request) if request is not None else {"ip": None, "user_agent": ""}
    record_activity(member=member, action=action, detail=detail, **where)


def on_signed_up(request: HttpRequest, user: Member, **kwargs: Any) -> None:
    _record(request, user, Action.SIGNUP)


def on_logged_in(sender: Any, request: HttpRequest | None, user: Member, **kwargs: Any) -> None:
    if request is not None and hasattr(request, "session"):
        now = timezone.now().timestamp()
        request.session[AUTHENTICATED_AT] = now
        request.session[LAST_SEEN_AT] = now
    _record(request, user, Action.LOGIN)


def on_login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # Recorded for the account that was tried, when it exists; the response to the client is
    # the same either way.
    email = credentials.get("email") or credentials.get("username") or ""
    member = Member.objects.with_email(str(email)).first() if email else None
    _record(request, member, Action.LOGIN_FAILED)


def on_logged_out(sender: Any, request: HttpRequest | None, user: Member | None, **kwargs: Any) -> None:
    _record(request, user, Action.LOGOUT)


def on_password_changed(request: HttpRequest, user: Member, **kwargs: Any) -> None:
    _record(request, user, Action.PASSWORD_CHANGED)


def on_password_reset(request: HttpRequest, user: Member, **kwargs: Any) -> None:
    _record(request, user, Action.PASSWORD_RESET)


def on_email_changed(
    request: HttpRequest, user: Member, from_email_address: Any, to_email_address: Any, **kwargs: Any
) -> None:
    # Confirming the first address at sign-up is announced as a change from nothing: not a change.
    if from_email_address is None:
        return
    _record(request, user, Action.EMAIL_CHANGED)


def on_authenticator_added(request: HttpRequest, user: Member, authenticator: Authenticator, **kwargs: Any) -> None:
    if authenticator.type == Authenticator.Type.TOTP:
        _record(request, user, Action.MFA_ENABLED)


def on_authenticator_removed(request: HttpRequest, user: Member, authenticator: Authenticator, **kwargs: Any) -> None:
    if authenticator.type == Authenticator.Type.TOTP:
        _record(request, user, Action.MFA_DISABLED)


def on_mfa_authentication_failed(
    request: HttpRequest | None, user: Member, authenticator: Authenticator, reauthentication: bool, **kwargs: Any
) -> None:
    # A TOTP or recovery code, at login or re-authentication (members/mfa.py limits them).
    _record(request, user, Action.MFA_CODE_WRONG, **({"reauthentication": True} if reauthentication else {}))


def on_member_data_saved(sender: type[Model], instance: Model, **kwargs: Any) -> None:
    """Any save or delete of a member's own rows, made by a service or not (the admin, a shell, a
    data fix), makes what is cached for that member stale once it commits. Services invalidate
    too; this catches every ORM write beside them. Queryset `update()` and `bulk_create` send no
    signal: their callers invalidate themselves."""
    member_id = instance.pk if isinstance(instance, Member) else getattr(instance, "member_id", None)
    if member_id is not None:
        invalidate_on_commit(MEMBER, member_id)


# The models whose rows a member's cached pages and reads show.
MEMBER_DATA_MODELS: tuple[type[Model], ...] = (Member, Profile, ApiToken, ActivityLog)


def connect_member_data(model: type[Model]) -> None:
    """Invalidate the member's cache on every save and delete of `model`'s rows (its
    `member_id`, or the member itself); other apps connect their own member rows here."""
    label = model._meta.label_lower
    post_save.connect(on_member_data_saved, sender=model, dispatch_uid=f"members.cache.saved.{label}")
    post_delete.connect(on_member_data_saved, sender=model, dispatch_uid=f"members.cache.deleted.{label}")


def connect() -> None:
    for model in MEMBER_DATA_MODELS:
        connect_member_data(model)
    account_signals.user_signed_up.connect(on_signed_up, dispatch_uid="members.signed_up")
    auth_signals.user_logged_in.connect(on_logged_in, dispatch_uid="members.logged_in")
    auth_signals.user_login_failed.connect(on_login_failed, dispatch_uid="members.login_failed")
    auth_signals.user_logged_out.connect(on_logged_out, dispatch_uid="members.logged_out")
    account_signals.password_changed.connect(on_password_changed, dispatch_uid="members.password_changed")
    account_signals.password_set.connect(on_password_changed, dispatch_uid="members.password_set")
    account_signals.password_reset.connect(on_password_reset, dispatch_uid="members.password_reset")
    account_signals.email_changed.connect(on_email_changed, dispatch_uid="members.email_changed")
    mfa_signals.authenticator_added.connect(on_authenticator_added, dispatch_uid="members.mfa_added")
    mfa_signals.authenticator_removed.connect(on_authenticator_removed, dispatch_uid="members.mfa_removed")
    mfa_signals.authentication_failed.connect(on_mfa_authentication_failed, dispatch_uid="members.mfa_failed")
