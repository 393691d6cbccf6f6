"""The members' part of the JSON API (`/api/v1/`): the caller's profile, activity and tokens.

Also what every part of the API shares and that `subscriptions.api` imports (members import no
other app of ours, so it lives here rather than in `portal`): the bearer-token authentication,
the error shape and its exception. `portal.api` mounts the routers and turns exceptions into
responses.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from django.core.cache import cache
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, Path, Query, Router, Schema, Status
from ninja.security import HttpBearer
from pydantic import AwareDatetime, BeforeValidator, ConfigDict, field_validator

from core.ratelimit import hit_token
from members import services, tokens
from members.forms import ProfileForm, time_zone_choices
from members.http import origin
from members.models import Action, ActivityLog, ApiToken, Member, MemberStatus, Profile, Tier, TokenScope
from members.pagination import decode_cursor, encode_cursor
from members.reads import ProfileSummary, profile_summary
from members.views import TOKENS_ENDED_WINDOW, TOKENS_LISTED

# --- Errors ----------------------------------------------------------------------------------

ErrorCode = Literal[
    "bad_request",
    "not_authenticated",
    "invalid_token",
    "token_in_query",
    "insufficient_scope",
    "not_found",
    "method_not_allowed",
    "payload_too_large",
    "unsupported_media_type",
    "validation_error",
    "rate_limited",
    "server_error",
]


class Error(Schema):
    """Every error the API answers, whatever its status."""

    code: ErrorCode = Field(description="Stable, machine-readable; see docs/api.md for the list.")
    message: str = Field(description="For people: what went wrong and what to do about it.")
    details: dict[str, Any] | None = Field(description="More about some errors (rate_limited: retry_after).")


class FieldError(Schema):
    field: str = Field(description="The invalid input, by name: a body field, a query or path parameter.")
    location: Literal["body", "query", "path"]
    message: str


class ValidationFailure(Schema):
    """A 422: the request was well formed but some of its input is not valid."""

    code: Literal["validation_error"]
    message: str
    details: list[FieldError]


class ApiError(Exception):
    """An error answered as `Error` JSON (see `portal.api`), with headers such as WWW-Authenticate."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        *,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = dict(headers or {})


def invalid_input(errors: list[FieldError]) -> ApiError:
    names = ", ".join(dict.fromkeys(error.field for error in errors))
    return ApiError(
        422,
        "validation_error",
        f"Some of the input is not valid: {names}.",
        details=[error.model_dump() for error in errors],
    )


def documented(ok: Mapping[int, Any], *errors: int) -> dict[int, Any]:
    """An operation's `response=`: its successes, then each error status with its schema. Every
    operation behind a token can also answer 401, 403, 429 and 500."""
    statuses = sorted({*errors, 401, 403, 429, 500})
    return {**ok, **{status: ValidationFailure if status == 422 else Error for status in statuses}}


# --- Authentication --------------------------------------------------------------------------

REALM = 'Bearer realm="Member Portal API"'
# One message for every unusable token, so the answer never tells a guesser which part was wrong.
REFUSED_MESSAGE = (
    "The API token is not valid: it is mistyped, unknown, expired or revoked, or its account is "
    "not active. Create a new token at /tokens/."
)
# Query parameters that clients commonly use for credentials, and anything shaped like our token.
_CREDENTIAL_PARAMETERS = frozenset({"token", "access_token", "api_key", "apikey"})
_TOKEN_LIKE = re.compile(re.escape(tokens.PREFIX) + r"[0-9A-Za-z]{4,}")
# `last_used_at` is written at most this often per token.
LAST_USED_RESOLUTION = 60


def _token_in_query(request: HttpRequest) -> bool:
    for name, values in request.GET.lists():
        if name.lower() in _CREDENTIAL_PARAMETERS or _TOKEN_LIKE.search(name):
            return True
        if any(_TOKEN_LIKE.search(value) for value in values):
            return True
    return False


def _record_use(request: HttpRequest, token: ApiToken) -> None:
    """Note when and from where the token was last used, without a write on every request: the
    first request of each minute wins the `cache.add`; the others skip the write. When the cache
    is down (`add` answers None), nothing is written rather than a write per request.

    One conditional UPDATE by primary key, never a read-modify-write of the row."""
    if cache.add(f"token-seen:{token.pk}", 1, LAST_USED_RESOLUTION) is not True:
        return
    ip = origin(request)["ip"]
    try:
        ipaddress.ip_address(ip or "")
    except ValueError:  # no address (a Unix socket) or a peer name the column cannot store
        ip = None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now(), last_used_ip=ip)


