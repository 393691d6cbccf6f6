"""Member-facing pages that compose several apps."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core import pagecache, ratelimit
from core.cache import ALL, CONFIG, LONG
from members.forms import ConfirmPasswordForm
from members.http import MemberRequest, origin
from members.models import Action
from members.services import record_activity
from members.views import member_page, render_member_page
from portal import account_data
from portal.dashboard import dashboard_summary
from subscriptions.reads import plans_on_offer


def landing(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("dashboard")
    response = _landing_page(request)
    # The same page for every anonymous visitor, so shared caches (a CDN) may keep it briefly;
    # `Vary: Cookie` keeps a logged-in member's or a flash message's version out of them.
    patch_cache_control(response, public=True, max_age=settings.CACHE_TTL_SHORT)
    patch_vary_headers(response, ["Cookie"])
    return response


@pagecache.cached_page(tier=LONG, scopes=lambda request: [(CONFIG, ALL)])
def _landing_page(request: HttpRequest) -> HttpResponse:
    """The landing page of every anonymous visitor, rendered once per change of the plans."""
    return render(request, "portal/landing.html", {"plans": plans_on_offer()})


@never_cache
@login_required
@require_GET
@member_page()
def dashboard(request: MemberRequest) -> HttpResponse:
    """Everything at a glance. Served from the member's cached summary: warm, the page costs the
    one query that loads the logged-in member; cold, five more (see `dashboard_summary`)."""
    member = request.user
    summary = dashboard_summary(member.pk)
    context = {
        "display_name": summary.display_name or member.email,
        "subscription": summary.subscription,
        "live_token_count": summary.live_token_count,
        "next_to_expire": summary.next_to_expire,
        "activity": summary.activity,
    }
    return render_member_page(request, "portal/dashboard.html", context, time_zone=summary.time_zone)


# --- The member's own data ---------------------------------------------------------------------


@never_cache
@login_required
@require_POST
def export_data(request: MemberRequest) -> StreamingHttpResponse:
    """Everything the portal holds about the member, as a JSON download (portal/account_data.py).
    A POST, so the download is the member's own doing (CSRF) and is recorded."""
    member = request.user
    record_activity(member=member, action=Action.ACCOUNT_EXPORTED, **origin(request))
    response = StreamingHttpResponse(account_data.export_member_data(member), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="member-portal-data-{timezone.now():%Y-%m-%d}.json"'
    return response


# Attempts at the deletion form's password, per member.
DELETE_ACCOUNT_LIMIT = ratelimit.Limit("delete_account", 5, 300)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def delete_account(request: MemberRequest) -> HttpResponse:
    """Ask to delete the account: the password again, then the grace period starts and every
    session, this one included, ends."""
    member = request.user
    if member.deletion_scheduled_for is not None:
        return redirect("profile")
    form = ConfirmPasswordForm(request.POST or None, member=member)
    if request.method == "POST":
        # The password is asked again here: a session left open must not be a way to guess it.
        decision = ratelimit.hit(DELETE_ACCOUNT_LIMIT, str(member.pk))
        if decision is not None and not decision.allowed:
            context = {
                "form": ConfirmPasswordForm(member=member),
                "grace_days": settings.ACCOUNT_DELETION_GRACE_DAYS,
                "refusal": f"Too many attempts. Try again in {decision.retry_after // 60 + 1} minutes.",
            }
            return render_member_page(request, "portal/delete_account.html", context, status=429)
    if request.method == "POST" and form.is_valid():
        try:
            at = account_data.request_deletion(member=member, **origin(request))
        except account_data.DeletionRefused as refused:
            form.add_error(None, str(refused))
        else:
            logout(request)
            messages.success(
                request,
                f"Your account will be deleted on {at:%-d %B %Y}. We sent you an email about it. "
                "To keep your account, log in before then.",
            )
            return redirect("account_login")
    context = {"form": form, "grace_days": settings.ACCOUNT_DELETION_GRACE_DAYS}
    return render_member_page(request, "portal/delete_account.html", context, status=400 if form.errors else 200)


@never_cache
@login_required
@require_POST
def keep_account(request: MemberRequest) -> HttpResponse:
    if account_data.keep_account(member=request.user, **origin(request)):
        messages.success(request, "Your account will not be deleted. Create new API tokens if you need them.")
    return redirect("dashboard")
