"""Every write path invalidates what it changed, after its transaction commits: the next read,
in this process or another, shows the new data.

These tests commit for real (`transaction=True`): pytest-django's usual test transaction is never
committed, so the `on_commit` invalidations would never run inside it.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from members.models import Action, ActivityLog, ApiToken, Member, MemberStatus, Profile, Tier, TokenScope
from members.services import create_api_token, record_activity, revoke_api_token, update_member, update_profile
from portal.dashboard import dashboard_summary
from subscriptions.models import Plan, SubscriptionStatus
from subscriptions.services import save_plan, start_subscription, update_subscription

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def _page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def alices_client(client: Client, alice: Member) -> Client:
    """alice, logged in, with her dashboard in the cache."""
    client.force_login(alice)
    assert "Welcome, Alice<" in _page(client, "/dashboard/")
    return client


@pytest.fixture
def pro_plan() -> Plan:
    plan = Plan.objects.get(code="pro")  # one of the default plans, as staff set it up
    plan.name, plan.stripe_price_id = "Pro monthly", "price_pro"
    return save_plan(plan=plan)


def _set_profile(member: Member, display_name: str, time_zone: str = "UTC") -> list[str]:
    return update_profile(member=member, display_name=display_name, bio="", time_zone=time_zone, email_updates=False)


def test_a_write_around_the_services_is_not_seen_while_the_dashboard_is_cached(alices_client: Client, alice: Member):
    # The control for every test below: the dashboard really is served from the cache, so only
    # the services' invalidation can make it show new data.
    Profile.objects.filter(member=alice).update(display_name="Nobody")

    assert "Welcome, Alice<" in _page(alices_client, "/dashboard/")


def test_a_profile_change_shows_on_the_next_dashboard(alices_client: Client, alice: Member):
    _set_profile(alice, "Alice Liddell", time_zone="Europe/London")

    body = _page(alices_client, "/dashboard/")
    assert "Welcome, Alice Liddell<" in body
    assert "Time zone: Europe/London" in body
    assert "Updated profile" in body


def test_a_created_token_shows_on_the_next_dashboard(alices_client: Client, alice: Member):
    assert "<strong>0</strong> live tokens" in _page(alices_client, "/dashboard/")

    token, _ = create_api_token(
        member=alice, name="deploy bot", scopes=[TokenScope.READ], expires_at=timezone.now() + dt.timedelta(days=3)
    )

    body = _page(alices_client, "/dashboard/")
    assert "<strong>1</strong> live token<" in body
    assert f"Next to expire: deploy bot (<code>{token.prefix}…{token.last_chars}</code>)" in body
    assert "Created an API token" in body


def test_a_revoked_token_leaves_the_next_dashboard(client: Client, alice: Member):
    token, _ = create_api_token(member=alice, name="deploy bot", scopes=[TokenScope.READ], expires_at=None)
    client.force_login(alice)
    assert "<strong>1</strong> live token<" in _page(client, "/dashboard/")

    assert revoke_api_token(token=ApiToken.objects.get(pk=token.pk))

    body = _page(client, "/dashboard/")
    assert "<strong>0</strong> live tokens" in body
    assert "Revoked an API token" in body


def test_recorded_activity_shows_on_the_next_dashboard(alices_client: Client, alice: Member):
    record_activity(member=alice, action=Action.LOGIN, ip="198.51.100.7", user_agent="Firefox")

    body = _page(alices_client, "/dashboard/")
    assert "Logged in" in body
    assert "198.51.100.7" in body


def test_a_started_subscription_shows_on_the_next_dashboard(alices_client: Client, alice: Member, pro_plan: Plan):
    assert "Free, no subscription" in _page(alices_client, "/dashboard/")

    start_subscription(
        member=alice,
        plan=pro_plan,
        status=SubscriptionStatus.ACTIVE,
        period_start=timezone.now(),
        period_end=dt.datetime(2031, 3, 14, 12, tzinfo=dt.UTC),
    )

    body = _page(alices_client, "/dashboard/")
    assert "Pro monthly: Active" in body
    assert "Renews on" in body and "14 Mar 2031" in body


def test_a_changed_subscription_shows_on_the_next_dashboard(client: Client, alice: Member, pro_plan: Plan):
    subscription = start_subscription(
        member=alice,
        plan=pro_plan,
        status=SubscriptionStatus.ACTIVE,
        period_start=timezone.now(),
        period_end=dt.datetime(2031, 3, 14, 12, tzinfo=dt.UTC),
    )
    client.force_login(alice)
    assert "Renews on" in _page(client, "/dashboard/")

    subscription.cancel_at_period_end = True
    subscription.current_period_end = dt.datetime(2031, 4, 2, 12, tzinfo=dt.UTC)
    update_subscription(subscription=subscription, fields=["cancel_at_period_end", "current_period_end"])

    body = _page(client, "/dashboard/")
    assert "Ends on" in body and "Renews on" not in body
    assert "2 Apr 2031" in body


def test_a_saved_plan_shows_on_the_landing_and_subscription_pages(client: Client, alice: Member, pro_plan: Plan):
    visitor = Client()
    client.force_login(alice)
    assert "29.00 USD" in _page(visitor, "/")
    assert "29.00 USD" in _page(client, "/subscription/")

    pro_plan.price_cents = 3900
    save_plan(plan=pro_plan)
    save_plan(plan=Plan(code="basic-monthly", name="Basic monthly", tier=Tier.BASIC, price_cents=900))

    for body in (_page(visitor, "/"), _page(client, "/subscription/")):
        assert "39.00 USD" in body and "29.00 USD" not in body
        assert "Basic monthly" in body

    pro_plan.is_active = False
    save_plan(plan=pro_plan)

    for body in (_page(visitor, "/"), _page(client, "/subscription/")):
        assert "Pro monthly" not in body
        assert "Basic monthly" in body


def test_a_status_change_is_recorded_and_shows_in_the_members_cached_activity(
    alices_client: Client, alice: Member, carol: Member
):
    alice.status = MemberStatus.SUSPENDED
    update_member(member=alice, fields=["status"], actor=carol)

    assert dashboard_summary(alice.pk).activity[0].action == "Account status changed"
    entry = ActivityLog.objects.get(member=alice, action=Action.STATUS_CHANGED)
    assert entry.detail == {"from": "active", "to": "suspended", "actor": carol.pk, "actor_email": carol.email}
    # A suspended member is no longer let in.
    assert alices_client.get("/dashboard/")["Location"] == "/accounts/login/?next=/dashboard/"

    alice.status = MemberStatus.ACTIVE
    update_member(member=alice, fields=["status"], actor=carol)
    alices_client.force_login(alice)

    body = _page(alices_client, "/dashboard/")
    assert body.count("Account status changed") == 2


def test_a_rolled_back_write_leaves_the_cached_value_in_place(alice: Member, django_assert_num_queries):
    dashboard_summary(alice.pk)

    with transaction.atomic():
        _set_profile(alice, "Nobody")
        transaction.set_rollback(True)
    assert Profile.objects.get(member=alice).display_name == "Alice"

    with django_assert_num_queries(0):  # still served from the cache...
        cached = dashboard_summary(alice.pk)
    assert cached == dashboard_summary.func(alice.pk)  # ...and still what the database says
    assert cached.display_name == "Alice"


@pytest.mark.postgres
def test_a_reader_during_an_uncommitted_write_cannot_cache_the_old_data_again(alice: Member):
    # Invalidating before the commit would let this reader (its own connection, so it sees the
    # committed data only) compute the old profile and cache it under the new version, where
    # it would stay after the commit.
    dashboard_summary(alice.pk)
    seen: list[str] = []

    def read_elsewhere() -> None:
        try:
            seen.append(dashboard_summary(alice.pk).display_name)
        finally:
            connection.close()

    with transaction.atomic():
        _set_profile(alice, "Alice Liddell")
        reader = threading.Thread(target=read_elsewhere)
        reader.start()
        reader.join(timeout=10)

    assert seen == ["Alice"]
    assert dashboard_summary(alice.pk).display_name == "Alice Liddell"


# --- A second process ---------------------------------------------------------------------------


def _run_elsewhere(code: str) -> str:
    """Run `code` in a new Python process on this test's database and Redis; return its output."""
    db = connection.settings_dict
    credentials = quote(db["USER"]) + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
    database_url = f"postgres://{credentials}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + code],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DATABASE_URL": database_url,
            "REDIS_URL": str(settings.CACHES["default"]["LOCATION"]),
            "DATABASE_POOL_MIN": "1",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.postgres
