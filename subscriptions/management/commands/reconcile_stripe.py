"""`reconcile_stripe`: compare local subscriptions with Stripe and repair drift."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from subscriptions import stripe_api
from subscriptions.services import reconcile_stripe


class Command(BaseCommand):
    help = (
        "Compare every subscription in Stripe with the portal's copy and repair what disagrees, "
        "printing one line per repaired subscription. Run it daily, and after webhook outages."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Report the drift without repairing it.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args: Any, dry_run: bool, no_progress: bool, **options: Any) -> None:
        if not stripe_api.configured():
            raise CommandError("STRIPE_SECRET_KEY is not set: there is no Stripe account to compare with.")
        with tqdm(desc="Stripe subscriptions", unit=" sub", disable=no_progress or not sys.stderr.isatty()) as bar:
            run = reconcile_stripe(dry_run=dry_run, progress=lambda: bar.update())
        for line in run.changes:
            self.stdout.write(line)
        verb = "would repair" if dry_run else "repaired"
        self.stdout.write(
            f"Checked {run.checked} subscriptions: {run.drifted} drifted, {verb} "
            f"{run.drifted if dry_run else run.repaired}."
        )
        if run.error:
            raise CommandError(run.error)
