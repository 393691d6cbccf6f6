"""The member's subscription page and its actions, and Stripe's webhook endpoint."""

from __future__ import annotations

import logging
from collections.abc import Callable

import stripe
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from core.cache import CONFIG
from members.http import MemberRequest
from members.views import member_page, render_member_page
from subscriptions import services, stripe_api, tasks, webhooks
from subscriptions.models import Plan, Subscription
from subscriptions.reads import plans_on_offer

logger = logging.getLogger(__name__)

BILLING_UNAVAILABLE = "Billing is not configured on this portal, so subscriptions cannot be changed here."
STRIPE_UNREACHABLE = "Stripe could not be reached, so nothing was changed. Please try again in a minute."


def _live(member_id: int) -> Subscription | None:
    return Subscription.objects.filter(member_id=member_id).live().first()


def _customer_id(member_id: int) -> str:
    """The member's Stripe customer, from their latest paid subscription; "" before the first."""
    found = (
        Subscription.objects.filter(member_id=member_id)
        .exclude(stripe_customer_id="")
        .order_by("-id")
        .values_list("stripe_customer_id", flat=True)
        .first()
    )
    return found or ""


def _paid_plan(request: HttpRequest) -> Plan | None:
    """The plan a form names, if it is on offer and can be bought through Stripe."""
    code = request.POST.get("plan", "")
    return Plan.objects.active().exclude(stripe_price_id="").filter(code=code).first()


def _page_url(request: HttpRequest, query: str = "") -> str:
    return request.build_absolute_uri(reverse("subscription")) + query


@never_cache
@login_required
@require_GET
@member_page(shared=[CONFIG])
def subscription(request: MemberRequest) -> HttpResponse:
    if request.GET.get("checkout") == "success" and (session_id := request.GET.get("session_id", "")):
        _apply_checkout(request, session_id)
        return redirect("subscription")
    if request.GET.get("checkout") == "cancelled":
        messages.info(request, "Checkout was cancelled; nothing was changed.")
        return redirect("subscription")

    current = _live(request.user.pk)
    configured = stripe_api.configured()
    plans = plans_on_offer()
    context = {
        "subscription": current,
        "plans": plans,
        "current_plan_id": current.plan_id if current else None,
        "billing_configured": configured,
        "billing_unavailable": BILLING_UNAVAILABLE,
        # Paid plans the member can move to: all of them, less the one they pay for now.
        "purchasable": [
            plan
            for plan in plans
            if plan.purchasable and not (current and current.is_stripe and plan.pk == current.plan_id)
        ],
        "has_billing_account": configured and bool(_customer_id(request.user.pk)),
    }
    return render_member_page(request, "subscriptions/subscription.html", context)


def _apply_checkout(request: MemberRequest, session_id: str) -> None:
    """Back from Checkout: read the session and apply its subscription at once, rather than
    leave the member looking at their old plan until the webhook arrives."""
    if not stripe_api.configured():
        return
    try:
        session = stripe_api.retrieve_checkout_session(session_id)
    except stripe.StripeError:
        logger.warning("Could not read Checkout session after a member's return", exc_info=True)
        messages.info(request, "Thank you. Your subscription will show here as soon as Stripe confirms it.")
        return
    if str(session.get("client_reference_id")) != str(request.user.pk):
        return  # someone else's session: say nothing about it
    subscription = session.get("subscription")
    if session.get("status") != "complete" or not isinstance(subscription, dict):
        messages.info(request, "Thank you. Your subscription will show here as soon as Stripe confirms it.")
        return
    try:
        synced = services.sync_stripe_subscription(
            state=stripe_api.SubscriptionState.from_stripe(subscription),
            state_at=timezone.now(),
            source="checkout",
            member_id=request.user.pk,
        )
    except (services.BillingError, stripe_api.StripeDataError) as error:
        logger.error("Checkout session %s could not be applied: %s", session_id, error)
        messages.warning(
            request,
            "Stripe confirmed your payment, but the portal could not apply it yet. "
            "Staff have been told; your plan will follow shortly.",
        )
        return
    if synced is not None:
        messages.success(request, f"Thank you. You are now on {synced.plan.name}.")


def _send_to_stripe(request: MemberRequest, page: str, make_url: Callable[[], str]) -> HttpResponse:
    """303 to the Stripe page `make_url` opens, or back with a message when Stripe fails."""
    try:
        url = make_url()
    except stripe.StripeError:
        logger.warning("Stripe %s could not be opened", page, exc_info=True)
        messages.error(request, STRIPE_UNREACHABLE)
        return redirect("subscription")
    return HttpResponseRedirect(url, status=303)


@never_cache
@login_required
@require_POST
def checkout(request: MemberRequest) -> HttpResponse:
    """Subscribe, or move from a comp to a paid plan, through Stripe Checkout."""
    if not stripe_api.configured():
        messages.error(request, BILLING_UNAVAILABLE)
        return redirect("subscription")
    plan = _paid_plan(request)
    if plan is None:
        messages.error(request, "Choose one of the plans on offer.")
        return redirect("subscription")
    current = _live(request.user.pk)
    if current is not None and current.is_stripe:
        messages.error(request, "You already have a subscription; change its plan instead.")
        return redirect("subscription")
    return _send_to_stripe(
        request,
        "Checkout",
        lambda: stripe_api.create_checkout_session(
            member_id=request.user.pk,
            email=request.user.email,
            customer_id=_customer_id(request.user.pk),
            price_id=plan.stripe_price_id,
            success_url=_page_url(request, "?checkout=success&session_id={CHECKOUT_SESSION_ID}"),
            cancel_url=_page_url(request, "?checkout=cancelled"),
        ),
    )


