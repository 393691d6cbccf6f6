"""Background work that spans the apps, run by Celery workers: the same code as the commands."""

from __future__ import annotations

from celery import shared_task
from django.core.management import call_command

from core.jobs import run_scheduled
from portal.account_data import purge_deleted_members as purge_due_members


class PurgeIncomplete(RuntimeError):
    """Some accounts due for deletion wait, because Stripe could not end their subscription."""


@shared_task(name="portal.purge_deleted_members", time_limit=1800, soft_time_limit=1700)
def purge_deleted_members() -> str | None:
    """`purge_deleted_members`, daily. Accounts left waiting on Stripe fail the run (after the
    others are deleted), so its last success stays old and the overdue alert fires."""

    def work() -> str:
        result = purge_due_members()
        if result.waiting:
            raise PurgeIncomplete(
                f"deleted {result.deleted}; {result.waiting} wait: their Stripe subscription could not be ended"
            )
        return f"deleted {result.deleted} account(s)"

    return run_scheduled("purge_deleted_members", work)


@shared_task(name="portal.clear_sessions", time_limit=600)
def clear_sessions() -> str | None:
    """Django's `clearsessions`, daily: expired sessions out of the database."""

    def work() -> str:
        call_command("clearsessions")
        return "expired sessions cleared"

    return run_scheduled("clear_sessions", work)
