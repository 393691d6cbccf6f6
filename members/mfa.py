"""The second factor at login and re-authentication: wrong codes are limited, and a TOTP code
works once, with or without the cache.

These forms replace allauth's (`MFA_FORMS` in settings) for two reasons:
- allauth limits wrong codes with its `login_failed` rate limit, which the portal turns off
  (members/adapters.py counts failed passwords itself), so codes could be guessed without end;
- allauth remembers used TOTP codes in the cache, so with Redis down every right code was
  refused as "Incorrect code". The last accepted time step is kept in the database instead.

Recovery codes are checked by allauth (in the database) and count against the same limits.
"""

from __future__ import annotations

from allauth.account.internal.stagekit import clear_login, unstash_login
from allauth.core import context
from allauth.core.internal.cryptokit import compare_user_code
from allauth.mfa.adapter import get_adapter
from allauth.mfa.base import forms as allauth_forms
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value, yield_hotp_counters_from_time
from allauth.mfa.utils import decrypt
from django import forms
from django.http import HttpRequest

from core.ratelimit import Decision, Limit, hit, release
from members.models import TotpUse

# Wrong codes per account, at login or re-authentication. Each code is counted before it is
# checked, so simultaneous guesses cannot slip past the limit between check and count, and a right
# one is taken back (`release`): only wrong codes use up the account's five.
MFA_CODES_PER_ACCOUNT = Limit("mfa_codes_account", 5, 300)
# Wrong codes in one login (one correct password): then the login starts over. Kept in the
# session, so it holds while the cache (and with it the limit above) is down.
WRONG_CODES_PER_LOGIN = 3
WRONG_CODES_SESSION_KEY = "members.mfa.wrong_codes"


def use_totp_code(authenticator: Authenticator, code: str) -> bool:
    """Whether `code` is `authenticator`'s TOTP code for a time step later than any it was used
    with; if so, that step is recorded as used. Check and record are one conditional UPDATE, so
    of two requests with the same code exactly one succeeds, whichever workers serve them."""
    secret = decrypt(authenticator.data["secret"])
    step = next(
        (
            counter
            for counter in yield_hotp_counters_from_time()
            if compare_user_code(actual=code, expected=format_hotp_value(hotp_value(secret, counter)))
        ),
        None,
    )
    if step is None:
        return False
    TotpUse.objects.bulk_create([TotpUse(authenticator=authenticator, last_step=-1)], ignore_conflicts=True)
    return TotpUse.objects.filter(authenticator=authenticator, last_step__lt=step).update(last_step=step) == 1


def _minutes(decision: Decision) -> int:
    return max(1, -(-decision.retry_after // 60))


class _LimitedCodeMixin(allauth_forms.BaseAuthenticateForm):  # type: ignore[misc]
    user: object
    authenticator: Authenticator

    def clean_code(self) -> str:
        code: str = self.cleaned_data["code"]
        decision = hit(MFA_CODES_PER_ACCOUNT, str(self.user.pk))  # type: ignore[attr-defined]
        if decision is not None and not decision.allowed:
            self.refused(decision)
        main: Authenticator | None = None
        for authenticator in Authenticator.objects.filter(user=self.user).exclude(type=Authenticator.Type.WEBAUTHN):
            if main is None or authenticator.type == Authenticator.Type.TOTP:
                main = authenticator  # allauth reports a failure against the TOTP authenticator
            if authenticator.type == Authenticator.Type.TOTP:
                valid = use_totp_code(authenticator, code)
            else:
                valid = authenticator.wrap().validate_code(code)
            if valid:
                release(decision)
                authenticator.user = self.user
                self.authenticator = authenticator
                return code
        if main is not None:
            # Recorded in the member's activity (members/receivers.py).
            self._emit_authentication_failed(main)
        self.wrong(decision)
        raise get_adapter().validation_error("incorrect_code")

    def refused(self, decision: Decision) -> None:
        raise forms.ValidationError(
            f"Too many wrong codes: try again in {_minutes(decision)} minutes.", code="too_many_codes"
        )

    def wrong(self, decision: Decision | None) -> None:
        """After a wrong code, with the account's count as `decision` (None with the cache down)."""


class AuthenticateForm(_LimitedCodeMixin, allauth_forms.AuthenticateForm):  # type: ignore[misc]
    """The code asked for after the password. Once the account is over its limit, or this login
    has had WRONG_CODES_PER_LOGIN wrong codes, the pending login is dropped: the next try starts
    from the password."""

    def refused(self, decision: Decision) -> None:
        _start_over(context.request)
        raise forms.ValidationError(
            f"Too many wrong codes: log in again in {_minutes(decision)} minutes.", code="too_many_codes"
        )

    def wrong(self, decision: Decision | None) -> None:
        request = context.request
        if (decision is not None and decision.remaining == 0) or _count_wrong_code(request) >= WRONG_CODES_PER_LOGIN:
            _start_over(request)
            raise forms.ValidationError("Incorrect code. Too many wrong codes: log in again.", code="too_many_codes")


class ReauthenticateForm(_LimitedCodeMixin, allauth_forms.ReauthenticateForm):  # type: ignore[misc]
    """The code asked for by a logged-in member before a sensitive change, or by the admin."""


def _count_wrong_code(request: HttpRequest) -> int:
    """Count a wrong code against the pending login (told apart by when it began); the count."""
    login = unstash_login(request, peek=True)
    began = login.initiated_at if login is not None else None
    stored = request.session.get(WRONG_CODES_SESSION_KEY) or {}
    count = int(stored.get("count", 0)) + 1 if stored.get("login") == began else 1
    request.session[WRONG_CODES_SESSION_KEY] = {"login": began, "count": count}
    return count


def _start_over(request: HttpRequest) -> None:
    clear_login(request)
    request.session.pop(WRONG_CODES_SESSION_KEY, None)
