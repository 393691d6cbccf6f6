"""Writes on subscriptions. Views, admin, webhooks and commands all call these.

A member's `tier` is the tier of their live subscription, free when they have none. Every
function that can change which subscription is live settles the tier in the same transaction
(`_settle_tier`), records the change in the member's activity and invalidates the cache.

Lock order, to keep concurrent writers (webhooks, staff, the expiry sweep) free of deadlocks:
the member row first, then their subscription rows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import stripe
from django.db import IntegrityError, connections, transaction
from django.db.models import F
from django.utils import timezone

from core.cache import CONFIG, MEMBER, STAFF, invalidate, invalidate_on_commit
from members.models import Action, Member, Tier
from members.services import record_activity, set_member_tier
from subscriptions import stripe_api
from subscriptions.models import (
    LIVE_STATUSES,
    Plan,
    PlanInterval,
    ReconciliationRun,
    StripeEvent,
    Subscription,
    SubscriptionStatus,
)
from subscriptions.stripe_api import SubscriptionState

# Stripe never moves a subscription out of these.
ENDED_STATUSES = (SubscriptionStatus.CANCELED, SubscriptionStatus.INCOMPLETE_EXPIRED)

# The plans a fresh portal offers: (code, name, tier, price in cents per month). Staff edit them,
# and set their Stripe price ids, in the admin.
DEFAULT_PLANS = (
    ("free", "Free", Tier.FREE, 0),
    ("basic", "Basic", Tier.BASIC, 900),
    ("pro", "Pro", Tier.PRO, 2900),
)


class BillingError(Exception):
    """A change the member's billing does not allow. The message says why, for the person asking."""


def ensure_default_plans(*, using: str = "default") -> None:
    """Give a portal with no plan at all the default plans. Once any plan exists the table is
    staff's: a plan they deleted or renamed is not brought back by the next migrate."""
    if Plan._meta.db_table not in connections[using].introspection.table_names():
        return  # migrated back to before the plans (`migrate subscriptions zero`)
    if Plan.objects.using(using).exists():
        return
    Plan.objects.using(using).bulk_create(
        Plan(code=code, name=name, tier=tier, price_cents=price_cents)
        for code, name, tier, price_cents in DEFAULT_PLANS
    )
    invalidate_on_commit(CONFIG)


@transaction.atomic
def restore_default_plans() -> dict[str, Plan]:
    """The default plans as a fresh portal has them, each by its code, made or put back (name,
    tier, monthly price, on offer), leaving what staff set up besides (the Stripe price id) as
    it is. For demo data: a live portal's plans are staff's (`ensure_default_plans`)."""
    plans: dict[str, Plan] = {}
    for code, name, tier, price_cents in DEFAULT_PLANS:
        plans[code], _ = Plan.objects.update_or_create(
            code=code,
            defaults={
                "name": name,
                "tier": tier,
                "price_cents": price_cents,
                "currency": "usd",
                "interval": PlanInterval.MONTH,
                "is_active": True,
            },
        )
    invalidate_on_commit(CONFIG)
    return plans


@transaction.atomic
def save_plan(*, plan: Plan) -> Plan:
    """Create or change a plan (as staff do in the admin); cached plan lists follow at once."""
    plan.save()
    invalidate_on_commit(CONFIG)
    return plan


def _lock_member(member_id: int) -> Member:
    return Member.objects.select_for_update().get(pk=member_id)


def _settle_tier(member: Member) -> None:
    """Give `member` the tier of their live subscription, free when there is none."""
    live = Subscription.objects.live().filter(member=member).first()
    set_member_tier(member=member, tier=live.plan.tier if live is not None else Tier.FREE)


def _record_change(
    member: Member, subscription: Subscription, *, source: str, actor: Member | None, **extra: Any
) -> None:
    detail: dict[str, Any] = {
        "subscription": subscription.pk,
        "plan": subscription.plan.code,
        "status": subscription.status,
        "source": source,
        **extra,
    }
    if actor is not None:
        detail["actor"] = actor.pk
        detail["actor_email"] = actor.email
    record_activity(member=member, action=Action.SUBSCRIPTION_CHANGED, detail=detail)
    invalidate_on_commit(MEMBER, member.pk)
    invalidate_on_commit(STAFF)


