"""The members' part of the JSON API (`/api/v1/`): the caller's profile, activity and tokens.
`portal.api` mounts the routers and turns exceptions into responses; the error contract lives in
`core.api` and the token authentication in `members.api_auth`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Field, Path, Query, Router, Schema, Status
from ninja.renderers import JSONRenderer
from pydantic import ConfigDict, field_validator

from core import pagecache
from core.api import ApiError, FieldError, PlainInt, Timestamp, documented, in_utc, invalid_input, optional_not_null
from core.cache import MEDIUM, MEMBER
from members import services
from members.api_auth import READ, WRITE, TokenRequest
from members.forms import ProfileForm, time_zone_choices
from members.http import origin
from members.models import Action, ActivityLog, ApiToken, Member, MemberStatus, Profile, Tier, TokenScope
from members.pagination import decode_cursor, encode_cursor
from members.reads import ProfileSummary, profile_summary
from members.views import TOKENS_ENDED_WINDOW, TOKENS_LISTED

# --- Render-once responses -------------------------------------------------------------------

_RENDERER = JSONRenderer()  # django-ninja's, which the API answers with (portal.api)


def _rendered(request: HttpRequest, result: Schema) -> HttpResponse:
    """The 200 django-ninja makes of an operation's schema, as its JSON renderer makes it."""
    content = _RENDERER.render(request, result.model_dump(), response_status=200)
    return HttpResponse(content, content_type=f"{_RENDERER.media_type}; charset={_RENDERER.charset}")


def _member_response(request: TokenRequest, name: str, compute: Callable[[], Schema]) -> HttpResponse:
    """A GET of the caller's own data: the JSON body cached under the member's MEMBER version
    (core/pagecache.py), which every write of their rows moves on; the key has the full path, so
    each filter and cursor is its own entry. Authentication, scopes and input checks ran before."""
    scopes = [(MEMBER, request.auth.member_id)]
    return pagecache.cached_response(request, name=name, tier=MEDIUM, scopes=scopes, compute=compute, render=_rendered)


# --- /me -------------------------------------------------------------------------------------


class MeOut(Schema):
    email: str
    display_name: str = Field(description="Empty when the member has not set one.")
    bio: str
    time_zone: str = Field(description="An IANA time zone name, like Europe/Paris.")
    email_updates: bool = Field(description="Whether the member gets email about new features and their plan.")
    tier: Tier
    status: MemberStatus
    created_at: dt.datetime


def _me(member: Member, profile: ProfileSummary) -> MeOut:
    return MeOut(
        email=member.email,
        display_name=profile.display_name,
        bio=profile.bio,
        time_zone=profile.time_zone,
        email_updates=profile.email_updates,
        tier=Tier(member.tier),
        status=MemberStatus(member.status),
        created_at=member.created_at,
    )


# No NUL characters: the form refuses them and PostgreSQL cannot store them in text.
_NO_NUL = r"^[^\x00]*$"


class ProfilePatch(Schema):
    """The fields to change; a field left out is left as it is. Validated like the profile page."""

    # Strict: "yes" is not a boolean and 5 is not a string, as the schema says.
    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra=optional_not_null)

    display_name: str | None = Field(None, max_length=80, pattern=_NO_NUL)
    bio: str | None = Field(None, max_length=2000, pattern=_NO_NUL)
    time_zone: str | None = Field(
        None,
        description="An IANA time zone name; your current one is accepted too, even if it is not listed.",
        json_schema_extra={"enum": [name for _, zones in time_zone_choices() for name, _ in zones]},
    )
    email_updates: bool | None = Field(None)

    @field_validator("display_name", "bio", "time_zone", "email_updates")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Only a value that was sent is validated: leaving a field out leaves it unchanged, but
        # null is not a value of any of them (clear a text with "").
        if value is None:
            raise ValueError("may not be null; leave the field out to keep it as it is")
        return value

    @field_validator("display_name", "bio", "time_zone")
    @classmethod
    def _encodable(cls, value: str) -> str:
        # JSON can carry a lone surrogate ("\ud800"), which no database column can store.
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode text") from None
        return value


# --- /activity -------------------------------------------------------------------------------

