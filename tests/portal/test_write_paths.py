"""The writes that used to go around the services now go through them, and leave what the
service leaves: the activity entry, the cache invalidation, the row as the service writes it.

Committed for real (`transaction=True`), so the services' `on_commit` invalidations run."""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from members.models import Action, ActivityLog, ApiToken, Member, Tier, TokenScope
from members.services import create_api_token
from monitoring.staff_dashboard import staff_numbers
from portal.dashboard import dashboard_summary
from subscriptions.models import Plan, SubscriptionStatus
from subscriptions.reads import plans_on_offer
from subscriptions.services import start_subscription
from tests.conftest import PASSWORD
from tests.members.test_admin import _change_form_data

pytestmark = pytest.mark.django_db(transaction=True)


def _profile_entries(member: Member) -> list[dict[str, Any]]:
    return list(
        ActivityLog.objects.for_member(member).filter(action=Action.PROFILE_UPDATED).values_list("detail", flat=True)
    )


def test_a_profile_edited_on_its_admin_page_is_in_the_members_activity_with_the_staff_member(client, alice, carol):
    assert dashboard_summary(alice.pk).display_name == "Alice"
    client.force_login(carol)

    response = client.post(
        f"/admin/members/profile/{alice.profile.pk}/change/",
        {
            "display_name": "Alice A.",
            "bio": "",
            "time_zone": "UTC",
            "preferences": json.dumps(alice.profile.preferences),
        },
    )

    assert response.status_code == 302
    assert _profile_entries(alice) == [{"fields": ["display_name"], "actor": carol.pk, "actor_email": carol.email}]
    assert dashboard_summary(alice.pk).display_name == "Alice A."


def test_a_profile_edited_inline_on_the_member_page_goes_through_the_same_service(client, alice, carol):
    assert dashboard_summary(alice.pk).display_name == "Alice"
    client.force_login(carol)
    data = _change_form_data(client.get(f"/admin/members/member/{alice.pk}/change/"))
    data["profile-0-display_name"] = "Alice Inline"

    response = client.post(f"/admin/members/member/{alice.pk}/change/", data)

    assert response.status_code == 302
    assert _profile_entries(alice) == [{"fields": ["display_name"], "actor": carol.pk, "actor_email": carol.email}]
    assert dashboard_summary(alice.pk).display_name == "Alice Inline"


def test_a_sign_up_is_counted_at_once_in_the_cached_staff_numbers(client: Client):
    before = staff_numbers().members
    response = client.post(
        "/accounts/signup/", {"email": "dora@example.com", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 302
    dora = Member.objects.with_email("dora@example.com").get()
    assert dora.profile.display_name == ""
    assert staff_numbers().members == before + 1


def test_a_tier_granted_by_billing_shows_in_the_cached_staff_numbers(alice):
    assert dict(staff_numbers().by_tier)[Tier.PRO.label] == 0
    now = timezone.now()
    start_subscription(
        member=alice,
        plan=Plan.objects.get(code="pro"),
        status=SubscriptionStatus.ACTIVE,
        period_start=now,
        period_end=now + dt.timedelta(days=30),
    )

    alice.refresh_from_db()
    assert alice.tier == Tier.PRO
    assert dict(staff_numbers().by_tier)[Tier.PRO.label] == 1


def test_demo_seeding_restores_the_default_plans_and_the_cached_plan_list_follows(db):
    Plan.objects.filter(code="basic").update(name="Renamed by staff")
    assert "Renamed by staff" in [plan.name for plan in plans_on_offer()]

    call_command("seed_demo", "--force", stdout=io.StringIO())

    assert "Basic" in [plan.name for plan in plans_on_offer()]


def test_an_api_call_notes_the_tokens_last_use_through_the_service(client, alice):
    _, plain = create_api_token(member=alice, name="bot", scopes=[TokenScope.READ], expires_at=None)
    response = client.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {plain}", REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 200
    token = ApiToken.objects.get(member=alice)
    assert token.last_used_ip == "203.0.113.9"
    assert token.last_used_at is not None