@transaction.atomic
def start_subscription(
    *,
    member: Member,
    plan: Plan,
    status: SubscriptionStatus,
    period_start: dt.datetime | None,
    period_end: dt.datetime | None,
    stripe_subscription_id: str = "",
    stripe_customer_id: str = "",
    actor: Member | None = None,
    source: str = "staff",
) -> Subscription:
    """Put `member` on `plan` and, for a live status, move their tier to the plan's.

    A member has at most one live subscription; a second one is refused by the database
    (IntegrityError on `subscription_one_live_per_member`), so end the old one first."""
    member = _lock_member(member.pk)
    subscription = Subscription.objects.create(
        member=member,
        plan=plan,
        status=status,
        current_period_start=period_start,
        current_period_end=period_end,
        stripe_subscription_id=stripe_subscription_id,
        stripe_customer_id=stripe_customer_id,
    )
    _settle_tier(member)
    _record_change(member, subscription, source=source, actor=actor)
    return subscription


@transaction.atomic
def update_subscription(*, subscription: Subscription, fields: list[str]) -> None:
    """Save fields of a subscription that do not move the member's tier (dates, the
    cancel-at-period-end flag, Stripe ids), as staff edit them in the admin."""
    if fields:
        subscription.save(update_fields=[*fields, "updated_at"])
    invalidate_on_commit(MEMBER, subscription.member_id)
    invalidate_on_commit(STAFF)


# --- Stripe -------------------------------------------------------------------------------------


def _member_for(state: SubscriptionState) -> int:
    """The member a Stripe subscription belongs to: the id our Checkout put in its metadata, or
    the member already billed under its customer."""
    if state.member_id is not None and Member.objects.filter(pk=state.member_id).exists():
        return state.member_id
    if state.customer_id:
        known = (
            Subscription.objects.filter(stripe_customer_id=state.customer_id)
            .values_list("member_id", flat=True)
            .first()
        )
        if known is not None:
            return known
    raise BillingError(f"No member matches Stripe subscription {state.id} (customer {state.customer_id or 'none'}).")


@transaction.atomic
def sync_stripe_subscription(
    *,
    state: SubscriptionState,
    state_at: dt.datetime,
    source: str,
    member_id: int | None = None,
    newer_only: bool = False,
    actor: Member | None = None,
) -> Subscription | None:
    """Make the local copy of a Stripe subscription hold `state`, which Stripe produced at
    `state_at` (an event's creation time, or the time of an API read).

    Order-safe: a state older than the one the row holds is ignored, as is one from the same
    second when `newer_only` (a `created` event never carries news for an existing row), and
    an ended subscription is never revived (Stripe never does). Returns the row, or None when
    `state` was ignored. Raises BillingError when the state names no known plan or member, or
    when it would give the member a second live paid subscription."""
    known = Subscription.objects.filter(stripe_subscription_id=state.id).values_list("member_id", flat=True).first()
    member = _lock_member(known if known is not None else (member_id or _member_for(state)))
    row = Subscription.objects.select_for_update().filter(stripe_subscription_id=state.id).first()
    if row is not None:
        if row.stripe_state_at is not None and (
            state_at < row.stripe_state_at or (newer_only and state_at == row.stripe_state_at)
        ):
            return None
        if row.status in ENDED_STATUSES and state.status not in ENDED_STATUSES:
            return None

    plan = Plan.objects.filter(stripe_price_id=state.price_id).first() if state.price_id else None
    if plan is None:
        raise BillingError(f"No plan has the Stripe price {state.price_id or '(none)'} of subscription {state.id}.")

    if state.status in LIVE_STATUSES:
        other = Subscription.objects.select_for_update().filter(member=member, status__in=LIVE_STATUSES)
        if row is not None:
            other = other.exclude(pk=row.pk)
        for live in other.select_related("plan"):
            if live.is_stripe:
                raise BillingError(
                    f"{member.email} already pays through Stripe subscription {live.stripe_subscription_id}; "
                    f"{state.id} would be a second one. Cancel one of them in Stripe."
                )
            # A paid subscription replaces a comp.
            _end(live, at=timezone.now())
            _record_change(member, live, source=source, actor=actor, reason="replaced by a paid subscription")

    values = {
        "plan": plan,
        "status": state.status,
        "stripe_customer_id": state.customer_id,
        "current_period_start": state.period_start,
        "current_period_end": state.period_end,
        "cancel_at_period_end": state.cancel_at_period_end,
        "canceled_at": state.canceled_at,
    }
    if row is None:
        row = Subscription.objects.create(
            member=member, stripe_subscription_id=state.id, stripe_state_at=state_at, **values
        )
        changed = ["created"]
    else:
        changed = [name for name, value in values.items() if getattr(row, name) != value]
        for name, value in values.items():
            setattr(row, name, value)
        row.stripe_state_at = state_at
        row.save(update_fields=[*values, "stripe_state_at", "updated_at"])
    if changed:
        _settle_tier(member)
        _record_change(member, row, source=source, actor=actor, changed=[name.replace("_id", "") for name in changed])
    return row


