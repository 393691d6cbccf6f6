"""django-allauth hooks."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from django.db import transaction
from django.http import HttpRequest

from members.models import Member, Profile


class AccountAdapter(DefaultAccountAdapter):  # type: ignore[misc]
    def save_user(self, request: HttpRequest, user: Member, form: Any, commit: bool = True) -> Member:
        """Sign-up creates the member and their profile in one transaction, as
        `Member.objects.create_user` does for every other way in."""
        with transaction.atomic():
            member: Member = super().save_user(request, user, form, commit=commit)
            if commit:
                Profile.objects.get_or_create(member=member)
        return member
