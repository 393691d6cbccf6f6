"""Plans and members' subscriptions to them."""

from __future__ import annotations

import datetime as dt

from django.db import models
from django.db.models import Q
from django.utils import timezone

from members.models import Member, Tier


class PlanInterval(models.TextChoices):
    MONTH = "month", "Monthly"
    YEAR = "year", "Yearly"


class PlanQuerySet(models.QuerySet["Plan"]):
    def active(self) -> PlanQuerySet:
        """Plans members may choose now, cheapest first."""
        return self.filter(is_active=True).order_by("price_cents", "code")


class Plan(models.Model):
    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=64)
    tier = models.CharField(max_length=16, choices=Tier.choices)
    price_cents = models.PositiveIntegerField(help_text="Price per interval in the currency's minor unit (cents).")
    currency = models.CharField(max_length=3, default="usd", help_text="ISO 4217 code, lower case, as Stripe uses.")
    interval = models.CharField(max_length=8, choices=PlanInterval.choices, default=PlanInterval.MONTH)
    stripe_price_id = models.CharField(max_length=255, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PlanQuerySet.as_manager()

    class Meta:
        constraints = [
            # Checkout and webhooks find the plan by Stripe price id; free plans have none.
            models.UniqueConstraint(
                fields=["stripe_price_id"], condition=~Q(stripe_price_id=""), name="plan_stripe_price_unique"
            ),
            models.CheckConstraint(condition=Q(tier__in=Tier.values), name="plan_tier_valid"),
            models.CheckConstraint(condition=Q(currency__regex=r"^[a-z]{3}$"), name="plan_currency_iso"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def price(self) -> str:
        return f"{self.price_cents / 100:.2f} {self.currency.upper()}"


class SubscriptionStatus(models.TextChoices):
    """Stripe's subscription statuses, plus `comped` for memberships staff grant without Stripe."""

    INCOMPLETE = "incomplete", "Incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired", "Incomplete, expired"
    TRIALING = "trialing", "Trialing"
    ACTIVE = "active", "Active"
    PAST_DUE = "past_due", "Past due"
    CANCELED = "canceled", "Canceled"
    UNPAID = "unpaid", "Unpaid"
    PAUSED = "paused", "Paused"
    COMPED = "comped", "Comped"


# Statuses in which a subscription gives its plan's tier. A member has at most one of these.
LIVE_STATUSES = (
    SubscriptionStatus.TRIALING,
    SubscriptionStatus.ACTIVE,
    SubscriptionStatus.PAST_DUE,
    SubscriptionStatus.COMPED,
)


# Live statuses that Stripe carries into a new period by itself.
RENEWING_STATUSES = (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)


class SubscriptionQuerySet(models.QuerySet["Subscription"]):
    def for_member(self, member: Member) -> SubscriptionQuerySet:
        return self.filter(member=member)

    def live(self) -> SubscriptionQuerySet:
        return self.filter(status__in=LIVE_STATUSES).select_related("plan")

    def with_status(self, status: str) -> SubscriptionQuerySet:
        return self.filter(status=status).order_by("current_period_end")

    def comps_due(self, at: dt.datetime) -> SubscriptionQuerySet:
        """Comped memberships whose period has ended by `at`, oldest first (the status/end index)."""
        return self.with_status(SubscriptionStatus.COMPED).filter(current_period_end__lte=at)

    def with_stripe_id(self) -> SubscriptionQuerySet:
        return self.exclude(stripe_subscription_id="")


class Subscription(models.Model):
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="subscriptions")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(max_length=24, choices=SubscriptionStatus.choices)
    stripe_subscription_id = models.CharField(max_length=255, blank=True)
    stripe_customer_id = models.CharField(max_length=255, blank=True)
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    canceled_at = models.DateTimeField(null=True, blank=True)
    stripe_state_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When Stripe produced the state this row holds (an event's creation time, or an API read). "
        "Webhook events older than this are not applied.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SubscriptionQuerySet.as_manager()

    class Meta:
        constraints = [
            # A member has at most one live subscription; their tier follows it.
            models.UniqueConstraint(
                fields=["member"],
                condition=Q(status__in=LIVE_STATUSES),
                name="subscription_one_live_per_member",
                violation_error_message="This member already has a live subscription; end it first.",
            ),
            # Webhooks find the local row by Stripe's id; comped rows have none.
            models.UniqueConstraint(
                fields=["stripe_subscription_id"],
                condition=~Q(stripe_subscription_id=""),
                name="subscription_stripe_id_unique",
            ),
            models.CheckConstraint(condition=Q(status__in=SubscriptionStatus.values), name="subscription_status_valid"),
            models.CheckConstraint(
                condition=Q(current_period_end__isnull=True)
                | Q(current_period_start__isnull=True)
                | Q(current_period_end__gte=models.F("current_period_start")),
                name="subscription_period_ordered",
            ),
        ]
        indexes = [
            # Expiry and renewal sweeps: `with_status("comped")` due before a time, by period end.
            models.Index(fields=["status", "current_period_end"], name="subscription_status_end_idx"),
            # Checkout and the customer portal: a member's Stripe customer id.
            models.Index(
                fields=["stripe_customer_id"],
                condition=~Q(stripe_customer_id=""),
                name="subscription_customer_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.member} on {self.plan} ({self.status})"

    def is_live(self, at: dt.datetime | None = None) -> bool:
        """Gives its plan's tier at `at`: a live status, and (for comped) within its period."""
        if self.status not in LIVE_STATUSES:
            return False
        if self.status == SubscriptionStatus.COMPED and self.current_period_end is not None:
            return (at or timezone.now()) < self.current_period_end
        return True

    @property
    def is_stripe(self) -> bool:
        """Billed through Stripe, as opposed to comped by staff."""
        return bool(self.stripe_subscription_id)

    def renews(self) -> bool:
        """Whether `current_period_end` is a renewal date rather than an end date. Stripe renews
        a paid subscription unless it is set to cancel at period end; a comped one just ends."""
        return self.status in RENEWING_STATUSES and not self.cancel_at_period_end


class StripeEventQuerySet(models.QuerySet["StripeEvent"]):
    def failed(self) -> StripeEventQuerySet:
        """Deliveries whose processing raised and has not succeeded since: staff re-process them."""
        return self.filter(processed_at__isnull=True).exclude(error="")


class StripeEvent(models.Model):
    """One Stripe webhook event, as delivered: the log of every delivery and the idempotency key.

    The row is written in the same transaction as the event's effects, so an event is applied
    exactly once however many times (or how concurrently) Stripe delivers it."""

    stripe_id = models.CharField(max_length=255, unique=True, help_text="Stripe's event id, evt_…")
    type = models.CharField(max_length=128)
    livemode = models.BooleanField(default=False)
    stripe_created_at = models.DateTimeField(help_text="When Stripe created the event.")
    payload = models.JSONField()
    received_at = models.DateTimeField(default=timezone.now, help_text="First delivery.")
    last_received_at = models.DateTimeField(default=timezone.now, help_text="Latest delivery.")
    deliveries = models.PositiveIntegerField(default=1)
    processed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=255, blank=True, help_text="What processing did, in a few words.")
    error = models.TextField(blank=True, help_text="Why the latest processing failed; empty once it succeeds.")

    objects = StripeEventQuerySet.as_manager()

    class Meta:
        indexes = [
            # Monitoring: the age of the newest processed event, MAX(processed_at).
            models.Index(fields=["processed_at"], name="stripeevent_processed_idx"),
            # The admin list, newest first, filtered by type.
            models.Index(fields=["type", "-received_at"], name="stripeevent_type_received_idx"),
            # Monitoring and the admin's "failed" filter: deliveries not (yet) processed.
            models.Index(
                fields=["-received_at"],
                condition=Q(processed_at__isnull=True),
                name="stripeevent_unprocessed_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.stripe_id}"


class ReconciliationRun(models.Model):
    """One run of `reconcile_stripe`: how many local subscriptions disagreed with Stripe."""

    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    dry_run = models.BooleanField(default=False)
    checked = models.PositiveIntegerField(default=0)
    drifted = models.PositiveIntegerField(default=0)
    repaired = models.PositiveIntegerField(default=0)
    changes = models.JSONField(default=list, blank=True, help_text="One line per drifted subscription.")
    error = models.TextField(blank=True)

    class Meta:
        indexes = [
            # Monitoring: the latest finished run.
            models.Index(fields=["-finished_at"], name="reconciliation_finished_idx"),
        ]

    def __str__(self) -> str:
        return f"Reconciliation of {self.started_at:%Y-%m-%d %H:%M}"
