"""What a request gets while the database cannot be reached: 503 with Retry-After and a short
page (JSON on the API), not a bare 500, and no error report per request.

An outage is one incident, already told by the health checks, the readiness probe and the
metrics; reporting each refused request to Sentry as a new error would bury everything else.
Only connection-level failures count: a deadlock or a cancelled query is a real error.
"""

from __future__ import annotations

import sys

import psycopg
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

RETRY_AFTER_SECONDS = 30
# SQLSTATE classes and codes of a server that is gone, going or not taking connections.
_UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03")

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Back in a moment - Member Portal</title></head>
<body><main><h1>Back in a moment</h1>
<p>Member Portal cannot reach its database just now. Nothing you sent was lost or half saved:
please try again in a minute.</p></main></body>
</html>
"""


def database_unavailable(exc: BaseException | None) -> bool:
    """Whether `exc` says the database cannot be reached (refused, gone, pool exhausted)."""
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    cause = exc.__cause__
    if not isinstance(cause, psycopg.Error):
        return False  # SQLite's errors are about the file, and are real errors
    state = cause.sqlstate
    return state is None or state.startswith(_UNAVAILABLE_STATES)


def unavailable_response(request: HttpRequest) -> HttpResponse:
    if request.path_info.startswith("/api/") or "application/json" in request.headers.get("Accept", ""):
        response: HttpResponse = JsonResponse(
            {
                "code": "service_unavailable",
                "message": "The service cannot reach its database just now; try again shortly.",
                "details": {"retry_after": RETRY_AFTER_SECONDS},
            },
            status=503,
        )
    else:
        response = HttpResponse(PAGE, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


def server_error(request: HttpRequest) -> HttpResponse:
    """The portal's `handler500`: Django calls it while handling the uncaught exception, so
    `sys.exc_info()` holds it. Touches neither the database nor a template context that would."""
    if database_unavailable(sys.exc_info()[1]):
        return unavailable_response(request)
    return defaults.server_error(request)
