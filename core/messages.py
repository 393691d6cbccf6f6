"""Flash messages in a cookie, as Django keeps them, but named with the `__Host-` prefix whenever
cookies are Secure (production), like the session and CSRF cookies: browsers then refuse the
cookie unless it is Secure, for the whole site and for this host alone. Keeping messages out of
the session saves the session write a message would otherwise cost."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.messages.storage.cookie import CookieStorage
from django.contrib.messages.storage.fallback import FallbackStorage
from django.contrib.messages.storage.session import SessionStorage
from django.http import HttpRequest


class HostCookieStorage(CookieStorage):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cookie_name = _cookie_name()


def _cookie_name() -> str:
    return "__Host-messages" if settings.SESSION_COOKIE_SECURE else CookieStorage.cookie_name


class MessageStorage(FallbackStorage):
    """The cookie, and the session for what does not fit in it, as Django's default does."""

    storage_classes = (HostCookieStorage, SessionStorage)


def pending(request: HttpRequest) -> bool:
    """Whether flash messages wait to be shown to this request, read without consuming them: the
    cookie is there, or the session holds the ones that did not fit in it."""
    if _cookie_name() in request.COOKIES:
        return True
    session = getattr(request, "session", None)
    return session is not None and SessionStorage.session_key in session


def were_shown(request: HttpRequest) -> bool:
    """Whether this request's response showed flash messages or leaves new ones for the next:
    either way its body is this request's alone."""
    storage = getattr(request, "_messages", None)
    return storage is not None and bool(storage.used or storage._queued_messages)
