"""Forms of the member pages: profile, API tokens and the activity filter; and the sign-up and
password change forms of allauth, adjusted (settings.ACCOUNT_FORMS)."""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from typing import Any, cast

from allauth.account.adapter import get_adapter
from allauth.account.forms import ChangePasswordForm as AllauthChangePasswordForm
from allauth.account.forms import SignupForm as AllauthSignupForm
from django import forms
from django.contrib.auth.hashers import make_password
from django.forms.utils import flatatt
from django.http import HttpRequest, HttpResponse
from django.utils.choices import CallableChoiceIterator
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from members.models import Action, Profile, TokenScope

# The areas of the IANA database that hold canonical zones. The others (US/, Canada/, Etc/...)
# are backward-compatible aliases, which would only make the list longer and harder to scan.
_TIME_ZONE_AREAS = (
    "Africa",
    "America",
    "Antarctica",
    "Arctic",
    "Asia",
    "Atlantic",
    "Australia",
    "Europe",
    "Indian",
    "Pacific",
)

GroupedChoices = list[tuple[str, list[tuple[str, str]]]]


@functools.cache
def time_zone_choices() -> GroupedChoices:
    """`UTC`, then the canonical zones grouped by area, for a `<select>` with `<optgroup>`s.
    Read once per process: `zoneinfo.available_timezones()` walks the zone files on each call."""
    groups: dict[str, list[tuple[str, str]]] = {area: [] for area in _TIME_ZONE_AREAS}
    for name in sorted(zoneinfo.available_timezones()):
        area, _, place = name.partition("/")
        if area in groups:
            groups[area].append((name, place.replace("_", " ")))
    return [("Universal", [("UTC", "UTC")]), *((area, zones) for area, zones in groups.items() if zones)]


def _options_html(choices: GroupedChoices) -> str:
    return "".join(
        format_html('<optgroup label="{}">', group)
        + "".join(format_html('<option value="{}">{}</option>', name, label) for name, label in zones)
        + "</optgroup>"
        for group, zones in choices
    )


@functools.cache
def _time_zone_options_html() -> str:
    return _options_html(time_zone_choices())


class TimeZoneSelect(forms.Select):
    """The same `<select>` as Django's, its 600 options written once per process instead of
    rendering a template per option on every page view (about 45 ms of the profile page's CPU);
    only the selected option is marked per render."""

    def use_required_attribute(self, initial: Any) -> bool:
        # As Django's Select decides, without normalising every choice to find the first: the
        # first option (UTC, or the member's own zone) has a value, so `required` would be
        # invalid HTML on this select.
        return False

    def render(self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None) -> SafeString:
        if isinstance(self.choices, CallableChoiceIterator) and self.choices.func is time_zone_choices:
            options = _time_zone_options_html()  # iterating the choices would normalise all 600
        else:  # the offered zones after the member's own, which is not among them
            options = _options_html(cast("GroupedChoices", list(self.choices)))
        if value not in (None, ""):
            option = format_html('<option value="{}">', value)
            options = options.replace(option, option[:-1] + " selected>", 1)
        final_attrs = self.build_attrs(self.attrs, attrs)
        return format_html('<select name="{}"{}>{}</select>', name, flatatt(final_attrs), mark_safe(options))  # noqa: S308 (built from escaped parts)


@functools.cache
def _offered_names() -> frozenset[str]:
    return frozenset(name for _, zones in time_zone_choices() for name, _ in zones)