@never_cache
@login_required
@require_POST
def change_plan(request: MemberRequest) -> HttpResponse:
    """Move a paid subscription to another plan, confirmed (with its proration) on Stripe's page."""
    if not stripe_api.configured():
        messages.error(request, BILLING_UNAVAILABLE)
        return redirect("subscription")
    plan = _paid_plan(request)
    current = _live(request.user.pk)
    if current is None or not current.is_stripe:
        messages.error(request, "You have no paid subscription to change; subscribe to a plan instead.")
        return redirect("subscription")
    if plan is None or plan.pk == current.plan_id:
        messages.error(request, "Choose another of the plans on offer.")
        return redirect("subscription")

    def confirm_change() -> str:
        state = stripe_api.retrieve_subscription(current.stripe_subscription_id)
        return stripe_api.create_portal_session(
            customer_id=state.customer_id, return_url=_page_url(request), change=state, price_id=plan.stripe_price_id
        )

    return _send_to_stripe(request, "plan change", confirm_change)


@never_cache
@login_required
@require_POST
def billing_portal(request: MemberRequest) -> HttpResponse:
    """Stripe's customer portal: payment methods, invoices, billing details."""
    customer_id = _customer_id(request.user.pk) if stripe_api.configured() else ""
    if not customer_id:
        messages.error(request, "You have no billing account yet; it is made when you first subscribe.")
        return redirect("subscription")
    return _send_to_stripe(
        request,
        "customer portal",
        lambda: stripe_api.create_portal_session(customer_id=customer_id, return_url=_page_url(request)),
    )


def _set_cancel(request: MemberRequest, *, cancel: bool) -> HttpResponse:
    current = _live(request.user.pk)
    if current is None:
        messages.error(request, "You have no subscription to " + ("cancel." if cancel else "resume."))
        return redirect("subscription")
    if not current.is_stripe:
        messages.error(request, "Your membership was given by staff; ask them to change it.")
        return redirect("subscription")
    if not stripe_api.configured():
        messages.error(request, BILLING_UNAVAILABLE)
        return redirect("subscription")
    try:
        updated = services.set_cancel_at_period_end(subscription=current, cancel=cancel, actor=request.user)
    except stripe.StripeError:
        logger.warning("Stripe could not change cancel_at_period_end", exc_info=True)
        messages.error(request, STRIPE_UNREACHABLE)
        return redirect("subscription")
    if not cancel:
        messages.success(request, "Your subscription will renew as before.")
    elif updated.current_period_end is not None:
        end = f"{timezone.localtime(updated.current_period_end):%-d %b %Y}"
        messages.success(request, f"Your subscription will end on {end}; until then nothing changes.")
    else:
        messages.success(request, "Your subscription will end at the close of this period.")
    return redirect("subscription")


@never_cache
@login_required
@require_POST
def cancel(request: MemberRequest) -> HttpResponse:
    return _set_cancel(request, cancel=True)


@never_cache
@login_required
@require_POST
def resume(request: MemberRequest) -> HttpResponse:
    return _set_cancel(request, cancel=False)


# --- Webhooks ------------------------------------------------------------------------------------


@csrf_exempt  # Stripe signs its requests instead; `verify` checks the signature on the raw body.
@never_cache
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    """400 for anything not signed by Stripe, or not a well-formed event (nothing is stored).
    A verified delivery is stored, then answered at once: 200 "accepted" while a worker applies
    it, 200 "duplicate" if it was applied before. With tasks run eagerly (no broker), the event
    is applied before the answer, which says how it went: 200 "processed" or "ignored", or 500
    when applying it failed, so Stripe delivers it again later."""
    try:
        event = webhooks.verify(request.body, request.headers.get("Stripe-Signature"))
    except webhooks.WebhookRejected as rejected:
        logger.warning("Stripe webhook rejected: %s", rejected.code)
        return JsonResponse({"code": rejected.code, "message": rejected.message}, status=400)
    row = services.record_stripe_event(event=event)  # committed here: a worker can read it
    if row.processed_at is not None:
        return JsonResponse({"event": event["id"], "status": webhooks.Status.DUPLICATE.value})
    try:
        outcome = tasks.queue_stripe_event(row.pk)
    except Exception:  # the broker is down: the event is stored, and the sweep will queue it
        logger.exception("Stripe event %s stored but not queued", event["id"])
        return JsonResponse({"event": event["id"], "status": "accepted"})
    if outcome is None:
        return JsonResponse({"event": event["id"], "status": "accepted"})
    if outcome["status"] == webhooks.Status.FAILED.value:
        return JsonResponse(
            {"code": "processing_failed", "message": "The event could not be applied; it is kept for a retry."},
            status=500,
        )
    return JsonResponse({"event": event["id"], "status": outcome["status"]})
