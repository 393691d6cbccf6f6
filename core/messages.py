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


class HostCookieStorage(CookieStorage):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if settings.SESSION_COOKIE_SECURE:
            self.cookie_name = "__Host-messages"


class MessageStorage(FallbackStorage):
    """The cookie, and the session for what does not fit in it, as Django's default does."""

    storage_classes = (HostCookieStorage, SessionStorage)