def _end(subscription: Subscription, *, at: dt.datetime) -> None:
    subscription.status = SubscriptionStatus.CANCELED
    subscription.canceled_at = at
    subscription.cancel_at_period_end = False
    if subscription.current_period_end is None or subscription.current_period_end > at:
        subscription.current_period_end = max(at, subscription.current_period_start or at)
    subscription.save(
        update_fields=["status", "canceled_at", "cancel_at_period_end", "current_period_end", "updated_at"]
    )


def set_cancel_at_period_end(*, subscription: Subscription, cancel: bool, actor: Member) -> Subscription:
    """Cancel a paid subscription at the end of its period (`cancel`), or resume it.

    Stripe holds the truth, so Stripe is asked first and its answer is applied at once; the
    webhook that follows finds nothing left to change. A comp has no period to run out in
    Stripe: cancelling one ends it now."""
    if not subscription.is_stripe:
        if subscription.status != SubscriptionStatus.COMPED:
            raise BillingError(f"{subscription} is neither billed by Stripe nor comped; nothing can cancel it here.")
        if not cancel:
            raise BillingError("A comped membership has nothing to resume.")
        end_comp(subscription=subscription, actor=actor, reason="cancelled")
        subscription.refresh_from_db()
        return subscription
    asked_at = timezone.now()
    state = stripe_api.set_cancel_at_period_end(subscription.stripe_subscription_id, cancel=cancel)
    synced = sync_stripe_subscription(
        state=state, state_at=asked_at, source="member" if actor.pk == subscription.member_id else "staff", actor=actor
    )
    return synced or subscription


def refresh_from_stripe(*, subscription_id: str, source: str, member_id: int | None = None) -> Subscription | None:
    """Read one subscription from Stripe's API and apply it: the repair for a missed webhook."""
    asked_at = timezone.now()
    state = stripe_api.retrieve_subscription(subscription_id)
    return sync_stripe_subscription(state=state, state_at=asked_at, source=source, member_id=member_id)


# --- Comped memberships --------------------------------------------------------------------------


@transaction.atomic
def comp_membership(*, member: Member, plan: Plan, until: dt.datetime, actor: Member | None) -> Subscription:
    """Give `member` the plan's tier until `until`, without Stripe. A comp already running is
    replaced; a paid subscription must be cancelled first, so nobody pays for a gift."""
    now = timezone.now()
    if until <= now:
        raise BillingError("A comp must end in the future.")
    member = _lock_member(member.pk)
    for live in (
        Subscription.objects.select_for_update().filter(member=member, status__in=LIVE_STATUSES).select_related("plan")
    ):
        if live.is_stripe:
            raise BillingError(f"{member.email} pays through Stripe; cancel that subscription before giving a comp.")
        _end(live, at=now)
        _record_change(member, live, source="staff", actor=actor, reason="replaced by a new comp")
    subscription = Subscription.objects.create(
        member=member, plan=plan, status=SubscriptionStatus.COMPED, current_period_start=now, current_period_end=until
    )
    _settle_tier(member)
    _record_change(member, subscription, source="staff", actor=actor, until=until.isoformat())
    return subscription


