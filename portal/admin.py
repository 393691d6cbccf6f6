"""The staff admin's site: who may enter, and how they log in.

Only active staff reach `/admin/`. There is no second login form: the admin's login page sends
people to the accounts login (`/accounts/login/`), with its rate limits, email verification and
second factor, and back to the admin afterwards. With `ADMIN_REQUIRE_MFA` on (the default when
`DEBUG` is off), staff must also have passed a second factor in the current session: staff
without an authenticator are sent to set one up, staff with one to enter a code.

Installed as Django's default admin site by `portal.apps.PortalAdminConfig`, so every
`admin.register` of the apps lands here.
"""

from __future__ import annotations

from enum import Enum
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme


class SecondFactor(Enum):
    DONE = "done"  # passed in this session, or not required
    SET_UP = "set up"  # required, and the staff member has no authenticator yet
    VERIFY = "verify"  # required, has one, but did not use it in this session


def second_factor(request: HttpRequest) -> SecondFactor:
    """Where the staff member stands with the admin's second factor.

    allauth records each way a session authenticated (`get_authentication_records`): a login
    with a TOTP code, a recovery code or a security key, and a later re-authentication with
    one, add a record with method "mfa". The records are bound to the user they were made for."""
    if not settings.ADMIN_REQUIRE_MFA:
        return SecondFactor.DONE
    # Imported here: this module is loaded while the admin app is set up, before allauth's models.
    from allauth.account.authentication import get_authentication_records
    from allauth.mfa.adapter import get_adapter

    user: Any = request.user
    if any(record.get("method") == "mfa" for record in get_authentication_records(request, user)):
        return SecondFactor.DONE
    return SecondFactor.VERIFY if get_adapter().is_mfa_enabled(user) else SecondFactor.SET_UP


class PortalAdminSite(admin.AdminSite):
    site_header = "Member Portal administration"
    site_title = "Member Portal admin"

    def has_permission(self, request: HttpRequest) -> bool:
        return super().has_permission(request) and second_factor(request) is SecondFactor.DONE

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """Not a login form: sends each visitor to the step they are missing, then back.

        Anonymous visitors go to the accounts login; members without staff status get a 403
        (sending them to log in again would loop); staff who still need a second factor go to
        set one up or to enter it."""
        next_url = request.GET.get(REDIRECT_FIELD_NAME, "")
        if not url_has_allowed_host_and_scheme(
            next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            next_url = reverse("admin:index", current_app=self.name)
        user: Any = request.user
        if not user.is_authenticated:
            return HttpResponseRedirect(f"{reverse('account_login')}?{urlencode({REDIRECT_FIELD_NAME: next_url})}")
        if not (user.is_active and user.is_staff):
            raise PermissionDenied("This account has no staff access.")
        step = second_factor(request)
        if step is SecondFactor.SET_UP:
            messages.warning(request, "Set up two-factor authentication to use the admin.")
            return HttpResponseRedirect(reverse("mfa_index"))
        if step is SecondFactor.VERIFY:
            query = urlencode({REDIRECT_FIELD_NAME: next_url})
            return HttpResponseRedirect(f"{reverse('mfa_reauthenticate')}?{query}")
        return HttpResponseRedirect(next_url)

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        """The app list, under the staff dashboard (templates/admin/index.html)."""
        # Imported here: this module is loaded while the admin app is set up, before the models.
        from monitoring.staff_dashboard import admin_index_context

        return super().index(request, {**(extra_context or {}), "dashboard": admin_index_context()})
