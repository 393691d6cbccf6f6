"""`seed_demo`: demo logins for `make run`, and benchmark data that reaches the totals asked for."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from members import tokens
from members.models import Action, ActivityLog, ApiToken, Member, Profile, Tier
from portal.bench_data import bench_email
from portal.demo_data import DEMO_PASSWORD
from subscriptions.models import Plan, Subscription

pytestmark = pytest.mark.django_db

DEMO_EMAILS = ("admin@example.com", "alice@example.com", "bob@example.com", "dave@example.com")


@pytest.fixture(autouse=True)
def debug_on(settings):
    # pytest-django runs tests with DEBUG off, where seed_demo (rightly) refuses to run.
    settings.DEBUG = True
    # Argon2 is slow on purpose; these tests are about the data, not the hashing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def counts() -> dict[str, int]:
    return {
        "members": Member.objects.count(),
        "profiles": Profile.objects.count(),
        "plans": Plan.objects.count(),
        "subscriptions": Subscription.objects.count(),
        "tokens": ApiToken.objects.count(),
        "activity": ActivityLog.objects.count(),
    }


def bench_members() -> int:
    return Member.objects.filter(email__endswith="@bench.example").count()


def bench_activity() -> int:
    return ActivityLog.objects.filter(member__email__endswith="@bench.example").count()


def test_demo_data_is_loaded_once_however_often_it_runs():
    seed()
    first = counts()
    output = seed()

    assert counts() == first
    assert first["members"] == first["profiles"] == 4
    assert first["plans"] == 3
    assert first["subscriptions"] == 2
    assert first["tokens"] == 5
    assert 3 * 20 <= first["activity"] <= 3 * 45
    for email in DEMO_EMAILS:
        assert email in output
    assert DEMO_PASSWORD in output
    assert tokens.PREFIX not in output  # plain tokens are never printed


def test_demo_logins_work_and_admin_is_a_superuser(client):
    seed()

    for email in DEMO_EMAILS:
        assert client.login(email=email, password=DEMO_PASSWORD), email
        client.logout()
    admin = Member.objects.with_email("admin@example.com").get()
    assert admin.is_staff and admin.is_superuser


def test_demo_plans_and_subscriptions():
    seed()

    assert {(plan.code, plan.tier, plan.price_cents) for plan in Plan.objects.all()} == {
        ("free", Tier.FREE, 0),
        ("basic", Tier.BASIC, 900),
        ("pro", Tier.PRO, 2900),
    }
    tiers = dict(Member.objects.values_list("email", "tier"))
    assert tiers == {
        "admin@example.com": Tier.FREE,
        "alice@example.com": Tier.BASIC,
        "bob@example.com": Tier.FREE,
        "dave@example.com": Tier.PRO,
    }
    alice = Subscription.objects.live().get(member__email="alice@example.com")
    assert alice.status == "active"
    assert alice.current_period_end is not None
    assert alice.current_period_end - timezone.now() > dt.timedelta(days=29)
    assert Subscription.objects.live().get(member__email="dave@example.com").status == "comped"


def test_a_changed_demo_password_is_put_back_so_the_printed_logins_work(client):
    seed()
    alice = Member.objects.with_email("alice@example.com").get()
    alice.set_password("something else entirely")
    alice.save(update_fields=["password"])

    seed()

    assert client.login(email="alice@example.com", password=DEMO_PASSWORD)


def test_every_members_tier_is_the_tier_of_their_live_subscription():
    seed("--members", "200", "--activity", "300")

    live = {subscription.member_id: subscription.plan.tier for subscription in Subscription.objects.live()}
    assert {member.pk: member.tier for member in Member.objects.all()} == {
        member.pk: live.get(member.pk, Tier.FREE) for member in Member.objects.all()
    }
    # A realistic mix, with canceled subscriptions that leave their members free.
    assert set(Member.objects.values_list("tier", flat=True)) == {Tier.FREE, Tier.BASIC, Tier.PRO}
    assert Subscription.objects.filter(status="canceled", member__tier=Tier.FREE).exists()


def test_scale_mode_reaches_exactly_the_totals_and_stays_there():
    seed("--members", "50", "--activity", "500")
    assert (bench_members(), bench_activity()) == (50, 500)
    loaded = counts()

    seed("--members", "50", "--activity", "500")
    assert counts() == loaded

    seed("--members", "80", "--activity", "900")
    assert (bench_members(), bench_activity()) == (80, 900)
    emails = set(Member.objects.filter(email__endswith="@bench.example").values_list("email", flat=True))
    assert emails == {bench_email(index) for index in range(1, 81)}
    assert not Member.objects.filter(profile__isnull=True).exists()


def test_scale_mode_never_deletes():
    seed("--members", "30", "--activity", "100")

    err = StringIO()
    call_command("seed_demo", "--members", "10", "--activity", "5", stdout=StringIO(), stderr=err)

    assert (bench_members(), bench_activity()) == (30, 100)
    assert "more than --members 10" in err.getvalue()


def test_bench_members_log_in_with_the_demo_password(client):
    seed("--members", "3")

    assert client.login(email=bench_email(2), password=DEMO_PASSWORD)


def test_bench_activity_looks_real_and_some_members_are_far_more_active():
    seed("--members", "50", "--activity", "2000")

    now = timezone.now()
    rows = ActivityLog.objects.filter(member__email__endswith="@bench.example")
    assert not rows.filter(created_at__lt=now - dt.timedelta(days=366)).exists()
    assert not rows.filter(created_at__gt=now).exists()
    assert not rows.filter(ip__isnull=True).exists()
    assert not rows.filter(user_agent="").exists()
    assert set(rows.values_list("action", flat=True)) <= set(Action.values)
    per_member = sorted(rows.values("member").annotate(n=Count("id")).values_list("n", flat=True))
    assert per_member[-1] > 5 * (2000 / 50)
    # Time runs forward with the ids, as in a real log.
    times = list(rows.order_by("id").values_list("created_at", flat=True))
    assert times == sorted(times)


def test_it_refuses_to_run_with_debug_off_unless_forced(settings):
    settings.DEBUG = False

    with pytest.raises(CommandError, match="DEBUG is off"):
        seed()
    assert not Member.objects.exists()

    seed("--force")
    assert Member.objects.count() == 4


@pytest.mark.parametrize("option", ["--members", "--activity"])
def test_negative_totals_are_refused(option):
    with pytest.raises(CommandError, match=f"{option} must be 0 or more"):
        seed(option, "-1")


def test_activity_needs_bench_members():
    with pytest.raises(CommandError, match="pass --members too"):
        seed("--activity", "10")
    assert not Member.objects.exists()  # the demo data went with the failed transaction


def _activity_schema() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'members_activitylog' ORDER BY indexname"
        )
        indexes = cursor.fetchall()
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'members_activitylog'::regclass ORDER BY conname"
        )
        return indexes, cursor.fetchall()


@pytest.mark.postgres
def test_copy_load_leaves_the_activity_indexes_and_foreign_key_as_they_were():
    schema = _activity_schema()
    assert len(schema[0]) == 5  # the primary key and the four indexes of ActivityLog.Meta

    # Big next to the table: indexes and foreign key dropped, then rebuilt from their definitions.
    with CaptureQueriesContext(connection) as queries:
        seed("--members", "50", "--activity", "500")
    assert any(query["sql"].startswith("DROP INDEX") for query in queries)
    assert _activity_schema() == schema

    # Small next to the table: indexes updated row by row.
    with CaptureQueriesContext(connection) as queries:
        seed("--members", "50", "--activity", "520")
    assert not any(query["sql"].startswith("DROP INDEX") for query in queries)
    assert _activity_schema() == schema
    assert bench_activity() == 520
    # The rows COPY wrote are ordinary rows: found through the rebuilt index, with typed values.
    busiest = Member.objects.annotate(n=Count("activity")).order_by("-n").first()
    assert busiest is not None
    rows = list(ActivityLog.objects.for_member(busiest).recent()[:5])
    assert len(rows) == 5
    assert all(isinstance(row.detail, dict) and row.ip and row.user_agent for row in rows)
