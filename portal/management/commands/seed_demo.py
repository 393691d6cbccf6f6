"""`seed_demo`: demo logins for `make run`, and benchmark-scale data with --members/--activity.

Demo mode makes the plans, a staff superuser and three demo members, and is safe to run again:
what exists is left alone. Scale mode adds bench members `member0000001@bench.example`, ... and
their activity up to the totals asked for; it never deletes. On PostgreSQL the big tables are
loaded with COPY; on SQLite with bulk_create, which is fine for small numbers.

Everything one run writes is in one transaction: an interrupted run leaves nothing behind.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from django.utils import timezone
from psycopg.copy import QueuedLibpqWriter
from tqdm import tqdm

from members import tokens
from members.models import Action, ActivityLog, ApiToken, Member, MemberStatus, Profile, Tier, TokenScope
from members.services import create_api_token, create_member
from subscriptions.models import Plan, Subscription, SubscriptionStatus
from subscriptions.services import restore_default_plans, start_subscription

# Published in the README and printed by every run, which is why the command refuses to run
# with DEBUG off unless forced.
DEMO_PASSWORD = "portal-demo-2026"  # noqa: S105  (published on purpose: see above)
ADMIN_EMAIL = "admin@example.com"
BENCH_DOMAIN = "bench.example"

# Rows generated and sent per round trip: big enough that per-chunk overhead vanishes, small
# enough that memory stays flat (about 25 MB of text for 100k activity rows).
CHUNK_ROWS = 100_000
# Rows per INSERT for bulk_create (SQLite, and subscriptions and tokens everywhere).
BATCH_ROWS = 5_000
ACTIVITY_DAYS = 365
# The tables a scale run fills, to VACUUM and ANALYZE afterwards.
_LOADED_TABLES = "members_member, members_profile, members_apitoken, members_activitylog, subscriptions_subscription"
# Rebuild the activity indexes after the load, instead of updating them row by row, when the
# load adds at least this fraction of the rows already there. Measured on 1M rows: updating
# four indexes and queuing a deferred foreign-key check costs about 19 µs a row, building them
# afresh about 3.6 µs for every row in the table; 1/4 leaves room for bigger tables' slower sorts.
REBUILD_FRACTION = 0.25


# --- What the demo and bench data look like ----------------------------------------------------


@dataclass(frozen=True)
class _DemoMember:
    email: str
    display_name: str
    plan: str | None  # code of the plan they subscribe to; None for no subscription
    status: SubscriptionStatus | None
    token_names: tuple[str, ...]
    joined_days_ago: int


_DEMO_MEMBERS = (
    _DemoMember("alice@example.com", "Alice Example", "basic", SubscriptionStatus.ACTIVE, ("Laptop", "Zapier"), 62),
    _DemoMember("bob@example.com", "Bob Example", None, None, ("Backup script",), 33),
    _DemoMember("dave@example.com", "Dave Example", "pro", SubscriptionStatus.COMPED, ("CI", "Grafana"), 85),
)

# Addresses from the ranges reserved for documentation (RFC 5737, RFC 3849): realistic to look
# at, and no real person's address ends up in a demo or benchmark database.
_IPV4_NETS = ("192.0.2", "198.51.100", "203.0.113")
_DESKTOP_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
    "Safari/537.36 Edg/131.0.0.0",
)
_MOBILE_AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
    "Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
    "Mobile Safari/537.36",
)

# (action, detail, relative frequency): what members mostly do is log in and out.
_EVENTS: tuple[tuple[Action, dict[str, Any], int], ...] = (
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

# (share, plan code, subscription status): 70% free, 20% basic, 10% pro, with a few past-due,
# canceled (free again) and comped rows so that every admin filter has something to show.
_BENCH_MIX: tuple[tuple[float, str | None, SubscriptionStatus | None], ...] = (
    (0.68, None, None),
    (0.02, "basic", SubscriptionStatus.CANCELED),
    (0.185, "basic", SubscriptionStatus.ACTIVE),
    (0.015, "basic", SubscriptionStatus.PAST_DUE),
    (0.08, "pro", SubscriptionStatus.ACTIVE),
    (0.01, "pro", SubscriptionStatus.PAST_DUE),
    (0.01, "pro", SubscriptionStatus.COMPED),
)
# (status, relative frequency) of bench accounts.
_BENCH_STATUSES = ((MemberStatus.ACTIVE, 980), (MemberStatus.DEACTIVATED, 15), (MemberStatus.SUSPENDED, 5))
_FIRST_NAMES = ("Ada", "Ben", "Chloe", "Dmitri", "Emeka", "Fatima", "Grace", "Hiro", "Ines", "Jonas", "Kavya", "Liam")
_LAST_NAMES = ("Okafor", "Nguyen", "Schmidt", "Garcia", "Kowalski", "Tanaka", "Silva", "Haddad", "Murphy", "Rossi")
_TIME_ZONES = ("UTC", "Europe/London", "Europe/Berlin", "America/New_York", "America/Los_Angeles", "Asia/Tokyo")
_TOKEN_NAMES = ("Laptop", "CI", "Zapier", "Backup script", "Grafana", "Home server")

# Pareto exponent of how active bench members are: 1.16 is the 80/20 rule, so a few members
# have hundreds of thousands of rows at 10M, the deep-pagination case worth benchmarking.
_ACTIVITY_ALPHA = 1.16
_MAX_ACTIVITY_WEIGHT = 50_000


_BENCH_EMAIL = re.compile(r"^member([0-9]+)@" + re.escape(BENCH_DOMAIN) + "$")


def bench_email(index: int) -> str:
    return f"member{index:07d}@{BENCH_DOMAIN}"


def _bench_index(email: str) -> int | None:
    match = _BENCH_EMAIL.match(email)
    return int(match[1]) if match else None


# --- The command --------------------------------------------------------------------------------


@dataclass
class _Changes:
    members: int = 0
    activity: int = 0


class Command(BaseCommand):
    help = (
        "Load demo data: plans, a staff superuser and demo members, all with one published password. "
        "With --members/--activity, also benchmark-scale data up to those totals (COPY on PostgreSQL). "
        "Safe to run again; never deletes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--members",
            type=int,
            metavar="N",
            help=f"Make sure exactly N bench members ({bench_email(1)}, ...) exist (a total, not an increment).",
        )
        parser.add_argument(
            "--activity",
            type=int,
            metavar="N",
            help="Make the bench members' activity log rows total N, spread over the past year.",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Run even with DEBUG off. The accounts it creates have a published password.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        members: int | None = options["members"]
        activity: int | None = options["activity"]
        for name, value in (("--members", members), ("--activity", activity)):
            if value is not None and value < 0:
                raise CommandError(f"{name} must be 0 or more, not {value}.")
        if not settings.DEBUG and not options["force"]:
            raise CommandError(
                "DEBUG is off, so this may be a real site: seed_demo creates a superuser and members whose "
                f"password ({DEMO_PASSWORD}) is published. Pass --force only for a database you can throw away."
            )

        started = time.monotonic()
        changes = _Changes()
        # Bulk loads leave the planner's statistics and the visibility map behind, and autovacuum
        # may be off or slow to come: without VACUUM every index-only scan (counts, keyset pages)
        # reads the heap too, which would skew the benchmarks run on this data. VACUUM cannot
        # run inside a transaction, so inside a caller's (a test's) it is ANALYZE alone.
        postgres = connection.vendor == "postgresql"
        nested = connection.in_atomic_block
        with transaction.atomic():
            _seed_demo(changes)
            if members is not None:
                _seed_bench_members(members, changes)
            if activity is not None:
                _seed_bench_activity(activity, changes)
            if postgres and nested:
                with connection.cursor() as cursor:
                    cursor.execute(f"ANALYZE {_LOADED_TABLES}")
        if postgres and not nested:
            with connection.cursor() as cursor:
                cursor.execute(f"VACUUM (ANALYZE) {_LOADED_TABLES}")
        elapsed = time.monotonic() - started

        bench_members = Member.objects.filter(email__endswith="@" + BENCH_DOMAIN).count()
        if members is not None and bench_members > members:
            self.stderr.write(
                self.style.WARNING(f"There are {bench_members} bench members, more than --members {members}: kept.")
            )
        bench_activity = ActivityLog.objects.filter(member__email__endswith="@" + BENCH_DOMAIN).count()
        if activity is not None and bench_activity > activity:
            self.stderr.write(
                self.style.WARNING(
                    f"There are {bench_activity} bench activity rows, more than --activity {activity}: kept."
                )
            )
        self.stdout.write(
            f"Created {changes.members} members, {changes.activity} activity rows in {elapsed:.1f} s; "
            f"totals: {Member.objects.count()} members ({bench_members} bench), {Plan.objects.count()} plans, "
            f"{Subscription.objects.count()} subscriptions, {ApiToken.objects.count()} API tokens, "
            f"{ActivityLog.objects.count()} activity rows ({bench_activity} bench)."
        )
        self.stdout.write(f"\nDemo logins, all with the password {DEMO_PASSWORD}:")
        self.stdout.write(f"  {ADMIN_EMAIL:<20} staff superuser, /admin/")
        for spec in _DEMO_MEMBERS:
            subscription = f"{spec.plan}, {spec.status}" if spec.plan else "free, no subscription"
            self.stdout.write(f"  {spec.email:<20} {subscription}")
        if bench_members:
            self.stdout.write(f"  {bench_email(1)} ... ({bench_members} bench members, same password)")


# --- Demo mode ----------------------------------------------------------------------------------


def _seed_demo(changes: _Changes) -> None:
    now = timezone.now()
    plans = restore_default_plans()

    admin = Member.objects.with_email(ADMIN_EMAIL).first()
    if admin is None:
        create_member(email=ADMIN_EMAIL, password=DEMO_PASSWORD, display_name="Admin", is_staff=True, is_superuser=True)
        changes.members += 1
    else:
        _reset_password(admin)

    for spec in _DEMO_MEMBERS:
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

        home = (_ipv4(rng), rng.choice(_DESKTOP_AGENTS))
        phone = (_ipv6(rng), rng.choice(_MOBILE_AGENTS))
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
            for action, detail in _expand(_EVENTS)
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
    for member in Member.objects.filter(email__in=[ADMIN_EMAIL, *(spec.email for spec in _DEMO_MEMBERS)]):
        EmailAddress.objects.update_or_create(
            user=member, email=member.email, defaults={"verified": True, "primary": True}
        )


def _reset_password(member: Member) -> None:
    """Keep the printed logins true even if someone changed a demo password; a no-op otherwise."""
    if not member.check_password(DEMO_PASSWORD):
        member.set_password(DEMO_PASSWORD)
        member.save(update_fields=["password"])


# --- Scale mode: members ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _BenchMember:
    index: int
    status: MemberStatus
    created_at: dt.datetime
    display_name: str
    time_zone: str
    plan: str | None
    subscription_status: SubscriptionStatus | None
    has_token: bool

    @property
    def email(self) -> str:
        return bench_email(self.index)


def _seed_bench_members(total: int, changes: _Changes) -> None:
    existing = {
        _bench_index(email)
        for email in Member.objects.filter(email__endswith="@" + BENCH_DOMAIN).values_list("email", flat=True)
    }
    missing = [index for index in range(1, total + 1) if index not in existing]
    if not missing:
        return
    now = timezone.now()
    plans = {plan.code: plan for plan in Plan.objects.all()}
    # One Argon2 hash for every bench member: at 0.1 s a hash, 100k of them would take three hours.
    password = make_password(DEMO_PASSWORD)
    rng = random.Random(f"seed_demo-members-{len(existing)}")
    mix_weights = [share for share, _, _ in _BENCH_MIX]
    statuses = [status for status, _ in _BENCH_STATUSES]
    status_weights = [weight for _, weight in _BENCH_STATUSES]
    with tqdm(total=len(missing), desc="members", unit=" rows", unit_scale=True, disable=None) as progress:
        for start in range(0, len(missing), CHUNK_ROWS):
            specs = []
            for index in missing[start : start + CHUNK_ROWS]:
                _, plan, status = rng.choices(_BENCH_MIX, mix_weights)[0]
                specs.append(
                    _BenchMember(
                        index=index,
                        status=rng.choices(statuses, status_weights)[0],
                        created_at=now - dt.timedelta(seconds=rng.randrange(ACTIVITY_DAYS * 86400)),
                        display_name=f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}",
                        time_zone=rng.choice(_TIME_ZONES),
                        plan=plan,
                        subscription_status=status,
                        has_token=rng.random() < (0.15 if plan is None else 0.5),
                    )
                )
            tiers = [_tier(spec, plans) for spec in specs]
            if connection.vendor == "postgresql":
                ids = _copy_members(specs, tiers, password, now)
            else:
                created = Member.objects.bulk_create(
                    [
                        Member(
                            email=spec.email,
                            password=password,
                            tier=tier,
                            status=spec.status,
                            created_at=spec.created_at,
                        )
                        for spec, tier in zip(specs, tiers, strict=True)
                    ],
                    batch_size=BATCH_ROWS,
                )
                ids = [member.pk for member in created]
                Profile.objects.bulk_create(
                    [
                        Profile(
                            member_id=member_id,
                            display_name=spec.display_name,
                            time_zone=spec.time_zone,
                            created_at=spec.created_at,
                        )
                        for member_id, spec in zip(ids, specs, strict=True)
                    ],
                    batch_size=BATCH_ROWS,
                )
            _create_bench_subscriptions_and_tokens(specs, ids, plans, now, rng)
            changes.members += len(specs)
            progress.update(len(specs))


def _tier(spec: _BenchMember, plans: dict[str, Plan]) -> str:
    """The plan's tier while the subscription is live (canceled ones leave the member free)."""
    if spec.plan is None or spec.subscription_status in (None, SubscriptionStatus.CANCELED):
        return Tier.FREE
    return plans[spec.plan].tier


