"""`purge_deleted_members`: delete the accounts whose deletion, asked for by their members, is due."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from portal.account_data import purge_deleted_members


class Command(BaseCommand):
    help = (
        "Delete the accounts whose members asked for deletion and whose grace period is over, with everything "
        "that is theirs; a paid subscription still live in Stripe is ended first. Run it daily; safe to run twice "
        "at once. Exits with an error when some account had to wait because Stripe could not be reached."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        result = purge_deleted_members()
        self.stdout.write(
            f"Deleted {result.deleted} account{'' if result.deleted == 1 else 's'} whose deletion was due."
        )
        if result.waiting:
            raise CommandError(
                f"{result.waiting} account(s) due for deletion wait for the next run: their Stripe subscription "
                "could not be ended (see the log)."
            )
