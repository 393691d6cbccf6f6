"""django-allauth hooks."""

from __future__ import annotations

import hashlib
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from core.proxies import client_ip
from core.ratelimit import Decision, Limit, address_subject, hit, release
from members.models import Member
from members.services import create_member

# Failed logins (the admin's too: staff log in through the same form). Counted by the portal's
# own limiter, which lets logins through while the cache is down; allauth's limiter, turned off
# for logins in settings, would refuse every login during a Redis outage (docs/reliability.md).
# Re-authentication and the password change form check the password through the same
# `authenticate`, so their wrong passwords are failed logins of the account too.
LOGIN_FAILURES_PER_IP = Limit("login_failed_ip", 10, 60)
LOGIN_FAILURES_PER_ACCOUNT = Limit("login_failed_account", 5, 300)


def _login_limits(request: HttpRequest, credentials: dict[str, Any]) -> list[tuple[Limit, str]]:
    login = str(credentials.get("email") or credentials.get("username") or "").strip().lower()
    # The account by a hash of the address typed: no email address in a cache key.
    account = hashlib.sha256(login.encode()).hexdigest()[:32]
    return [(LOGIN_FAILURES_PER_IP, address_subject(client_ip(request))), (LOGIN_FAILURES_PER_ACCOUNT, account)]


class AccountAdapter(DefaultAccountAdapter):  # type: ignore[misc]
    # What `pre_authenticate` counted for the attempt under way (allauth makes one adapter per use).
    _login_attempt: list[Decision | None]

    def save_user(self, request: HttpRequest, user: Member, form: Any, commit: bool = True) -> Member:
        """Sign-up creates the member through `create_member`, the one way in that every other
        path takes too (their profile in the same transaction, the staff numbers invalidated).
        allauth uses the member returned, not the blank `user` it made."""
        if not commit:  # allauth's flows that save later; the portal has none of its own
            member: Member = super().save_user(request, user, form, commit=False)
            return member
        data = form.cleaned_data
        password = data.get("password1") or data.get("password") or None
        return create_member(email=data["email"], password=password)

    def get_client_ip(self, request: HttpRequest) -> str:
        """The client behind our trusted proxies, as every other limit and the activity log see
        it; allauth's own would be the proxy's address, so one shared count for every client.
        allauth then counts an IPv6 address by its network (ALLAUTH_RATE_LIMIT_IPV6_PREFIX)."""
        ip = client_ip(request)
        if not ip:
            raise PermissionDenied("Unable to determine client IP address")
        return ip

    def pre_authenticate(self, request: HttpRequest, **credentials: Any) -> None:
        """Count the attempt as a failure of its address and account before the password is
        checked, and refuse it, even with the right password, if that puts either over its
        limit; unknown accounts are counted like known ones.

        Counting first is what makes the limit hold under concurrency: with a check first and
        the count after the password proved wrong, simultaneous guesses all passed the check
        before any was counted. A refused attempt is taken back (it checked no password), and so
        is one whose password was right (`authenticate`)."""
        self._login_attempt = [hit(limit, subject) for limit, subject in _login_limits(request, credentials)]
        if any(decision is not None and not decision.allowed for decision in self._login_attempt):
            self._release_login_attempt()
            raise self.validation_error("too_many_login_attempts")

    def authenticate(self, request: HttpRequest, **credentials: Any) -> AbstractBaseUser | None:
        user: AbstractBaseUser | None = super().authenticate(request, **credentials)
        if user is not None:
            self._release_login_attempt()
        return user

    def _release_login_attempt(self) -> None:
        for decision in getattr(self, "_login_attempt", []):
            release(decision)
        self._login_attempt = []