def _copy_members(specs: Sequence[_BenchMember], tiers: Sequence[str], password: str, now: dt.datetime) -> list[int]:
    """COPY members and their profiles, returning the members' ids in the order of `specs`.

    The ids are taken from the table's own sequence first, so the profiles (and subscriptions
    and tokens after them) can point at their members without reading the rows back."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence('members_member', 'id')) FROM generate_series(1, %s)",
            [len(specs)],
        )
        ids = [row[0] for row in cursor.fetchall()]
    stamp = now.isoformat()
    _copy(
        "COPY members_member (id, password, last_login, is_superuser, email, tier, status, is_staff, "
        "created_at, updated_at) FROM STDIN",
        [
            "".join(
                f"{member_id}\t{_text(password)}\t\\N\tf\t{spec.email}\t{tier}\t{spec.status}\tf\t"
                f"{spec.created_at.isoformat()}\t{stamp}\n"
                for member_id, spec, tier in zip(ids, specs, tiers, strict=True)
            )
        ],
    )
    _copy(
        "COPY members_profile (member_id, display_name, bio, time_zone, preferences, created_at, updated_at) "
        "FROM STDIN",
        [
            "".join(
                f"{member_id}\t{_text(spec.display_name)}\t\t{spec.time_zone}\t{{}}\t{spec.created_at.isoformat()}\t"
                f"{stamp}\n"
                for member_id, spec in zip(ids, specs, strict=True)
            )
        ],
    )
    return ids


def _create_bench_subscriptions_and_tokens(
    specs: Sequence[_BenchMember], ids: Sequence[int], plans: dict[str, Plan], now: dt.datetime, rng: random.Random
) -> None:
    """A few rows per hundred members, so bulk_create is fast enough on both databases."""
    subscriptions = []
    api_tokens = []
    for member_id, spec in zip(ids, specs, strict=True):
        if spec.plan is not None and spec.subscription_status is not None:
            status = spec.subscription_status
            if status == SubscriptionStatus.PAST_DUE:
                end = now - dt.timedelta(days=rng.randint(1, 10))
            elif status == SubscriptionStatus.CANCELED:
                end = now - dt.timedelta(days=rng.randint(5, 300))
            else:
                end = now + dt.timedelta(seconds=rng.randrange(30 * 86400))
            start = end - dt.timedelta(days=30)
            subscriptions.append(
                Subscription(
                    member_id=member_id,
                    plan=plans[spec.plan],
                    status=status,
                    # Comped rows have no Stripe ids, like the ones staff grant; the others get
                    # made-up ids, unique per member, so the partial indexes hold realistic rows.
                    stripe_subscription_id="" if status == SubscriptionStatus.COMPED else f"sub_bench{spec.index:07d}",
                    stripe_customer_id="" if status == SubscriptionStatus.COMPED else f"cus_bench{spec.index:07d}",
                    current_period_start=start if status != SubscriptionStatus.COMPED else spec.created_at,
                    current_period_end=end if status != SubscriptionStatus.COMPED else None,
                    canceled_at=end if status == SubscriptionStatus.CANCELED else None,
                    created_at=spec.created_at,
                )
            )
        if spec.has_token:
            # Only the hash, prefix and last characters of a real token are kept, as the service does.
            new = tokens.generate()
            created_at = spec.created_at + (now - spec.created_at) * rng.random()
            api_tokens.append(
                ApiToken(
                    member_id=member_id,
                    name=rng.choice(_TOKEN_NAMES),
                    prefix=new.prefix,
                    last_chars=new.last_chars,
                    token_hash=new.hash,
                    scopes=["read"] if rng.random() < 0.6 else ["read", "write"],
                    created_at=created_at,
                    expires_at=None if rng.random() < 0.5 else now + dt.timedelta(days=rng.randint(1, 365)),
                    last_used_at=created_at + (now - created_at) * rng.random() if rng.random() < 0.7 else None,
                    revoked_at=now - (now - created_at) * rng.random() if rng.random() < 0.1 else None,
                )
            )
    Subscription.objects.bulk_create(subscriptions, batch_size=BATCH_ROWS)
    ApiToken.objects.bulk_create(api_tokens, batch_size=BATCH_ROWS)


# --- Scale mode: activity -----------------------------------------------------------------------

# A device a member uses: the start of its COPY line ("member_id\tip\tuser_agent\t"), then the
# same values for bulk_create.
_Device = tuple[str, int, str, str]
# An event: the end of its COPY line ("\taction\tdetail\n"), then the same values for bulk_create.
_Event = tuple[str, str, dict[str, Any]]


def _seed_bench_activity(total: int, changes: _Changes) -> None:
    bench = Member.objects.filter(email__endswith="@" + BENCH_DOMAIN)
    existing = ActivityLog.objects.filter(member__in=bench).count()
    count = total - existing
    if count <= 0:
        return
    members = sorted(bench.values_list("email", "id"))
    if not members:
        raise CommandError(f"--activity {total} needs bench members to belong to: pass --members too.")
    devices = _activity_devices(members)
    now = timezone.now()
    day_zero = _day_zero(now)
    rng = random.Random(f"seed_demo-activity-{existing}")
    chunks = _activity_chunks(count, devices, now, day_zero, rng)
    with tqdm(total=count, desc="activity", unit=" rows", unit_scale=True, disable=None) as progress:
        if connection.vendor == "postgresql":
            _copy_activity(chunks, count, day_zero, progress)
        else:
            for chosen, offsets, events in chunks:
                ActivityLog.objects.bulk_create(
                    [
                        ActivityLog(
                            member_id=device[1],
                            ip=device[2],
                            user_agent=device[3],
                            created_at=day_zero + dt.timedelta(seconds=offset),
                            action=event[1],
                            detail=event[2],
                        )
                        for device, offset, event in zip(chosen, offsets, events, strict=True)
                    ],
                    batch_size=BATCH_ROWS,
                )
                progress.update(len(offsets))
    changes.activity += count


def _activity_devices(members: Sequence[tuple[str, int]]) -> list[_Device]:
    """Each bench member's devices, repeated in proportion to how active the member is, so a
    uniform pick from the list is a skewed pick of members (and cheap: no bisect per row).

    A member's weight comes from their index alone, so they keep their share when a later run
    grows the table; their devices come from a generator seeded the same way every run."""
    rng = random.Random("seed_demo-devices")
    devices: list[_Device] = []
    for email, member_id in members:
        index = _bench_index(email) or 1
        home_ip, phone_ip = _ipv4(rng), _ipv6(rng)
        home_agent, phone_agent = rng.choice(_DESKTOP_AGENTS), rng.choice(_MOBILE_AGENTS)
        # A multiplicative hash spreads consecutive indexes over (0, 1); the inverse Pareto CDF
        # turns that into a weight of at least 1.
        uniform = ((index * 2_654_435_761) % 2**32 + 0.5) / 2**32
        weight = min(_MAX_ACTIVITY_WEIGHT, int(uniform ** (-1 / _ACTIVITY_ALPHA)))
        home: _Device = (f"{member_id}\t{home_ip}\t{_text(home_agent)}\t", member_id, home_ip, home_agent)
        phone: _Device = (f"{member_id}\t{phone_ip}\t{_text(phone_agent)}\t", member_id, phone_ip, phone_agent)
        devices.extend([home] * (weight - weight // 4))
        devices.extend([phone] * (weight // 4))
    return devices


def _activity_chunks(
    count: int, devices: list[_Device], now: dt.datetime, day_zero: dt.datetime, rng: random.Random
) -> Iterator[tuple[list[_Device], list[int], list[_Event]]]:
    """`count` rows in chunks: devices, seconds since `day_zero`, events.

    Time runs forward across the chunks (each covers its slice of the year, sorted), so ids
    grow with `created_at` as in a real log. A row may predate its member's `created_at`:
    keeping each member's rows after their sign-up would cost a lookup per row, and no
    benchmark query depends on it."""
    events: list[_Event] = [
        (f"\t{action}\t{_text(json.dumps(detail))}\n", action, detail) for action, detail in _expand(_EVENTS)
    ]
    first = int((now - dt.timedelta(days=ACTIVITY_DAYS) - day_zero).total_seconds())
    span = int((now - day_zero).total_seconds()) - first
    random_ = rng.random
    for done in range(0, count, CHUNK_ROWS):
        size = min(CHUNK_ROWS, count - done)
        low = first + span * done // count
        width = max(1, span * (done + size) // count - (low - first))
        offsets = sorted([low + int(random_() * width) for _ in range(size)])
        yield rng.choices(devices, k=size), offsets, rng.choices(events, k=size)


def _copy_activity(
    chunks: Iterator[tuple[list[_Device], list[int], list[_Event]]], count: int, day_zero: dt.datetime, progress: tqdm
) -> None:
    """COPY the activity rows, first dropping the table's indexes and foreign key when the load
    is big next to the table, and rebuilding them after: sorting once is far cheaper than
    updating four indexes and queuing a deferred key check per row (growing 1M rows to 10M
    took 66 s this way, 232 s keeping the indexes).

    It all happens inside the command's transaction, so the indexes are back, exactly as
    `pg_get_indexdef` described them, before anyone else can see the table; readers of the table
    wait for the load meanwhile (DROP INDEX takes an exclusive lock). The restored foreign key
    checks every row, so a bad member id still fails the whole load."""
    days = [(day_zero + dt.timedelta(days=day)).strftime("%Y-%m-%d ") for day in range(ACTIVITY_DAYS + 2)]
    seconds = [f"{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}+00" for second in range(86400)]

    def text() -> Iterator[str]:
        for chosen, offsets, events in chunks:
            yield "".join(
                [
                    device[0] + days[offset // 86400] + seconds[offset % 86400] + event[0]
                    for device, offset, event in zip(chosen, offsets, events, strict=True)
                ]
            )
            progress.update(len(offsets))

    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = 'members_activitylog'::regclass")
        (estimate,) = cursor.fetchone() or (0,)
        rows_before = max(0, int(estimate))  # the planner's estimate: -1 before the first ANALYZE
        rebuild = count >= rows_before * REBUILD_FRACTION
        indexes: list[tuple[str, str]] = []
        foreign_keys: list[tuple[str, str]] = []
        if rebuild:
            # Rows this transaction wrote earlier have foreign-key checks pending; PostgreSQL
            # refuses to change the table's indexes and constraints until they have run.
            connection.check_constraints()
            cursor.execute(
                "SELECT index.relname, pg_get_indexdef(index.oid) FROM pg_index "
                "JOIN pg_class index ON index.oid = pg_index.indexrelid "
                "WHERE pg_index.indrelid = 'members_activitylog'::regclass "
                "AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE pg_constraint.conindid = pg_index.indexrelid)"
            )
            indexes = cursor.fetchall()
            cursor.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = 'members_activitylog'::regclass AND contype = 'f'"
            )
            foreign_keys = cursor.fetchall()
            for name, _ in foreign_keys:
                cursor.execute(f"ALTER TABLE members_activitylog DROP CONSTRAINT {connection.ops.quote_name(name)}")
            for name, _ in indexes:
                cursor.execute(f"DROP INDEX {connection.ops.quote_name(name)}")

    _copy("COPY members_activitylog (member_id, ip, user_agent, created_at, action, detail) FROM STDIN", text())

    if rebuild:
        with connection.cursor() as cursor:
            # Sorting for the index builds is the slow part; give it room (for this transaction only).
            cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
            for _, definition in tqdm(indexes, desc="indexes", unit=" index", disable=None):
                cursor.execute(definition)
            for name, definition in foreign_keys:
                cursor.execute(
                    f"ALTER TABLE members_activitylog ADD CONSTRAINT {connection.ops.quote_name(name)} {definition}"
                )


# --- Small pieces -------------------------------------------------------------------------------


def _copy(statement: str, chunks: Iterable[str]) -> None:
    """Stream pre-formatted text to COPY.

    Measured on 1M activity rows: the server's parsing bounds both whole text chunks and
    `write_row` (about 2.7 s), but text costs the client 40% less CPU (0.9 s against 1.5 s),
    which matters with the server on the same two cores. The queued writer sends from a thread,
    so Python builds the next chunk while PostgreSQL parses the last (3.4 s down to 2.7 s)."""
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own cursor: Django's wrapper has no COPY
        with raw.copy(statement, writer=QueuedLibpqWriter(raw)) as copy:
            for chunk in chunks:
                copy.write(chunk)


def _text(value: str) -> str:
    """A value escaped for COPY's text format."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _day_zero(now: dt.datetime) -> dt.datetime:
    """Midnight UTC a year and a day before `now`: activity times are whole seconds after it."""
    return (now - dt.timedelta(days=ACTIVITY_DAYS + 1)).replace(hour=0, minute=0, second=0, microsecond=0)


def _expand(weighted: Iterable[tuple[Action, dict[str, Any], int]]) -> list[tuple[Action, dict[str, Any]]]:
    """Each (action, detail) repeated by its frequency, so `random.choice` picks by frequency."""
    return [(action, detail) for action, detail, weight in weighted for _ in range(weight)]


def _ipv4(rng: random.Random) -> str:
    return f"{rng.choice(_IPV4_NETS)}.{rng.randint(1, 254)}"


def _ipv6(rng: random.Random) -> str:
    return f"2001:db8:{rng.randrange(0x10000):x}:{rng.randrange(0x10000):x}::{rng.randrange(1, 0x10000):x}"
