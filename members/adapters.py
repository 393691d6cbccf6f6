"""django-allauth hooks."""

from __future__ import annotations

import hashlib
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from django.db import transaction
from django.http import HttpRequest

from core.proxies import client_ip
from core.ratelimit import Limit, hit, peek
from members.models import Member, Profile

# Failed logins (the admin's too: staff log in through the same form). Counted by the portal's
# own limiter, which lets logins through while the cache is down; allauth's limiter, turned off
# for logins in settings, would refuse every login during a Redis outage (docs/reliability.md).
LOGIN_FAILURES_PER_IP = Limit("login_failed_ip", 10, 60)
LOGIN_FAILURES_PER_ACCOUNT = Limit("login_failed_account", 5, 300)


def _login_limits(request: HttpRequest, credentials: dict[str, Any]) -> list[tuple[Limit, str]]:
    login = str(credentials.get("email") or credentials.get("username") or "").strip().lower()
    # The account by a hash of the address typed: no email address in a cache key.
    account = hashlib.sha256(login.encode()).hexdigest()[:32]
    return [(LOGIN_FAILURES_PER_IP, client_ip(request) or "unknown"), (LOGIN_FAILURES_PER_ACCOUNT, account)]


class AccountAdapter(DefaultAccountAdapter):  # type: ignore[misc]
    def save_user(self, request: HttpRequest, user: Member, form: Any, commit: bool = True) -> Member:
        """Sign-up creates the member and their profile in one transaction, as
        `Member.objects.create_user` does for every other way in."""
        with transaction.atomic():
            member: Member = super().save_user(request, user, form, commit=commit)
            if commit:
                Profile.objects.get_or_create(member=member)
        return member

    def pre_authenticate(self, request: HttpRequest, **credentials: Any) -> None:
        """Refuse a login attempt, even with the right password, while its address or account is
        over its failure limit; unknown accounts are counted like known ones."""
        for limit, subject in _login_limits(request, credentials):
            decision = peek(limit, subject)
            if decision is not None and not decision.allowed:
                raise self.validation_error("too_many_login_attempts")

    def authentication_failed(self, request: HttpRequest, **credentials: Any) -> None:
        for limit, subject in _login_limits(request, credentials):
            hit(limit, subject)
