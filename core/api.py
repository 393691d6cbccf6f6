"""What every part of the JSON API shares: the error shape, its exception, the schema helper
for documented errors, and the input rules of query and path parameters. `portal.api` turns
`ApiError` into responses; the apps' routers raise it and validate with these types."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from ninja import Field, Schema
from pydantic import AwareDatetime, BeforeValidator

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
    "service_unavailable",
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


# --- Input rules shared by query and path parameters -----------------------------------------

_DIGITS = re.compile(r"[0-9]+")
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_UTC_MIN = dt.datetime.min.replace(tzinfo=dt.UTC)
_UTC_MAX = dt.datetime.max.replace(tzinfo=dt.UTC)


def plain_integer(value: Any) -> Any:
    """Digits only, as the schema's `integer` promises: not "1.0", "1e3", " 5" or "1_000", which
    a lenient parser would take."""
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        raise ValueError("must be a whole number, written in digits")
    return value


def rfc3339(value: Any) -> Any:
    """An RFC 3339 date-time with its offset, as the schema's `date-time` promises: not a Unix
    timestamp or a date alone, which a lenient parser would take."""
    if isinstance(value, str) and not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 date and time with an offset, like 2026-01-31T09:30:00Z")
    return value


def in_utc(value: dt.datetime) -> dt.datetime:
    """`value` in UTC. A time within a day of the calendar's ends may have no UTC equivalent
    (9999-12-31T23:00:00-05:00); it is clamped to the end, which selects the same rows."""
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        return _UTC_MAX if value.year > 1 else _UTC_MIN


def optional_not_null(schema: dict[str, Any]) -> None:
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


PlainInt = Annotated[int, BeforeValidator(plain_integer)]
Timestamp = Annotated[AwareDatetime, BeforeValidator(rfc3339)]