ACTIVITY_LIMIT_DEFAULT = 50
CURSOR_FORMAT = "activity-cursor"
ACTIVITY_LIMIT_MAX = 100
# Detail keys an integrator may see; others (the staff member behind a status change) stay in.
_DETAIL_KEYS = ("name", "fields", "token_id", "from", "to", "method", "mfa", "reason")


class ActivityFilters(Schema):
    model_config = ConfigDict(json_schema_extra=optional_not_null)

    limit: PlainInt = Field(ACTIVITY_LIMIT_DEFAULT, ge=1, le=ACTIVITY_LIMIT_MAX, description="Entries per page.")
    cursor: str | None = Field(
        None,
        description="The `next_cursor` of the previous page, with the same filters; leave out for the first page.",
        # Opaque: no pattern tells cursors from other strings, so the schema names a format
        # instead, for which a fuzzer that must send valid input registers a generator
        # (`members.pagination.cursor_at`). Anything else is a 422 from `decode_cursor`.
        json_schema_extra={"format": CURSOR_FORMAT},
    )
    action: Action | None = Field(None, description="Only entries of this action.")
    since: Timestamp | None = Field(None, description="Only entries at or after this time (RFC 3339).")
    until: Timestamp | None = Field(None, description="Only entries before this time (RFC 3339).")


class ActivityOut(Schema):
    id: int
    action: Action
    description: str = Field(description="The action, in words.")
    created_at: dt.datetime
    ip: str | None
    user_agent: str
    detail: dict[str, Any] = Field(description="More about some actions: a token's name, the profile fields changed.")


