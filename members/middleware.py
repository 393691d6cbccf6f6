"""Session lifetime for logged-in members."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import SESSION_KEY, logout
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

AUTHENTICATED_AT = "portal_authenticated_at"
LAST_SEEN_AT = "portal_last_seen_at"
# Refresh the idle clock at most this often, so a busy member's session is not written on
# every request.
_LAST_SEEN_RESOLUTION = 60


class SessionTimeoutMiddleware:
    """Ends a session after SESSION_IDLE_TIMEOUT seconds without a request, or
    SESSION_ABSOLUTE_TIMEOUT seconds after login, whichever comes first. Also ends, at its next
    request, the session of a member who may no longer log in (suspended or deactivated):
    the auth backend no longer returns them, and the stale session is flushed."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            self._check_lifetime(request)
        elif SESSION_KEY in request.session:
            request.session.flush()
        return self.get_response(request)

    def _check_lifetime(self, request: HttpRequest) -> None:
        now = timezone.now().timestamp()
        session = request.session
        authenticated_at = session.setdefault(AUTHENTICATED_AT, now)
        last_seen_at = session.get(LAST_SEEN_AT, now)
        if (
            now - authenticated_at > settings.SESSION_ABSOLUTE_TIMEOUT
            or now - last_seen_at > settings.SESSION_IDLE_TIMEOUT
        ):
            logout(request)
            return
        if LAST_SEEN_AT not in session or now - last_seen_at >= _LAST_SEEN_RESOLUTION:
            session[LAST_SEEN_AT] = now
