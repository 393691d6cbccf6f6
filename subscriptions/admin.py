"""Staff admin for plans and subscriptions, and the subscriptions shown on a member's page."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

import stripe
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from members.admin import ApiTokenInline, LatestActivityInline, MemberAdmin, ProfileInline, ReadOnlyInline
from members.models import Member, Tier
from subscriptions import stripe_api, tasks, webhooks
from subscriptions.models import Plan, ReconciliationRun, StripeEvent, Subscription
from subscriptions.services import (
    BillingError,
    comp_membership,
    refresh_from_stripe,
    save_plan,
    set_cancel_at_period_end,
)


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin[Plan]):
    list_display = ("name", "code", "tier", "price", "interval", "is_active", "stripe_price_id")
    list_filter = ("is_active", "tier", "interval")
    # A handful of rows: any search is cheap.
    search_fields = ("code", "name")
    fields = (
        "code",
        "name",
        "tier",
        "price_cents",
        "currency",
        "interval",
        "stripe_price_id",
        "is_active",
        "created_at",
        "updated_at",
    )
    readonly_fields = ("created_at", "updated_at")
    ordering = ("price_cents", "code")

    def save_model(self, request: HttpRequest, obj: Plan, form: forms.Form, change: bool) -> None:
        save_plan(plan=obj)


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin[Subscription]):
    """Subscriptions are read here, and changed only through the actions: paid ones follow
    Stripe (webhooks, reconciliation), comps are granted from the member list. A form that set a
    status by hand would let the member's tier disagree with Stripe."""

    list_display = ("member", "plan", "status", "current_period_end", "cancel_at_period_end", "source", "created_at")
    list_select_related = ("member", "plan")
    # Status is served by the (status, current_period_end) index, plan by its foreign key's.
    list_filter = ("status", "plan", ("current_period_end", admin.DateFieldListFilter))
    search_fields = ("member__email__startswith", "=stripe_subscription_id", "=stripe_customer_id")
    search_help_text = "Start of the member's email address, or a Stripe subscription or customer id."
    fields = (
        "member",
        "plan",
        "status",
        "current_period_start",
        "current_period_end",
        "cancel_at_period_end",
        "canceled_at",
        "stripe_subscription_id",
        "stripe_customer_id",
        "stripe_state_at",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields
    actions = ("cancel_selected", "refresh_from_stripe")
    # Newest first by primary key: `created_at` has no index here.
    ordering = ("-id",)
    # The paginator counts the filtered rows already; a second count of every row is waste.
    show_full_result_count = False

    @admin.display(description="billed by")
    def source(self, obj: Subscription) -> str:
        return "Stripe" if obj.is_stripe else "staff (comp)"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # comps: the member list's "Comp a membership"; paid: Stripe Checkout

    def has_change_permission(self, request: HttpRequest, obj: Subscription | None = None) -> bool:
        return False  # a view-only page: nothing here may be set by hand

    def has_manage_permission(self, request: HttpRequest) -> bool:
        """Who may run the actions: staff allowed to change subscriptions."""
        return request.user.has_perm("subscriptions.change_subscription")

    def has_delete_permission(self, request: HttpRequest, obj: Subscription | None = None) -> bool:
        return False  # the history stays; end a subscription with an action

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Subscription], search_term: str
    ) -> tuple[QuerySet[Subscription], bool]:
        # Emails are stored lower-cased; see `members/admin.py`. Stripe ids are lower case too.
        return super().get_search_results(request, queryset, search_term.strip().lower())

    def get_queryset(self, request: HttpRequest) -> QuerySet[Subscription]:
        # The change page shows `str(subscription)`, which names the member and the plan.
        return super().get_queryset(request).select_related("member", "plan")

    @admin.action(
        description="Cancel selected subscriptions (paid: at period end in Stripe; comps: now)",
        permissions=["manage"],
    )
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        staff = cast(Member, request.user)
        done, failed = 0, []
        for subscription in Subscription.objects.filter(pk__in=queryset.values("pk")).live():
            if subscription.is_stripe and not stripe_api.configured():
                failed.append(f"{subscription.member}: billing is not configured")
                continue
            try:
                set_cancel_at_period_end(subscription=subscription, cancel=True, actor=staff)
            except (stripe.StripeError, BillingError) as error:
                failed.append(f"{subscription.member}: {getattr(error, 'user_message', None) or error}")
                continue
            done += 1
        if done:
            self.message_user(request, f"Cancelled {done} subscription{'s' if done != 1 else ''}.", messages.SUCCESS)
        for line in failed:
            self.message_user(request, f"Not cancelled: {line}", messages.ERROR)
        if not done and not failed:
            self.message_user(request, "None of the selected subscriptions is live.", messages.WARNING)

    @admin.action(description="Refresh selected subscriptions from Stripe", permissions=["manage"])
    def refresh_from_stripe(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        if not stripe_api.configured():
            self.message_user(request, "Billing is not configured: STRIPE_SECRET_KEY is not set.", messages.ERROR)
            return
        done, failed = 0, []
        for subscription in Subscription.objects.filter(pk__in=queryset.values("pk")).with_stripe_id():
            try:
                refresh_from_stripe(subscription_id=subscription.stripe_subscription_id, source="staff")
            except (stripe.StripeError, BillingError, stripe_api.StripeDataError) as error:
                failed.append(f"{subscription.stripe_subscription_id}: {getattr(error, 'user_message', None) or error}")
                continue
            done += 1
        self.message_user(request, f"Refreshed {done} subscription{'s' if done != 1 else ''} from Stripe.")
        for line in failed:
            self.message_user(request, f"Not refreshed: {line}", messages.ERROR)


class FailedFilter(admin.SimpleListFilter):
    title = "processing"
    parameter_name = "processing"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("failed", "Failed"), ("pending", "Not processed"), ("processed", "Processed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "failed":
            return queryset.filter(processed_at__isnull=True).exclude(error="")
        if self.value() == "pending":
            return queryset.filter(processed_at__isnull=True)
        if self.value() == "processed":
            return queryset.filter(processed_at__isnull=False)
        return queryset


@admin.register(StripeEvent)
class StripeEventAdmin(admin.ModelAdmin[StripeEvent]):
    """The log of every webhook delivery. Read-only: Stripe wrote it. Failed events are
    re-processed with the action once the cause is fixed (a plan's Stripe price id, say)."""

    list_display = ("stripe_id", "type", "stripe_created_at", "received_at", "deliveries", "processed_at", "outcome")
    list_filter = (FailedFilter, "type", ("received_at", admin.DateFieldListFilter))
    search_fields = ("=stripe_id",)
    search_help_text = "A Stripe event id, evt_…"
    ordering = ("-received_at",)
    date_hierarchy = None
    show_full_result_count = False
    actions = ("reprocess_selected",)
    fields = (
        "stripe_id",
        "type",
        "livemode",
        "stripe_created_at",
        "received_at",
        "last_received_at",
        "deliveries",
        "processed_at",
        "outcome",
        "error",
        "payload",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: StripeEvent | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: StripeEvent | None = None) -> bool:
        return False

    def has_reprocess_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("subscriptions.change_stripeevent")

    @admin.action(description="Re-process selected events that failed", permissions=["reprocess"])
    def reprocess_selected(self, request: HttpRequest, queryset: QuerySet[StripeEvent]) -> None:
        """Queue the task that applies each selected unprocessed event (the same task, with the
        same once-only lock, as a delivery). Run eagerly (no broker), the outcome is known here."""
        done, failed, queued, skipped = 0, [], 0, 0
        for event in queryset.filter(processed_at__isnull=True):
            outcome = tasks.queue_stripe_event(event.pk)
            if outcome is None:
                queued += 1
                continue
            if outcome["status"] == webhooks.Status.FAILED.value:
                failed.append(f"{event.stripe_id}: {outcome['detail']}")
            elif outcome["status"] == webhooks.Status.DUPLICATE.value:
                skipped += 1
            else:
                done += 1
        skipped += queryset.filter(processed_at__isnull=False).count()
        if done:
            self.message_user(request, f"Processed {done} event{'s' if done != 1 else ''}.", messages.SUCCESS)
        if queued:
            self.message_user(
                request,
                f"Queued {queued} event{'s' if queued != 1 else ''} for a worker; "
                "refresh to see the outcome (failed events keep their error).",
                messages.SUCCESS,
            )
        if skipped:
            self.message_user(request, f"{skipped} had been processed already and were left alone.", messages.INFO)
        for line in failed:
            self.message_user(request, f"Failed again: {line}", messages.ERROR)


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(admin.ModelAdmin[ReconciliationRun]):
    list_display = ("started_at", "finished_at", "dry_run", "checked", "drifted", "repaired", "error")
    list_filter = ("dry_run",)
    ordering = ("-started_at",)
    fields = ("started_at", "finished_at", "dry_run", "checked", "drifted", "repaired", "changes", "error")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs come from `python manage.py reconcile_stripe`

    def has_delete_permission(self, request: HttpRequest, obj: ReconciliationRun | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ReconciliationRun | None = None) -> bool:
        return False


class SubscriptionInline(ReadOnlyInline):
    """A member's subscriptions, read-only on the member's page; each links to its own page."""

    model = Subscription
    fields = ("plan", "status", "current_period_start", "current_period_end", "cancel_at_period_end")
    readonly_fields = fields
    ordering = ("-id",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Subscription]:
        # Each row's title, `str(subscription)`, names the member and the plan.
        return super().get_queryset(request).select_related("member", "plan")


# `members` imports no other app of ours, so the member page's subscriptions are added here: the
# member admin is registered again with this app's inline between the profile and the tokens.
admin.site.unregister(Member)


class CompForm(forms.Form):
    plan = forms.ModelChoiceField(queryset=Plan.objects.exclude(tier=Tier.FREE).order_by("price_cents", "code"))
    until = forms.DateTimeField(
        help_text="When the comp ends by itself (`expire_subscriptions`), in the site's time zone.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )

    def clean_until(self) -> dt.datetime:
        until: dt.datetime = self.cleaned_data["until"]
        if until <= timezone.now():
            raise forms.ValidationError("The end must be in the future.")
        return until


@admin.register(Member)
class MemberWithSubscriptionsAdmin(MemberAdmin):
    inlines = (ProfileInline, SubscriptionInline, ApiTokenInline, LatestActivityInline)
    actions = ("comp_membership", *MemberAdmin.actions)

    def has_comp_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("subscriptions.add_subscription")

    @admin.action(description="Comp a membership (a plan for a period, without Stripe)", permissions=["comp"])
    def comp_membership(self, request: HttpRequest, queryset: QuerySet[Member]) -> TemplateResponse | None:
        """An intermediate page asks for the plan and the end; the members are granted on submit."""
        form = CompForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            staff = cast(Member, request.user)
            granted, refused = 0, []
            for member in queryset:
                try:
                    comp_membership(
                        member=member, plan=form.cleaned_data["plan"], until=form.cleaned_data["until"], actor=staff
                    )
                except BillingError as error:
                    refused.append(str(error))
                    continue
                granted += 1
            if granted:
                self.message_user(
                    request,
                    f"Comped {form.cleaned_data['plan']} for {granted} member{'s' if granted != 1 else ''}.",
                    messages.SUCCESS,
                )
            for line in refused:
                self.message_user(request, f"Not comped: {line}", messages.ERROR)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Comp a membership",
            "form": form,
            "members": queryset,
            "opts": self.model._meta,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "action": "comp_membership",
        }
        return TemplateResponse(request, "admin/subscriptions/comp_membership.html", context)