class ActivityPage(Schema):
    items: list[ActivityOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


def _detail(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):  # a JSON column: whatever another writer stored
        return {}
    return {key: value[key] for key in _DETAIL_KEYS if key in value}


# --- /tokens ---------------------------------------------------------------------------------


class TokenOut(Schema):
    id: int
    name: str
    display: str = Field(description="The token's first and last characters, to recognise it: `mpt_AbCd…wXyZ`.")
    prefix: str
    last_chars: str
    scopes: list[TokenScope]
    created_at: dt.datetime
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None = Field(description="Updated at most once a minute.")
    revoked_at: dt.datetime | None
    live: bool = Field(description="Neither revoked nor expired: it can call the API.")
    current: bool = Field(description="This is the token that made the request.")


class TokenList(Schema):
    items: list[TokenOut] = Field(
        description=f"Live tokens and those that ended in the last {TOKENS_ENDED_WINDOW.days} days, "
        f"newest first, at most {TOKENS_LISTED}."
    )
    has_more: bool = Field(description=f"More than {TOKENS_LISTED} tokens match: the oldest are left out.")


class TokenPath(Schema):
    token_id: PlainInt = Field(ge=1, le=2**63 - 1)


# --- Operations ------------------------------------------------------------------------------

router = Router(tags=["members"])


@router.get("/me", auth=READ, operation_id="get_me", response=documented({200: MeOut, 304: None}))
def get_me(request: TokenRequest) -> HttpResponse:
    """The member the token belongs to: their account and profile."""
    member = request.auth.member
    return _member_response(request, "get_me", lambda: _me(member, profile_summary(member.pk)))


@router.patch(
    "/me",
    auth=WRITE,
    operation_id="update_me",
    response=documented({200: MeOut}, 400, 413, 415, 422),
)
def update_me(request: TokenRequest, payload: ProfilePatch) -> MeOut:
    """Change any of the profile's fields; returns the profile as saved.

    The profile row stays locked from the read that fills in the fields left out to the save,
    so two PATCHes at once cannot undo each other's changes."""
    member = request.auth.member
    changes = payload.model_dump(exclude_unset=True)
    with transaction.atomic():
        profile = Profile.objects.select_for_update().only("display_name", "bio", "time_zone", "preferences")
        current = profile.get(member=member)
        form = ProfileForm(
            {
                "display_name": current.display_name,
                "bio": current.bio,
                "time_zone": current.time_zone,
                "email_updates": bool(current.preferences.get("email_updates", False)),
                **changes,
            },
            current_time_zone=current.time_zone,
        )
        if not form.is_valid():
            raise invalid_input(
                [
                    FieldError(field=field, location="body", message=" ".join(str(message) for message in messages))
                    for field, messages in form.errors.items()
                ]
            )
        data = form.cleaned_data
        saved = ProfileSummary(data["display_name"], data["bio"], data["time_zone"], data["email_updates"])
        services.update_profile(
            member=member,
            display_name=saved.display_name,
            bio=saved.bio,
            time_zone=saved.time_zone,
            email_updates=saved.email_updates,
            **origin(request),
        )
    return _me(member, saved)


@router.get(
    "/activity",
    auth=READ,
    operation_id="list_activity",
    response=documented({200: ActivityPage, 304: None}, 422),
)
def list_activity(request: TokenRequest, filters: Query[ActivityFilters]) -> HttpResponse:
    """The member's activity, newest first, a page at a time.

    Pages are cut by a keyset cursor, so every page costs the same however deep it is, and
    entries added meanwhile never shift a page. Repeat the filters with each `cursor`."""
    return _member_response(request, "list_activity", lambda: _activity_page(request, filters))


def _activity_page(request: TokenRequest, filters: ActivityFilters) -> ActivityPage:
    entries = ActivityLog.objects.for_member(request.auth.member)
    if filters.action:
        entries = entries.filter(action=filters.action)
    if filters.since:
        entries = entries.filter(created_at__gte=in_utc(filters.since))
    if filters.until:
        entries = entries.filter(created_at__lt=in_utc(filters.until))
    entries = entries.recent()
    if filters.cursor is not None:
        cursor = decode_cursor(filters.cursor)
        if cursor is None:
            raise invalid_input(
                [
                    FieldError(
                        field="cursor",
                        location="query",
                        message="Not a cursor this API gave out: use the next_cursor of a page, or leave it out.",
                    )
                ]
            )
        entries = entries.before(*cursor)
    rows = list(entries.only("action", "created_at", "ip", "user_agent", "detail")[: filters.limit + 1])
    page = rows[: filters.limit]
    return ActivityPage(
        items=[
            ActivityOut(
                id=entry.pk,
                action=Action(entry.action),
                description=entry.get_action_display(),
                created_at=entry.created_at,
                ip=entry.ip,
                user_agent=entry.user_agent,
                detail=_detail(entry.detail),
            )
            for entry in page
        ],
        next_cursor=encode_cursor(page[-1]) if len(rows) > filters.limit else None,
    )


@router.get("/tokens", auth=READ, operation_id="list_tokens", response=documented({200: TokenList, 304: None}))
def list_tokens(request: TokenRequest) -> TokenList:
    """The member's API tokens, as the tokens page lists them. The secret is never shown again."""
    now = timezone.now()
    listed = list(
        ApiToken.objects.for_member(request.auth.member)
        .live_or_ended_since(now - TOKENS_ENDED_WINDOW)
        .newest_first()
        .only("name", "prefix", "last_chars", "scopes", "created_at", "expires_at", "last_used_at", "revoked_at")[
            : TOKENS_LISTED + 1
        ]
    )
    return TokenList(
        items=[
            TokenOut(
                id=token.pk,
                name=token.name,
                display=f"{token.prefix}…{token.last_chars}",
                prefix=token.prefix,
                last_chars=token.last_chars,
                scopes=[TokenScope(scope) for scope in token.scopes if scope in TokenScope.values],
                created_at=token.created_at,
                expires_at=token.expires_at,
                last_used_at=token.last_used_at,
                revoked_at=token.revoked_at,
                live=token.is_live(now),
                current=token.pk == request.auth.pk,
            )
            for token in listed[:TOKENS_LISTED]
        ],
        has_more=len(listed) > TOKENS_LISTED,
    )


@router.delete(
    "/tokens/{token_id}",
    auth=WRITE,
    operation_id="revoke_token",
    response=documented({204: None}, 404, 422),
)
def revoke_token(request: TokenRequest, path: Path[TokenPath]) -> Status[None]:
    """Revoke one of the member's tokens (this one too, if asked): programs using it can no
    longer call the API. Revoking a revoked token changes nothing and succeeds."""
    member = request.auth.member
    token = ApiToken.objects.for_member(member).defer("token_hash").filter(pk=path.token_id).first()
    if token is None:
        # Another member's token answers exactly like one that does not exist.
        raise ApiError(404, "not_found", "You have no token with this id.")
    token.member = member  # the filter proved it is the caller's; spare the query
    services.revoke_api_token(token=token, **origin(request))
    return Status(204, None)
