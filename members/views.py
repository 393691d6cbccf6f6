"""Member pages: profile, API tokens and the activity log."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from core import pagecache
from core.cache import ALL, MEDIUM, MEMBER, Namespace
from members import services
from members.forms import ACTIVITY_FILTER_CHOICES, ActivityFilterForm, ApiTokenForm, ProfileForm
from members.http import MemberRequest, origin
from members.models import ActivityLog, ApiToken
from members.pagination import decode_cursor, encode_cursor
from members.reads import profile_summary

# The tokens page lists live tokens and those that ended in this window, newest first, up to
# TOKENS_LISTED of them: enough for any real use, and a page that stays small for a member
# who scripted the creation of thousands.
TOKENS_ENDED_WINDOW = dt.timedelta(days=30)
TOKENS_LISTED = 100
ACTIVITY_PAGE_SIZE = 50

View = TypeVar("View", bound=Callable[..., HttpResponse])


def _shell(request: MemberRequest) -> tuple[Any, ...]:
    """What the page shell (base.html) and the Web Vitals tag read of the member beyond the data
    their namespace versions cover."""
    member = request.user
    return (member.email, member.is_staff, member.deletion_scheduled_for, member.tier)


def member_page(*, member: Sequence[Namespace] = (), shared: Sequence[Namespace] = ()) -> Callable[[View], View]:
    """Cache a member page's body (`core.pagecache`) under the member's MEMBER namespace, the
    member's scope of the namespaces in `member`, and the global namespaces in `shared` (CONFIG
    for a page that lists the plans): every write that changes what the page shows invalidates
    one of them. Goes under `login_required`."""
    return pagecache.cached_page(
        tier=MEDIUM,
        scopes=lambda request: [
            (MEMBER, request.user.pk),
            *((namespace, request.user.pk) for namespace in member),
            *((namespace, ALL) for namespace in shared),
        ],
        vary=_shell,
    )


def render_member_page(
    request: MemberRequest,
    template_name: str,
    context: dict[str, Any],
    *,
    status: int = 200,
    time_zone: str | None = None,
) -> HttpResponse:
    """Render a member page with dates and times in the member's own time zone.

    Unless given `time_zone`, reads it from the member's cached profile summary: no query
    once it is cached."""
    time_zone = time_zone or profile_summary(request.user.pk).time_zone
    try:
        zone = zoneinfo.ZoneInfo(time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        # A name the server's zone database lacks (an older tzdata) must not break the page.
        zone, time_zone = zoneinfo.ZoneInfo("UTC"), "UTC"
    with timezone.override(zone):
        context = {**context, "time_zone": time_zone, **pagecache.csrf_context(request)}
        return render(request, template_name, context, status=status)


# --- Profile ---------------------------------------------------------------------------------


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
@member_page()
def profile(request: MemberRequest) -> HttpResponse:
    current = request.user.profile
    if request.method == "POST":
        form = ProfileForm(request.POST, current_time_zone=current.time_zone)
        if form.is_valid():
            changed = services.update_profile(
                member=request.user,
                display_name=form.cleaned_data["display_name"],
                bio=form.cleaned_data["bio"],
                time_zone=form.cleaned_data["time_zone"],
                email_updates=form.cleaned_data["email_updates"],
                **origin(request),
            )
            if changed:
                messages.success(request, "Your profile is saved.")
            else:
                messages.info(request, "Nothing changed, so nothing was saved.")
            return redirect("profile")
    else:
        form = ProfileForm(
            initial={
                "display_name": current.display_name,
                "bio": current.bio,
                "time_zone": current.time_zone,
                "email_updates": bool(current.preferences.get("email_updates", False)),
            },
            current_time_zone=current.time_zone,
        )
    return render_member_page(
        request, "members/profile.html", {"form": form, "profile": current}, time_zone=current.time_zone
    )


# --- API tokens ------------------------------------------------------------------------------


def _get_token_for_member(request: MemberRequest, pk: int) -> ApiToken:
    """The caller's token `pk`; 404 for a token that does not exist or is another member's,
    so the response never tells which."""
    token = ApiToken.objects.for_member(request.user).defer("token_hash").filter(pk=pk).first()
    if token is None:
        raise Http404("No such token.")
    # The filter proved the row is the caller's; reuse the loaded member rather than query it.
    token.member = request.user
    return token


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
@member_page(member=[services.TOKEN_USE])
def tokens(request: MemberRequest) -> HttpResponse:
    """List and create tokens.

    A created token's plain text is rendered in the response to the POST itself, never put in
    the session or a redirect, so there is no second request that could show it again; the
    response is `no-store` (`never_cache`) so no cache or back button keeps a copy. Reloading
    that page asks the browser to re-send the form, which would create another token, never
    reveal this one."""
    created: tuple[ApiToken, str] | None = None
    if request.method == "POST":
        form = ApiTokenForm(request.POST)
        if form.is_valid():
            expires_in = form.expires_in()
            created = services.create_api_token(
                member=request.user,
                name=form.cleaned_data["name"],
                scopes=form.chosen_scopes(),
                expires_at=None if expires_in is None else timezone.now() + expires_in,
                **origin(request),
            )
            form = ApiTokenForm()
    else:
        form = ApiTokenForm()
    listed = list(
        ApiToken.objects.for_member(request.user)
        .live_or_ended_since(timezone.now() - TOKENS_ENDED_WINDOW)
        .newest_first()
        .only("name", "prefix", "last_chars", "scopes", "created_at", "expires_at", "last_used_at", "revoked_at")[
            : TOKENS_LISTED + 1
        ]
    )
    now = timezone.now()
    for token in listed[:TOKENS_LISTED]:
        # The page says which tokens are live: a cached copy must not outlive the next expiry.
        if token.revoked_at is None and token.expires_at is not None and token.expires_at > now:
            pagecache.valid_until(request, token.expires_at.timestamp())
    context = {
        "form": form,
        "tokens": listed[:TOKENS_LISTED],
        "more_tokens": len(listed) > TOKENS_LISTED,
        "tokens_listed": TOKENS_LISTED,
        "ended_window_days": TOKENS_ENDED_WINDOW.days,
        "now": now,
        "new_token": created[0] if created else None,
        "new_token_plain": created[1] if created else "",
    }
    return render_member_page(request, "members/tokens.html", context)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def revoke_token(request: MemberRequest, pk: int) -> HttpResponse:
    """GET asks for confirmation; POST revokes."""
    token = _get_token_for_member(request, pk)
    if request.method == "POST":
        if services.revoke_api_token(token=token, **origin(request)):
            messages.success(request, f"Revoked “{token.name}”. Programs using it can no longer call the API.")
        else:
            messages.info(request, f"“{token.name}” was already revoked.")
        return redirect("tokens")
    return render_member_page(request, "members/token_revoke.html", {"token": token})


# --- Activity --------------------------------------------------------------------------------

_FIELD_LABELS = {"display_name": "display name", "time_zone": "time zone", "email_updates": "email updates"}


def _describe(detail: Any) -> str:
    """A short, human summary of an entry's detail: the token's name, the profile fields."""
    if not isinstance(detail, dict):  # a JSON column: whatever another writer stored
        return ""
    parts = []
    if name := detail.get("name"):
        parts.append(f"“{name}”")
    if fields := detail.get("fields"):
        parts.append(", ".join(_FIELD_LABELS.get(str(field), str(field)) for field in fields))
    # Subscription changes and payments, as `subscriptions` records them.
    if plan := detail.get("plan"):
        parts.append(f"{str(plan).capitalize()}, {str(detail.get('status', '')).replace('_', ' ')}")
    amount, currency = detail.get("amount_cents"), detail.get("currency")
    if isinstance(amount, int) and isinstance(currency, str):
        parts.append(f"{amount / 100:.2f} {currency.upper()}")
    return "; ".join(parts)


@never_cache
@login_required
@require_GET
@member_page()
def activity(request: MemberRequest) -> HttpResponse:
    """The member's log, newest first, ACTIVITY_PAGE_SIZE a page, by keyset cursor.

    `?before=<cursor>` reads older entries, `?after=<cursor>` newer ones; `?action=` filters
    and is carried by every page link. One query a page, whatever the page's depth."""
    filter_form = ActivityFilterForm(request.GET)
    action = filter_form.cleaned_data["action"] if filter_form.is_valid() else ""
    entries = ActivityLog.objects.for_member(request.user)
    if action:
        entries = entries.filter(action=action)

    direction = "before" if "before" in request.GET else "after" if "after" in request.GET else ""
    cursor = decode_cursor(request.GET[direction]) if direction else None
    if direction and cursor is None:
        # A mangled or hand-edited link: answer with the first page, not an error.
        messages.warning(request, "That page link is not valid, so here are your newest entries.")
        direction = ""

    page_size = ACTIVITY_PAGE_SIZE
    if direction == "before" and cursor is not None:
        rows = list(entries.recent().before(*cursor)[: page_size + 1])
        has_older, has_newer = len(rows) > page_size, True
        rows = rows[:page_size]
    elif direction == "after" and cursor is not None:
        rows = list(entries.after(*cursor)[: page_size + 1])
        has_older, has_newer = True, len(rows) > page_size
        rows = rows[:page_size][::-1]
    else:
        rows = list(entries.recent()[: page_size + 1])
        has_older, has_newer = len(rows) > page_size, False
        rows = rows[:page_size]

    def page_url(**cursor: str) -> str:
        query = {**({"action": action} if action else {}), **cursor}
        return reverse("activity") + (f"?{urlencode(query)}" if query else "")

    context = {
        "filter_form": filter_form,
        "action_choices": ACTIVITY_FILTER_CHOICES,
        "action": action,
        "entries": [(entry, _describe(entry.detail)) for entry in rows],
        "newest_url": page_url() if direction else "",
        "newer_url": page_url(after=encode_cursor(rows[0])) if has_newer and rows else "",
        "older_url": page_url(before=encode_cursor(rows[-1])) if has_older and rows else "",
        "page_size": page_size,
    }
    return render_member_page(request, "members/activity.html", context)