class ProfileForm(forms.Form):
    display_name = forms.CharField(
        max_length=Profile._meta.get_field("display_name").max_length,
        required=False,
        help_text="Shown on your dashboard. Leave empty to use your email address.",
    )
    bio = forms.CharField(
        max_length=2000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text="Up to 2,000 characters.",
    )
    time_zone = forms.ChoiceField(
        # A callable: each form copies the field, and a copy of 600 choices cost more than the page.
        choices=time_zone_choices,
        widget=TimeZoneSelect,
        help_text="Dates and times on your pages are shown in this time zone.",
    )
    email_updates = forms.BooleanField(
        required=False,
        label="Email me about new features and changes to my plan",
    )

    def __init__(self, *args: Any, current_time_zone: str = "UTC", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if current_time_zone not in _offered_names():
            # A zone set elsewhere (the admin accepts any IANA name, aliases too) stays
            # selectable, so saving the form unchanged never moves the member to another zone.
            field = cast(forms.ChoiceField, self.fields["time_zone"])
            field.choices = [("Current", [(current_time_zone, current_time_zone)]), *time_zone_choices()]

    def clean_bio(self) -> str:
        # Browsers send textarea line breaks as CRLF; store one kind so an unchanged bio compares equal.
        bio: str = self.cleaned_data["bio"]
        return bio.replace("\r\n", "\n")


EXPIRY_CHOICES = [("30", "30 days"), ("90", "90 days"), ("365", "365 days"), ("never", "Never")]


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        max_length=64,
        help_text="What the token is for, so you recognise it later (for example “backup script”).",
    )
    scopes = forms.MultipleChoiceField(
        choices=TokenScope.choices,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one scope."},
        help_text="Read lets the token fetch your data; write lets it change it.",
    )
    expiry = forms.ChoiceField(
        choices=EXPIRY_CHOICES,
        initial="90",
        widget=forms.RadioSelect,
        label="Expires after",
    )

    def expires_in(self) -> dt.timedelta | None:
        """The chosen lifetime; `None` for a token that never expires. Call after `is_valid()`."""
        expiry: str = self.cleaned_data["expiry"]
        return None if expiry == "never" else dt.timedelta(days=int(expiry))

    def chosen_scopes(self) -> list[TokenScope]:
        return [TokenScope(scope) for scope in self.cleaned_data["scopes"]]


ACTIVITY_FILTER_CHOICES = [("", "All actions"), *Action.choices]


class ActivityFilterForm(forms.Form):
    """The activity page's filter, read from the query string so a filtered page can be linked.
    The page writes its select out from ACTIVITY_FILTER_CHOICES (templates/members/activity.html)."""

    action = forms.ChoiceField(choices=ACTIVITY_FILTER_CHOICES, required=False)


class ConfirmPasswordForm(forms.Form):
    """The member's current password, asked again before something that cannot be taken back."""

    password = forms.CharField(
        label="Your password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )

    def __init__(self, *args: Any, member: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.member = member

    def clean_password(self) -> str:
        password: str = self.cleaned_data["password"]
        if not self.member.check_password(password):
            raise forms.ValidationError("That is not your password.", code="wrong_password")
        return password


class SignupForm(AllauthSignupForm):  # type: ignore[misc]
    def try_save(self, request: HttpRequest) -> tuple[Any, HttpResponse | None]:
        """For an address that already has an account, allauth creates nothing and mails its
        owner instead, with the same answer as for a new one. Hash the password all the same
        and throw the hash away: hashing is nearly all the time a new account costs (about
        0.2 s), so without it a fast answer would tell that the address is taken."""
        if self.account_already_exists and self.cleaned_data.get("password1"):
            make_password(self.cleaned_data["password1"])
        return cast("tuple[Any, HttpResponse | None]", super().try_save(request))


class ChangePasswordForm(AllauthChangePasswordForm):  # type: ignore[misc]
    def clean_oldpassword(self) -> str:
        """Check the current password as a login does (members.adapters.AccountAdapter): a wrong
        one is a failed login of the account, and while the account is over its limit even the
        right one is refused. allauth's own form checks it directly, so an open session could
        guess the password beside the login form's limit."""
        password = str(self.cleaned_data.get("oldpassword", ""))
        adapter = get_adapter()
        if not adapter.reauthenticate(self.user, password):
            raise adapter.validation_error("enter_current_password")
        return password
