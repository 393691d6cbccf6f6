from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SubscriptionsConfig(AppConfig):
    name = "subscriptions"
    verbose_name = "Subscriptions"

    def ready(self) -> None:
        # Like django.contrib.sites' default site: after every migrate (and every test flush),
        # the free, basic and pro plans exist, so a fresh portal has plans to offer.
        post_migrate.connect(_ensure_default_plans, sender=self)
        # A member's subscription rows are on their cached pages (members/receivers.py).
        from members.receivers import connect_member_data
        from subscriptions.models import Subscription

        connect_member_data(Subscription)


def _ensure_default_plans(*, using: str = "default", **kwargs: Any) -> None:
    from subscriptions.services import ensure_default_plans

    ensure_default_plans(using=using)
