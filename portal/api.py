"""The JSON API root, mounted at `/api/v1/`: the apps' routers, the error handlers, and what
every API response shares.

Layers, outermost first:
- `core.ratelimit.RateLimitMiddleware` (settings): the per-IP limit and the RateLimit headers.
- `_edge`, around every URL under `/api/v1/`: errors outside any operation (an unknown path, a
  method an operation lacks) as JSON; `Cache-Control`; and on a GET's 200, a strong `ETag` and
  `304 Not Modified` for a matching `If-None-Match`.
- `_check_body`, around every operation, before authentication and before any byte of a body
  is read: 413 for an oversized body, 415 for a body that is not JSON.
- django-ninja: authentication (`members.api_auth.TokenAuth`), input validation, the operation; any
  exception becomes JSON through the handlers below, an unexpected one a bare 500.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseNotModified
from django.http.response import HttpResponseBase
from django.urls import URLPattern, URLResolver, path
from django.utils.cache import patch_vary_headers
from django.utils.http import parse_etags
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.openapi.schema import OpenAPISchema
from ninja.responses import NinjaJSONEncoder

from core.api import ApiError, ErrorCode, FieldError, invalid_input
from core.ratelimit import RateLimited
from core.unavailable import RETRY_AFTER_SECONDS, database_unavailable
from members.api import router as members_router
from subscriptions.api import router as subscriptions_router

logger = logging.getLogger("portal.api")

# Bodies larger than this are refused unread. The largest valid body (a PATCH /me with a
# 2,000-character bio, every character escaped) is well under it.
MAX_BODY_BYTES = 64 * 1024
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
CACHE_CONTROL = "private, no-cache"

DESCRIPTION = """\
The Member Portal's API, for members' own scripts and the integrations they allow.

**Authentication**: an API token created at `/tokens/`, sent as `Authorization: Bearer <token>`;
never in the URL. GET operations need the token's `read` scope; PATCH and DELETE need `write`.

**Errors** are JSON, `{"code": ..., "message": ..., "details": ...}`, with a stable `code`.

**Caching**: every GET answers with a strong `ETag`; send it back in `If-None-Match` to get
`304 Not Modified` when nothing changed.

**Rate limits** per token and per client address, announced in the `RateLimit-Policy` and
`RateLimit` headers; over a limit, `429` with `Retry-After`.

The guide, with examples: `docs/api.md`.
"""


def error_response(
    status: int,
    code: ErrorCode,
    message: str,
    *,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> HttpResponse:
    body = json.dumps({"code": code, "message": message, "details": details}, cls=NinjaJSONEncoder)
    response = HttpResponse(body, status=status, content_type="application/json; charset=utf-8")
    for name, value in (headers or {}).items():
        response[name] = value
    return response


class PortalAPI(NinjaAPI):
    def get_openapi_schema(
        self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None
    ) -> OpenAPISchema:
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        _describe_headers(schema)
        return schema


# --- Response headers in the schema ------------------------------------------------------------

_HEADERS: dict[str, dict[str, Any]] = {
    "RateLimit-Policy": {
        "description": 'The limits that apply (IETF draft): `"token";q=120;w=60, "ip";q=300;w=60`. '
        "Absent while the rate limiter's cache is down.",
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": 'What is left of each limit and in how many seconds it resets: `"token";r=119;t=60`.',
        "schema": {"type": "string"},
    },
    "ETag": {
        "description": "A strong validator of the body: send it in If-None-Match to get a 304 while it holds.",
        "required": True,
        "schema": {"type": "string"},
    },
    "WWW-Authenticate": {
        "description": 'The scheme to authenticate with, and the error: `Bearer realm="...", error="invalid_token"`.',
        "required": True,
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    },
}


def _describe_headers(schema: OpenAPISchema) -> None:
    """Document the headers that `_edge`, `TokenAuth` and the rate limiter add to responses."""
    schema["components"]["headers"] = _HEADERS
    for path_item in schema["paths"].values():
        for method, operation in path_item.items():
            for status, response in operation["responses"].items():
                names = ["RateLimit-Policy", "RateLimit"]
                if method == "get" and int(status) in (200, 304):
                    names.append("ETag")
                if int(status) == 401:
                    names.append("WWW-Authenticate")
                if int(status) == 429:
                    names.append("Retry-After")
                response["headers"] = {name: {"$ref": f"#/components/headers/{name}"} for name in names}


# --- The API ---------------------------------------------------------------------------------

api = PortalAPI(
    title="Member Portal API",
    version="1",
    description=DESCRIPTION,
    urls_namespace="api-1",
)
api.add_router("", members_router)
api.add_router("", subscriptions_router)


def _content_length(request: HttpRequest) -> int:
    try:
        return max(0, int(request.META.get("CONTENT_LENGTH") or 0))
    except ValueError:
        return 0  # Django reads no body for a garbled length either


def _check_body(run: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Refuse a body we would not parse before reading a byte of it (Django reads at most
    CONTENT_LENGTH bytes, so checking the header bounds what is read), and before
    authentication, so an oversized request costs no query either."""

    @functools.wraps(run)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method in _BODY_METHODS:
            length = _content_length(request)
            if length > MAX_BODY_BYTES:
                return error_response(
                    413,
                    "payload_too_large",
                    f"The request body is {length} bytes; the limit is {MAX_BODY_BYTES} bytes.",
                    details={"limit": MAX_BODY_BYTES},
                )
            media_type = (request.content_type or "").lower()
            charset = (request.content_params or {}).get("charset", "utf-8").lower()
            if media_type != "application/json" or charset not in {"utf-8", "utf8"}:
                return error_response(
                    415,
                    "unsupported_media_type",
                    "Send the body as JSON, with the header Content-Type: application/json.",
                )
        return run(request, *args, **kwargs)

    return checked


