"""What member-facing views know about a request: a typed request and where it came from."""

from __future__ import annotations

from typing import TypedDict

from django.http import HttpRequest

from members.models import Member


class MemberRequest(HttpRequest):
    """A request from a logged-in member (views behind `login_required`)."""

    user: Member


class Origin(TypedDict):
    ip: str | None
    user_agent: str


def origin(request: HttpRequest) -> Origin:
    """The client address and user agent, as recorded in the activity log.

    REMOTE_ADDR is the peer that connected to us. Behind a reverse proxy, the proxy must set it
    (gunicorn's `forwarded_allow_ips` with the proxy's address); a raw X-Forwarded-For header is
    never trusted, since any client can send one."""
    return {
        "ip": request.META.get("REMOTE_ADDR") or None,
        "user_agent": request.META.get("HTTP_USER_AGENT", "")[:400],
    }
