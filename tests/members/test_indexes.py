"""On PostgreSQL, with enough rows, each key query of the members app uses its index."""

from __future__ import annotations

import pytest

from members.models import Action, ActivityLog, ApiToken, Member

pytestmark = [pytest.mark.postgres, pytest.mark.django_db, pytest.mark.usefixtures("scale_rows")]


def plan_of(queryset) -> str:
    return queryset.explain()


def test_a_members_latest_activity_page_uses_the_member_recent_index():
    member = Member.objects.get(email="m2500@scale.example")
    plan = plan_of(ActivityLog.objects.for_member(member).recent()[:50])
    assert "activity_member_recent_idx" in plan
    assert "Sort" not in plan  # the index already gives the order


def test_a_deep_activity_page_seeks_to_the_cursor_in_the_index():
    member = Member.objects.get(email="m2500@scale.example")
    cursor = ActivityLog.objects.for_member(member).recent()[30]
    plan = plan_of(ActivityLog.objects.for_member(member).recent().before(cursor.created_at, cursor.pk)[:50])
    assert "activity_member_recent_idx" in plan
    assert "Index Cond: ((member_id = " in plan and "created_at <=" in plan
    assert "Sort" not in plan


def test_a_members_activity_filtered_by_action_uses_the_member_action_index():
    member = Member.objects.get(email="m2500@scale.example")
    plan = plan_of(ActivityLog.objects.for_member(member).filter(action=Action.LOGIN).recent()[:50])
    assert "activity_member_action_idx" in plan


def test_a_token_is_found_by_its_hash_through_the_unique_index():
    token_hash = ApiToken.objects.values_list("token_hash", flat=True).first()
    plan = plan_of(ApiToken.objects.live().filter(token_hash=token_hash))
    assert "apitoken_hash_unique" in plan
    assert "Seq Scan" not in plan


def test_a_members_live_tokens_use_the_partial_index():
    member = Member.objects.get(email="m2500@scale.example")
    plan = plan_of(ApiToken.objects.for_member(member).live().order_by("expires_at"))
    assert "apitoken_member_live_idx" in plan


def test_members_of_a_rare_tier_are_found_through_the_tier_index():
    plan = plan_of(Member.objects.in_tier("pro"))
    assert "member_tier_idx" in plan
    assert "Seq Scan" not in plan


def test_new_members_of_the_last_week_use_the_created_index():
    from datetime import timedelta

    from django.utils import timezone

    plan = plan_of(Member.objects.filter(created_at__gte=timezone.now() - timedelta(hours=2)))
    assert "member_created_idx" in plan