class TokenAuth(HttpBearer):
    """`Authorization: Bearer <token>`, and nothing else: no session cookie, no query string.

    A token in the query string is refused even beside a valid header, because a URL ends up in
    logs, browser history and Referer headers: the client must learn to stop sending it. Every
    token that is not usable gets the same answer, so nothing tells a guesser which part was
    wrong; a malformed one or one with a wrong checksum costs no query at all."""

    openapi_description = (
        "An API token created at /tokens/ (`mpt_...`), sent as `Authorization: Bearer <token>`. "
        "GET operations need the `read` scope; PATCH and DELETE need `write`."
    )

    def __init__(self, scope: TokenScope) -> None:
        super().__init__()
        self.scope = scope

    def __call__(self, request: HttpRequest) -> ApiToken:
        if _token_in_query(request):
            raise ApiError(
                401,
                "token_in_query",
                "Never put an API token in the URL: send it in the Authorization header "
                "(Authorization: Bearer <token>). Revoke the token you sent and create a new one at /tokens/.",
                headers={"WWW-Authenticate": f'{REALM}, error="invalid_request"'},
            )
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise ApiError(
                401,
                "not_authenticated",
                "This needs an API token, sent as Authorization: Bearer <token>. Create one at /tokens/.",
                headers={"WWW-Authenticate": REALM},
            )
        return self.authenticate(request, credentials.strip())

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken:
        found = ApiToken.objects.authenticate(token)
        if found is None:
            raise ApiError(
                401,
                "invalid_token",
                REFUSED_MESSAGE,
                headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'},
            )
        hit_token(request, found.pk)
        _record_use(request, found)
        if not found.has_scope(self.scope):
            raise ApiError(
                403,
                "insufficient_scope",
                f"This token lacks the {self.scope} scope that this needs. "
                f"Create a token with the {self.scope} scope at /tokens/.",
                headers={"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{self.scope}"'},
            )
        return found


READ = TokenAuth(TokenScope.READ)
WRITE = TokenAuth(TokenScope.WRITE)


class TokenRequest(HttpRequest):
    """A request that a token authenticated: `auth` is the token, with its member loaded."""

    auth: ApiToken


# --- Input rules shared by query and path parameters -----------------------------------------

_DIGITS = re.compile(r"[0-9]+")
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_UTC_MIN = dt.datetime.min.replace(tzinfo=dt.UTC)
_UTC_MAX = dt.datetime.max.replace(tzinfo=dt.UTC)


def _plain_integer(value: Any) -> Any:
    """Digits only, as the schema's `integer` promises: not "1.0", "1e3", " 5" or "1_000", which
    a lenient parser would take."""
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        raise ValueError("must be a whole number, written in digits")
    return value


def _rfc3339(value: Any) -> Any:
    """An RFC 3339 date-time with its offset, as the schema's `date-time` promises: not a Unix
    timestamp or a date alone, which a lenient parser would take."""
    if isinstance(value, str) and not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 date and time with an offset, like 2026-01-31T09:30:00Z")
    return value


def _in_utc(value: dt.datetime) -> dt.datetime:
    """`value` in UTC. A time within a day of the calendar's ends may have no UTC equivalent
    (9999-12-31T23:00:00-05:00); it is clamped to the end, which selects the same rows."""
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        return _UTC_MAX if value.year > 1 else _UTC_MIN


def _optional_not_null(schema: dict[str, Any]) -> None:
    """For a model whose `None` defaults only mark fields as optional (a PATCH body, query
    parameters): a field that is sent must hold a value, and a query string cannot even say
    null, so the schema shows neither null nor a null default."""
    for name, prop in schema.get("properties", {}).items():
        if prop.get("default", ...) is None:
            del prop["default"]
        variants = [variant for variant in prop.get("anyOf", []) if variant != {"type": "null"}]
        if "anyOf" in prop and len(variants) == 1:
            del prop["anyOf"]
            schema["properties"][name] = {**variants[0], **prop}


PlainInt = Annotated[int, BeforeValidator(_plain_integer)]
Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]


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
    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra=_optional_not_null)

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
    model_config = ConfigDict(json_schema_extra=_optional_not_null)

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
def get_me(request: TokenRequest) -> MeOut:
    """The member the token belongs to: their account and profile."""
    member = request.auth.member
    return _me(member, profile_summary(member.pk))


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
def list_activity(request: TokenRequest, filters: Query[ActivityFilters]) -> ActivityPage:
    """The member's activity, newest first, a page at a time.

    Pages are cut by a keyset cursor, so every page costs the same however deep it is, and
    entries added meanwhile never shift a page. Repeat the filters with each `cursor`."""
    entries = ActivityLog.objects.for_member(request.auth.member)
    if filters.action:
        entries = entries.filter(action=filters.action)
    if filters.since:
        entries = entries.filter(created_at__gte=_in_utc(filters.since))
    if filters.until:
        entries = entries.filter(created_at__lt=_in_utc(filters.until))
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
