"""Caps on request bodies, checked on Content-Length before anything reads the body.

Django reads a body only as far as Content-Length says (a chunked body without one reads as
empty), so refusing on the header bounds what any view, form or multipart parser will read.
Without it, a 100 MB multipart body to the login form is parsed (its file parts written to disk)
before a user is even known. The JSON API and the Web Vitals beacon enforce their own, smaller
limits with their own error shape, and are left to them.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse


def body_limit(path: str) -> int | None:
    """The most bytes a request to `path` may send; None where the view enforces its own."""
    if path.startswith(tuple(settings.REQUEST_BODY_EXEMPT_PREFIXES)):
        return None
    for prefix, limit in settings.REQUEST_BODY_LIMITS.items():
        if path.startswith(prefix):
            return int(limit)
    return int(settings.REQUEST_BODY_LIMIT)


def too_large(request: HttpRequest, *, length: int, limit: int) -> HttpResponse:
    message = f"The request body is {length} bytes; this page accepts at most {limit} bytes."
    if "application/json" in request.headers.get("Accept", "") or request.content_type == "application/json":
        return JsonResponse({"code": "payload_too_large", "message": message, "details": {"limit": limit}}, status=413)
    return HttpResponse(message, status=413, content_type="text/plain; charset=utf-8")


class BodyLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        raw = request.META.get("CONTENT_LENGTH")
        if raw:  # GETs and HEADs carry none: one dict lookup is all they pay
            try:
                length = int(raw)
            except ValueError:
                length = 0  # Django reads a malformed length as no body at all
            limit = body_limit(request.path_info)
            if limit is not None and length > limit:
                return too_large(request, length=length, limit=limit)
        return self.get_response(request)
