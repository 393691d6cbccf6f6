"""`expire_subscriptions`: end comped memberships whose period is over. Safe to run every minute."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from subscriptions.services import expire_comps


class Command(BaseCommand):
    help = (
        "End comped memberships whose period is over, moving their members back to the free tier. "
        "Idempotent and safe to run every minute, even twice at once."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        ended = expire_comps(at=timezone.now())
        self.stdout.write(f"Ended {ended} comped membership{'' if ended == 1 else 's'} whose period was over.")
