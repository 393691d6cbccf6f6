"""Staff admin for plans and subscriptions, and the subscriptions shown on a member's page."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from members.admin import ApiTokenInline, MemberAdmin, ProfileInline, ReadOnlyInline
from members.models import Member
from subscriptions.models import Plan, Subscription, SubscriptionStatus
from subscriptions.services import save_plan, start_subscription, update_subscription


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
    """A member's tier follows their live subscription, so the fields that decide it (member,
    plan, status) are set once, on the add page, through `start_subscription`, which moves the
    tier with them. Changing them later (cancel, comp, change plan) is for the services behind
    the staff actions to come; the change page edits the rest."""

    list_display = ("member", "plan", "status", "current_period_end", "cancel_at_period_end", "created_at")
    list_select_related = ("member", "plan")
    # Status is served by the (status, current_period_end) index, plan by its foreign key's.
    list_filter = ("status", "plan")
    search_fields = ("member__email__startswith",)
    search_help_text = "Start of the member's email address."
    autocomplete_fields = ("member",)
    add_fields: tuple[str, ...] = (
        "member",
        "plan",
        "status",
        "current_period_start",
        "current_period_end",
        "stripe_subscription_id",
        "stripe_customer_id",
    )
    change_fields: tuple[str, ...] = (
        "member",
        "plan",
        "status",
        "current_period_start",
        "current_period_end",
        "cancel_at_period_end",
        "canceled_at",
        "stripe_subscription_id",
        "stripe_customer_id",
        "created_at",
        "updated_at",
    )
    # Newest first by primary key: `created_at` has no index here.
    ordering = ("-id",)
    # The paginator counts the filtered rows already; a second count of every row is waste.
    show_full_result_count = False

    def get_fields(self, request: HttpRequest, obj: Subscription | None = None) -> tuple[str, ...]:
        return self.add_fields if obj is None else self.change_fields

    def get_readonly_fields(self, request: HttpRequest, obj: Subscription | None = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        return ("member", "plan", "status", "created_at", "updated_at")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Subscription], search_term: str
    ) -> tuple[QuerySet[Subscription], bool]:
        # Emails are stored lower-cased; see `members/admin.py`.
        return super().get_search_results(request, queryset, search_term.lower())

    def get_queryset(self, request: HttpRequest) -> QuerySet[Subscription]:
        # The change page shows `str(subscription)`, which names the member and the plan.
        return super().get_queryset(request).select_related("member", "plan")

    def save_model(self, request: HttpRequest, obj: Subscription, form: forms.Form, change: bool) -> None:
        if change:
            update_subscription(subscription=obj, fields=list(form.changed_data))
            return
        subscription = start_subscription(
            member=obj.member,
            plan=obj.plan,
            status=SubscriptionStatus(obj.status),
            period_start=obj.current_period_start,
            period_end=obj.current_period_end,
            stripe_subscription_id=obj.stripe_subscription_id,
            stripe_customer_id=obj.stripe_customer_id,
        )
        # The admin goes on to log the addition and redirect with `obj`: make it the new row.
        obj.pk = subscription.pk
        obj.refresh_from_db()


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


@admin.register(Member)
class MemberWithSubscriptionsAdmin(MemberAdmin):
    inlines = (ProfileInline, SubscriptionInline, ApiTokenInline)
