"""A member's own data: a download of everything the portal holds about them, and deleting their
account after a grace period. Here, not in `members`, because both span members and
subscriptions.

Deletion runs in two steps. Asking (`request_deletion`) changes nothing that cannot be undone:
a paid subscription is set to cancel at its period's end in Stripe, sessions end, API tokens are
revoked, and the account is marked for deletion `ACCOUNT_DELETION_GRACE_DAYS` later. The member
can log in meanwhile and keep it (`keep_account`). Once the date has passed,
`python manage.py purge_deleted_members` (run daily) ends what is still live in Stripe and
deletes the member with everything that is theirs.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import stripe
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from members import services as members
from members.models import ActivityLog, ApiToken, Member
from subscriptions import services as billing
from subscriptions import stripe_api
from subscriptions.models import Subscription

logger = logging.getLogger(__name__)

EXPORT_FORMAT = 1  # bumped when the export's shape changes, so tools reading it can tell


# --- The download ------------------------------------------------------------------------------


def _when(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _as_the_member_sees_it(detail: Any, member_id: int) -> Any:
    """An activity entry's detail without the staff member who acted: their id and email
    (`members.services.actor_detail`) are the staff's, not the member's, and the API hides them
    too. The member learns that staff acted (`"actor": "staff"`), not who; where the actor was
    the member themselves (cancelling their own subscription), there is nothing to tell."""
    if not isinstance(detail, dict) or not {"actor", "actor_email"} & detail.keys():
        return detail
    shown = {key: value for key, value in detail.items() if key not in ("actor", "actor_email")}
    if detail.get("actor") != member_id:
        shown["actor"] = "staff"
    return shown


def export_member_data(member: Member) -> Iterator[str]:
    """The member's data as one JSON document, produced a piece at a time: their activity log
    can hold many thousands of rows, read in chunks rather than all at once. Secrets are left
    out: the password's hash, the tokens' hashes, second-factor keys; and so are the staff
    members who acted on the account (`_as_the_member_sees_it`)."""
    profile = member.profile
    head = {
        "format": EXPORT_FORMAT,
        "exported_at": _when(timezone.now()),
        "account": {
            "email": member.email,
            "tier": member.tier,
            "status": member.status,
            "created_at": _when(member.created_at),
            "last_login": _when(member.last_login),
            "deletion_scheduled_for": _when(member.deletion_scheduled_for),
        },
        "profile": {
            "display_name": profile.display_name,
            "bio": profile.bio,
            "time_zone": profile.time_zone,
            "preferences": profile.preferences,
            "updated_at": _when(profile.updated_at),
        },
        "subscriptions": [
            {
                "plan": subscription.plan.name,
                "status": subscription.status,
                "current_period_start": _when(subscription.current_period_start),
                "current_period_end": _when(subscription.current_period_end),
                "cancel_at_period_end": subscription.cancel_at_period_end,
                "canceled_at": _when(subscription.canceled_at),
                "created_at": _when(subscription.created_at),
                "stripe_subscription_id": subscription.stripe_subscription_id,
                "stripe_customer_id": subscription.stripe_customer_id,
            }
            for subscription in Subscription.objects.for_member(member).select_related("plan").order_by("created_at")
        ],
        "api_tokens": [
            {
                "name": token.name,
                "shown_as": f"{token.prefix}…{token.last_chars}",
                "scopes": token.scopes,
                "created_at": _when(token.created_at),
                "expires_at": _when(token.expires_at),
                "last_used_at": _when(token.last_used_at),
                "last_used_ip": token.last_used_ip,
                "revoked_at": _when(token.revoked_at),
            }
            for token in ApiToken.objects.for_member(member).defer("token_hash").order_by("created_at")
        ],
    }
    # Everything but the activity, then the activity's rows one by one, inside the same object.
    yield json.dumps(head, indent=1)[:-2] + ',\n "activity": ['
    rows = (
        ActivityLog.objects.for_member(member)
        .order_by("id")
        .values_list("action", "created_at", "ip", "user_agent", "detail")
    )
    separator = "\n  "
    for action, created_at, ip, user_agent, detail in rows.iterator(chunk_size=2000):
        entry = {
            "action": action,
            "at": _when(created_at),
            "ip": ip,
            "user_agent": user_agent,
            "detail": _as_the_member_sees_it(detail, member.pk),
        }
        yield separator + json.dumps(entry)
        separator = ",\n  "
    yield "\n ]\n}\n"


# --- Deletion ------------------------------------------------------------------------------------


class DeletionRefused(Exception):
    """The account cannot be marked for deletion now; the message says why, for the member."""


def deletion_date(now: dt.datetime) -> dt.datetime:
    return now + dt.timedelta(days=settings.ACCOUNT_DELETION_GRACE_DAYS)


def request_deletion(*, member: Member, ip: str | None = None, user_agent: str = "") -> dt.datetime:
    """Mark the account for deletion after the grace period; returns when it will be deleted.

    A paid subscription is set to cancel at its period's end first, so the member is not billed
    again whatever happens next; if Stripe cannot be reached, nothing is changed and the member
    is asked to try again."""
    live = Subscription.objects.for_member(member).live().first()
    if live is not None and live.is_stripe and not live.cancel_at_period_end:
        try:
            billing.set_cancel_at_period_end(subscription=live, cancel=True, actor=member)
        except (stripe.StripeError, billing.BillingError, stripe_api.StripeDataError) as error:
            logger.warning(
                "Deletion of member %s waits: its subscription could not be cancelled (%s).",
                member.pk,
                type(error).__name__,
            )
            raise DeletionRefused(
                "Your subscription could not be cancelled with our payment provider just now, so nothing was "
                "changed. Please try again in a few minutes."
            ) from error
    at = deletion_date(timezone.now())
    if members.schedule_deletion(member=member, at=at, ip=ip, user_agent=user_agent):
        email = member.email
        transaction.on_commit(lambda: _tell_member(email, at))
    return member.deletion_scheduled_for or at


def _tell_member(email: str, at: dt.datetime) -> None:
    """Mail the member that their account will be deleted, so a deletion they did not ask for
    (someone else at their computer) does not go unnoticed. The mail is queued (core/mail.py: a
    worker sends it and retries); a failure to queue or, eager, to send it is logged, not raised:
    the deletion is already recorded and the page says the same."""
    try:
        send_mail(
            subject=f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}Your account will be deleted on {at:%-d %B %Y}",
            message=(
                f"You asked to delete your Member Portal account. It will be deleted, with everything we hold "
                f"about you, on {at:%-d %B %Y at %H:%M} UTC.\n\n"
                "If you change your mind, or did not ask for this, log in before then and choose "
                '"Keep my account".\n'
            ),
            from_email=None,
            recipient_list=[email],
        )
    except Exception:
        logger.exception("Could not mail a member about their account's deletion.")


def keep_account(*, member: Member, ip: str | None = None, user_agent: str = "") -> bool:
    """The member changed their mind during the grace period. Returns False if nothing was scheduled."""
    return members.cancel_deletion(member=member, ip=ip, user_agent=user_agent)


@dataclass
class PurgeResult:
    deleted: int = 0
    waiting: int = 0  # due, but their Stripe subscription could not be ended: tried again next run


def purge_deleted_members(*, at: dt.datetime | None = None) -> PurgeResult:
    """Delete every member whose deletion is due, each in its own transaction. A subscription
    still live in Stripe is ended first; if Stripe cannot be reached, that member waits for the
    next run rather than being deleted while Stripe would go on billing them."""
    now = at or timezone.now()
    result = PurgeResult()
    for member_id in members.members_due_for_deletion(at=now):
        live = Subscription.objects.filter(member_id=member_id).live().first()
        if live is not None and live.is_stripe:
            try:
                stripe_api.cancel_subscription(live.stripe_subscription_id)
            except (stripe.StripeError, stripe_api.StripeDataError) as error:
                logger.warning(
                    "Member %s is due for deletion but its Stripe subscription could not be ended (%s); "
                    "it is tried again next run.",
                    member_id,
                    type(error).__name__,
                )
                result.waiting += 1
                continue
        if members.delete_member(member_id=member_id, at=now):
            logger.info("Deleted member %s, as they asked.", member_id)
            result.deleted += 1
    return result