api.add_decorator(_check_body, mode="view")


# --- Exception handlers ----------------------------------------------------------------------


@api.exception_handler(ApiError)
def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return error_response(exc.status, exc.code, exc.message, details=exc.details, headers=exc.headers)


@api.exception_handler(RateLimited)
def _rate_limited(request: HttpRequest, exc: RateLimited) -> HttpResponse:
    decision = exc.decision
    return error_response(
        429,
        "rate_limited",
        f"Too many requests: try again in {decision.retry_after} seconds.",
        # The same details as the per-IP refusal of `core.ratelimit.RateLimitMiddleware`.
        details={"limit": decision.limit.name, "retry_after": decision.retry_after},
        headers=decision.headers(),
    )


def _message(error: dict[str, Any]) -> str:
    message = str(error.get("msg", "Not valid."))
    return message.removeprefix("Value error, ")


@api.exception_handler(ValidationError)
def _invalid_input(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    """Input that failed the schema: each problem named by its field, without echoing input."""
    errors = []
    for error in exc.errors:
        source, *rest = [str(part) for part in error.get("loc", ("body",))]
        if source == "body" and rest:
            rest = rest[1:]  # the operation's name for its body, not a field the client sent
        field = ".".join(rest) or source
        message = _message(error)
        if source == "body" and not rest:
            message = "The body must be a JSON object." if error.get("type") != "missing" else "A JSON body is needed."
        location = source if source in {"body", "query", "path"} else "body"
        errors.append(FieldError(field=field, location=location, message=message))  # type: ignore[arg-type]
    return _api_error(request, invalid_input(errors))


@api.exception_handler(AuthenticationError)
def _not_authenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    # `TokenAuth` raises its own errors; this answers should an operation lack it by mistake.
    return error_response(401, "not_authenticated", "This needs an API token.", headers={"WWW-Authenticate": "Bearer"})


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    # django-ninja raises HttpError(400) only for a body it cannot parse as JSON.
    if exc.status_code == 400:
        return error_response(400, "bad_request", "The request body is not valid JSON.")
    logger.error("Unexpected HttpError %s from django-ninja", exc.status_code)
    return _server_error(request, exc)


@api.exception_handler(SuspiciousOperation)
def _malformed(request: HttpRequest, exc: SuspiciousOperation) -> HttpResponse:
    # Too many query parameters, and the like: Django refuses to read the request.
    return error_response(400, "bad_request", "The request is malformed.")


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return not_found()


@api.exception_handler(Exception)
def _server_error(request: HttpRequest, exc: Exception) -> HttpResponse:
    """An exception nothing else handled: logged with its traceback (and so sent to Sentry,
    whose logging integration reports errors), answered without a word about it."""
    if database_unavailable(exc):
        # One outage, told by health checks and metrics: not an error report per request.
        return error_response(
            503,
            "service_unavailable",
            "The service cannot reach its database just now; try again shortly.",
            details={"retry_after": RETRY_AFTER_SECONDS},
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    logger.error("Unhandled exception in %s %s", request.method, request.path, exc_info=exc)
    return error_response(
        500,
        "server_error",
        "Something went wrong on our side. It has been logged; please try again later.",
    )


def not_found() -> HttpResponse:
    return error_response(404, "not_found", "There is nothing here. The API's operations are listed at /api/v1/docs.")


# --- The edge: every URL under /api/v1/ ------------------------------------------------------


def _etag(content: bytes) -> str:
    return '"' + hashlib.blake2b(content, digest_size=16).hexdigest() + '"'


def _matches(if_none_match: str, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 13.1.2): W/"x" matches "x"."""
    tags = parse_etags(if_none_match)
    return "*" in tags or any(tag.removeprefix("W/") == etag for tag in tags)


def _finish(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """Headers every API response carries, and the conditional GET.

    `no-cache`, not `no-store`: a client may keep a copy, but must revalidate it (If-None-Match)
    before each use; `private`: no shared cache may keep one, since a response belongs to the
    token's member (and so `Vary: Authorization` too)."""
    response["Cache-Control"] = CACHE_CONTROL
    patch_vary_headers(response, ("Authorization",))
    if response.status_code == 204:
        del response["Content-Type"]
    if request.method == "GET" and response.status_code == 200 and isinstance(response, HttpResponse):
        etag = _etag(response.content)
        response["ETag"] = etag
        if _matches(request.headers.get("If-None-Match", ""), etag):
            not_modified = HttpResponseNotModified()
            for name in ("ETag", "Cache-Control", "Vary"):
                not_modified[name] = response[name]
            return not_modified
    return response


def _edge(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    @functools.wraps(view)
    def edge(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            if "" in request.GET:  # `?=value`: a parameter without a name can only be a mistake
                nameless = {"field": "", "location": "query", "message": "A query parameter has no name."}
                invalid = error_response(422, "validation_error", "Some of the input is not valid.", details=[nameless])
                return _finish(request, invalid)
            response = view(request, *args, **kwargs)
        except Http404:  # the API root, which django-ninja answers outside any operation
            response = not_found()
        except SuspiciousOperation as exc:  # e.g. too many query parameters to read
            response = _malformed(request, exc)
        except Exception as exc:  # nothing may leave the API as an HTML page
            response = _server_error(request, exc)
        if isinstance(response, HttpResponseNotAllowed):
            allowed = response["Allow"]
            response = error_response(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed here. Allowed: {allowed}.",
                headers={"Allow": allowed},
            )
        return _finish(request, response)

    return edge


def _unknown_path(request: HttpRequest, unknown: str) -> HttpResponse:
    return not_found()


def urls() -> tuple[list[URLPattern | URLResolver], str, str]:
    """The API's URLs for `path("api/v1/", ...)`: django-ninja's, each behind `_edge`, then a
    catch-all so that an unknown path under /api/v1/ is a JSON 404 too."""
    patterns, app_name, namespace = api.urls
    wrapped: list[URLPattern | URLResolver] = []
    for pattern in patterns:
        if not isinstance(pattern, URLPattern):  # django-ninja makes only path() entries
            raise TypeError(f"unexpected {pattern!r} in the API's URLs")
        wrapped.append(URLPattern(pattern.pattern, _edge(pattern.callback), pattern.default_args, pattern.name))
    wrapped.append(path("<path:unknown>", _edge(_unknown_path), name="unknown"))
    return wrapped, app_name, namespace
