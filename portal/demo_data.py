"""Demo data for `make run` (`seed_demo`): the default plans, a staff superuser and three demo
members with a few weeks of activity, all with one published password; and what activity looks
like (devices, events), which the benchmark data (`portal.bench_data`) draws on too. Safe to run
again: what exists is left alone, passwords are reset."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from allauth.account.models import EmailAddress
from django.utils import timezone

from members.models import Action, ActivityLog, Member, Profile, TokenScope
from members.services import create_api_token, create_member
from subscriptions.models import SubscriptionStatus
from subscriptions.services import restore_default_plans, start_subscription

# Published in the README and printed by every run, which is why the command refuses to run


# Published in the README and printed by every run, which is why the command refuses to run
# with DEBUG off unless forced.
DEMO_PASSWORD = "portal-demo-2026"  # noqa: S105  (published on purpose: see above)


ADMIN_EMAIL = "admin@example.com"


@dataclass(frozen=True)
class _DemoMember:
    email: str
    display_name: str
    plan: str | None  # code of the plan they subscribe to; None for no subscription
    status: SubscriptionStatus | None
    token_names: tuple[str, ...]
    joined_days_ago: int


DEMO_MEMBERS = (
    _DemoMember("alice@example.com", "Alice Example", "basic", SubscriptionStatus.ACTIVE, ("Laptop", "Zapier"), 62),
    _DemoMember("bob@example.com", "Bob Example", None, None, ("Backup script",), 33),
    _DemoMember("dave@example.com", "Dave Example", "pro", SubscriptionStatus.COMPED, ("CI", "Grafana"), 85),
)


# Addresses from the ranges reserved for documentation (RFC 5737, RFC 3849): realistic to look
# at, and no real person's address ends up in a demo or benchmark database.
_IPV4_NETS = ("192.0.2", "198.51.100", "203.0.113")


DESKTOP_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
    "Safari/537.36 Edg/131.0.0.0",
)


MOBILE_AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
    "Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
    "Mobile Safari/537.36",
)


# (action, detail, relative frequency): what members mostly do is log in and out.
EVENTS: tuple[tuple[Action, dict[str, Any], int], ...] = (
    (Action.LOGIN, {"method": "password"}, 38),
    (Action.LOGIN, {"method": "password", "mfa": "totp"}, 8),
    (Action.LOGOUT, {}, 20),
    (Action.LOGIN_FAILED, {"reason": "bad_password"}, 8),
    (Action.PROFILE_UPDATED, {"fields": ["display_name"]}, 4),
    (Action.PROFILE_UPDATED, {"fields": ["bio", "time_zone"]}, 3),
    (Action.PASSWORD_CHANGED, {}, 2),
    (Action.PASSWORD_RESET, {"via": "email"}, 1),
    (Action.EMAIL_CHANGED, {}, 1),
    (Action.MFA_ENABLED, {"method": "totp"}, 2),
    (Action.MFA_DISABLED, {"method": "totp"}, 1),
    (Action.TOKEN_CREATED, {"name": "Laptop"}, 3),
    (Action.TOKEN_REVOKED, {"name": "Laptop"}, 1),
    (Action.SUBSCRIPTION_CHANGED, {"from": "free", "to": "basic"}, 2),
    (Action.SUBSCRIPTION_CHANGED, {"from": "basic", "to": "pro"}, 1),
)


@dataclass
class SeedCounts:
    members: int = 0
    activity: int = 0


def seed_demo_data(changes: SeedCounts) -> None:
    now = timezone.now()
    plans = restore_default_plans()

    admin = Member.objects.with_email(ADMIN_EMAIL).first()
    if admin is None:
        create_member(email=ADMIN_EMAIL, password=DEMO_PASSWORD, display_name="Admin", is_staff=True, is_superuser=True)
        changes.members += 1
    else:
        _reset_password(admin)

    for spec in DEMO_MEMBERS:
        existing = Member.objects.with_email(spec.email).first()
        if existing is not None:
            _reset_password(existing)
            continue
        rng = random.Random(spec.email)  # the same demo activity on every fresh database
        joined = now - dt.timedelta(days=spec.joined_days_ago, hours=rng.randint(0, 23))
        member = create_member(email=spec.email, password=DEMO_PASSWORD, display_name=spec.display_name)
        # Back-date the account to its first activity, so the dashboard does not show a
        # member who signed up today with weeks of history.
        Member.objects.filter(pk=member.pk).update(created_at=joined)
        Profile.objects.filter(member=member).update(created_at=joined)
        changes.members += 1

        if spec.plan is not None and spec.status is not None:
            # No Stripe ids: there is no Stripe account behind the demo, and a made-up id would
            # make a real Stripe call fail in a confusing way.
            start_subscription(
                member=member,
                plan=plans[spec.plan],
                status=spec.status,
                period_start=now,
                period_end=now + dt.timedelta(days=30) if spec.status == SubscriptionStatus.ACTIVE else None,
            )

        home = (ipv4(rng), rng.choice(DESKTOP_AGENTS))
        phone = (ipv6(rng), rng.choice(MOBILE_AGENTS))
        rows = [ActivityLog(member=member, action=Action.SIGNUP, created_at=joined, ip=home[0], user_agent=home[1])]
        if spec.plan is not None:
            rows.append(
                ActivityLog(
                    member=member,
                    action=Action.SUBSCRIPTION_CHANGED,
                    created_at=now,
                    ip=home[0],
                    user_agent=home[1],
                    detail={"from": "free", "to": spec.plan, "status": spec.status},
                )
            )
        # Token and subscription events come from the real tokens and subscription above and
        # below, not made up, so the demo history agrees with the dashboard.
        events = [
            (action, detail)
            for action, detail in expand(EVENTS)
            if action not in (Action.TOKEN_CREATED, Action.TOKEN_REVOKED, Action.SUBSCRIPTION_CHANGED)
        ]
        for _ in range(rng.randint(20, 36)):
            action, detail = rng.choice(events)
            ip, user_agent = home if rng.random() < 0.75 else phone
            at = joined + dt.timedelta(seconds=rng.uniform(60, (now - joined).total_seconds()))
            rows.append(
                ActivityLog(member=member, action=action, created_at=at, ip=ip, user_agent=user_agent, detail=detail)
            )
        ActivityLog.objects.bulk_create(rows)
        changes.activity += len(rows)

        for name in spec.token_names:
            # Through the service, like a member would; the plain token is dropped unseen.
            create_api_token(
                member=member,
                name=name,
                scopes=[TokenScope.READ, TokenScope.WRITE] if name == spec.token_names[0] else [TokenScope.READ],
                expires_at=None if name == spec.token_names[0] else now + dt.timedelta(days=90),
                ip=home[0],
                user_agent=home[1],
            )
            changes.activity += 1  # the service records TOKEN_CREATED

    # The demo logins are printed with their password; their addresses count as verified, so a
    # login (the admin's too, which goes through the accounts login) does not stop to verify.
    for member in Member.objects.filter(email__in=[ADMIN_EMAIL, *(spec.email for spec in DEMO_MEMBERS)]):
        EmailAddress.objects.update_or_create(
            user=member, email=member.email, defaults={"verified": True, "primary": True}
        )


def _reset_password(member: Member) -> None:
    """Keep the printed logins true even if someone changed a demo password; a no-op otherwise."""
    if not member.check_password(DEMO_PASSWORD):
        member.set_password(DEMO_PASSWORD)
        member.save(update_fields=["password"])


def expand(weighted: Iterable[tuple[Action, dict[str, Any], int]]) -> list[tuple[Action, dict[str, Any]]]:
    """Each (action, detail) repeated by its frequency, so `random.choice` picks by frequency."""
    return [(action, detail) for action, detail, weight in weighted for _ in range(weight)]


def ipv4(rng: random.Random) -> str:
    return f"{rng.choice(_IPV4_NETS)}.{rng.randint(1, 254)}"


def ipv6(rng: random.Random) -> str:
    return f"2001:db8:{rng.randrange(0x10000):x}:{rng.randrange(0x10000):x}::{rng.randrange(1, 0x10000):x}"