@transaction.atomic
def end_comp(*, subscription: Subscription, actor: Member | None, reason: str) -> bool:
    """End a comped membership now; the member drops to the tier of what is left (free).
    False when it had already ended (by staff, or by the expiry sweep meanwhile)."""
    member = _lock_member(subscription.member_id)
    row = Subscription.objects.select_for_update().select_related("plan").get(pk=subscription.pk)
    if row.status != SubscriptionStatus.COMPED:
        return False
    _end(row, at=timezone.now())
    _settle_tier(member)
    _record_change(member, row, source="staff" if actor else "expiry", actor=actor, reason=reason)
    return True


def expire_comps(*, at: dt.datetime, batch_size: int = 200) -> int:
    """End every comp whose period is over by `at`; returns how many ended.

    Safe to run every minute, and twice at once: each comp ends in its own transaction, under
    its member's lock, and one that another run ended meanwhile is left alone."""
    ended = 0
    while True:
        due = list(Subscription.objects.comps_due(at).values_list("pk", flat=True)[:batch_size])
        for pk in due:
            ended += end_comp(subscription=Subscription.objects.get(pk=pk), actor=None, reason="expired")
        if len(due) < batch_size:
            return ended


# --- Reconciliation ------------------------------------------------------------------------------


def _differences(row: Subscription | None, state: SubscriptionState) -> list[str]:
    """What the local row gets wrong about `state`, one phrase per field."""
    if row is None:
        return [f"missing here ({state.status} in Stripe)"]
    found = []
    if row.status != state.status:
        found.append(f"status {row.status} → {state.status}")
    if row.plan.stripe_price_id != state.price_id:
        found.append(f"price {row.plan.stripe_price_id or '(none)'} → {state.price_id}")
    if row.cancel_at_period_end != state.cancel_at_period_end:
        found.append(f"cancel at period end {row.cancel_at_period_end} → {state.cancel_at_period_end}")
    if row.current_period_end != state.period_end:
        found.append(
            f"period end {row.current_period_end:%Y-%m-%d %H:%M} → {state.period_end:%Y-%m-%d %H:%M}"
            if row.current_period_end and state.period_end
            else "period end"
        )
    return found


@transaction.atomic
def end_missing_stripe_subscription(*, subscription: Subscription) -> None:
    """End a subscription Stripe no longer has (deleted in a test account, or never completed)."""
    member = _lock_member(subscription.member_id)
    row = Subscription.objects.select_for_update().select_related("plan").get(pk=subscription.pk)
    if row.status in ENDED_STATUSES:
        return
    _end(row, at=timezone.now())
    _settle_tier(member)
    _record_change(member, row, source="reconcile", actor=None, reason="not found in Stripe")


# More live subscriptions than this missing from Stripe (and over a tenth of them) stops the repair.
MISSING_LIMIT = 5


