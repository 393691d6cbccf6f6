"""What member-facing views know about a request: a typed request and where it came from."""

from __future__ import annotations

from typing import TypedDict

from django.http import HttpRequest

from core.proxies import client_ip
from members.models import Member


class MemberRequest(HttpRequest):
    """A request from a logged-in member (views behind `login_required`)."""

    user: Member


class Origin(TypedDict):
    ip: str | None
    user_agent: str


def origin(request: HttpRequest) -> Origin:
    """The client address and user agent, as recorded in the activity log."""
    return {
        "ip": client_ip(request),
        "user_agent": request.META.get("HTTP_USER_AGENT", "")[:400],
    }