@pytest.mark.redis
def test_a_write_in_another_process_shows_here(alice: Member):
    assert dashboard_summary(alice.pk).display_name == "Alice"

    _run_elsewhere(
        "from members.models import Member\n"
        "from members.services import update_profile\n"
        f"update_profile(member=Member.objects.get(pk={alice.pk}), display_name='Alice from elsewhere',"
        " bio='', time_zone='UTC', email_updates=False)\n"
    )

    assert dashboard_summary(alice.pk).display_name == "Alice from elsewhere"


@pytest.mark.postgres
@pytest.mark.redis
def test_a_write_here_shows_in_another_process(alice: Member):
    # Cached in the shared Redis, where the other process would find it if the write left it.
    assert dashboard_summary(alice.pk).display_name == "Alice"

    _set_profile(alice, "Alice Liddell")

    shown = _run_elsewhere(
        f"from portal.dashboard import dashboard_summary\nprint(dashboard_summary({alice.pk}).display_name)\n"
    )
    assert shown == "Alice Liddell"


@pytest.mark.django_db(transaction=True)
def test_a_profile_edited_by_staff_in_the_admin_is_fresh_on_the_dashboard(client, alice, carol):
    from portal.dashboard import dashboard_summary

    assert dashboard_summary(alice.pk).display_name == "Alice"
    client.force_login(carol)
    response = client.post(
        f"/admin/members/profile/{alice.profile.pk}/change/",
        {"display_name": "Alice Admin-Edited", "bio": "", "time_zone": "UTC", "preferences": "{}"},
    )
    assert response.status_code == 302
    assert dashboard_summary(alice.pk).display_name == "Alice Admin-Edited"