def reconcile_stripe(*, dry_run: bool, progress: Callable[[], None] = lambda: None) -> ReconciliationRun:
    """Compare every Stripe subscription with its local copy and repair what disagrees (unless
    `dry_run`), through the same function the webhooks use. The run is kept for monitoring:
    drift found here means webhooks were missed."""
    run = ReconciliationRun.objects.create(dry_run=dry_run)
    seen: set[str] = set()
    try:
        for data in stripe_api.all_subscriptions():
            progress()
            run.checked += 1
            try:
                state = SubscriptionState.from_stripe(data)
            except stripe_api.StripeDataError as error:
                run.changes.append(f"{data.get('id')}: {error}")
                continue
            seen.add(state.id)
            row = Subscription.objects.select_related("plan", "member").filter(stripe_subscription_id=state.id).first()
            if row is None and state.status in ENDED_STATUSES:
                continue  # ended before this portal knew it: no tier depends on it
            differences = _differences(row, state)
            if not differences:
                continue
            run.drifted += 1
            line = f"{state.id} ({row.member.email if row else 'new'}): {', '.join(differences)}"
            if not dry_run:
                try:
                    sync_stripe_subscription(state=state, state_at=timezone.now(), source="reconcile")
                    run.repaired += 1
                except BillingError as error:
                    line += f"; not repaired: {error}"
            run.changes.append(line)
        live = list(Subscription.objects.live().with_stripe_id().select_related("member"))
        missing = [row for row in live if row.stripe_subscription_id not in seen]
        run.checked += len(missing)
        run.drifted += len(missing)
        # Many live subscriptions unknown to Stripe smells of the wrong account (a test key
        # against live data), not of drift: report them, end none.
        too_many = len(missing) > MISSING_LIMIT and len(missing) * 10 > len(live)
        if too_many:
            run.error = (
                f"{len(missing)} of {len(live)} live subscriptions are not in this Stripe account; "
                "none was ended. Check that STRIPE_SECRET_KEY belongs to the right account."
            )
        for row in missing:
            line = f"{row.stripe_subscription_id} ({row.member.email}): {row.status} here, not found in Stripe"
            if not dry_run and not too_many:
                end_missing_stripe_subscription(subscription=row)
                run.repaired += 1
            run.changes.append(line)
    except stripe.StripeError as error:
        run.error = f"Stripe: {error.user_message or type(error).__name__}"
    run.finished_at = timezone.now()
    run.save()
    invalidate(STAFF)
    return run


# --- The Stripe event log ------------------------------------------------------------------------
# Every write to StripeEvent is one of these three: the webhook view records a delivery, the task
# (`subscriptions.tasks.apply_stripe_event`) marks it processed or failed, and the admin's retry
# action queues that task again.


@transaction.atomic
def record_stripe_event(*, event: Mapping[str, Any], now: dt.datetime | None = None) -> StripeEvent:
    """Log one verified delivery of `event`: inserted on the first delivery, counted on every
    later one. Idempotent on the event id; a concurrent first delivery waits on the unique index
    until the inserting transaction ends, then counts itself on the row it made. Returns the row
    as it stands (its `processed_at` says whether the event was applied before)."""
    now = now or timezone.now()
    row = StripeEvent.objects.select_for_update().filter(stripe_id=event["id"]).first()
    if row is None:
        try:
            with transaction.atomic():
                row = StripeEvent.objects.create(
                    stripe_id=event["id"],
                    type=event["type"],
                    livemode=bool(event.get("livemode")),
                    stripe_created_at=stripe_api.timestamp(int(event.get("created") or 0)) or now,
                    payload=dict(event),
                    received_at=now,
                    last_received_at=now,
                )
            invalidate_on_commit(STAFF)
            return row
        except IntegrityError:
            row = StripeEvent.objects.select_for_update().get(stripe_id=event["id"])
    StripeEvent.objects.filter(pk=row.pk).update(deliveries=F("deliveries") + 1, last_received_at=now)
    row.refresh_from_db()
    return row


@transaction.atomic
def mark_event_processed(*, event: StripeEvent, outcome: str) -> None:
    """The event's effects are applied: in the caller's transaction, which holds the row's lock
    and the effects, so both commit or neither does."""
    StripeEvent.objects.filter(pk=event.pk).update(processed_at=timezone.now(), outcome=outcome[:255], error="")
    invalidate_on_commit(STAFF)


@transaction.atomic
def mark_event_failed(*, event: StripeEvent, error: str) -> None:
    """Applying the event failed; keep why, for the retry and for staff (the admin's failed
    filter). Not over a concurrent attempt that has applied the event meanwhile."""
    StripeEvent.objects.filter(pk=event.pk, processed_at__isnull=True).update(error=error or "failed")
    invalidate_on_commit(STAFF)
